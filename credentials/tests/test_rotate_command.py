"""`manage.py rotate_secrets`, run as a real process against the test database."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from cryptography.fernet import Fernet

from credentials.models import Secret
from credentials.tests.helpers import KEY_A, KEY_B, make_secret, raw_ciphertext
from rpa_monitor.test import MANAGE, database_env

pytestmark = pytest.mark.django_db(transaction=True)


def rotate_secrets(*keys: str) -> subprocess.CompletedProcess[str]:
    env = database_env() | {"RPA_SECRET_KEYS": ",".join(keys)}
    return subprocess.run(
        [sys.executable, MANAGE, "rotate_secrets"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_it_reencrypts_every_secret_with_the_new_first_key(settings: Any) -> None:
    secrets = [make_secret(f"TOKEN_{i}", f"token-value-{i}") for i in range(2)]
    done = rotate_secrets(KEY_B, KEY_A)
    assert (done.returncode, done.stdout.strip()) == (
        0,
        "re-encrypted 2 secret(s) and 0 channel(s) with the first key",
    )
    assert [Fernet(KEY_B).decrypt(raw_ciphertext(s).encode()) for s in secrets] == [
        b"token-value-0",
        b"token-value-1",
    ]
    settings.RPA_SECRET_KEYS = [KEY_B]
    assert Secret.objects.get(name="TOKEN_1").reveal() == "token-value-1"


def test_it_fails_naming_the_secrets_no_key_decrypts() -> None:
    secret = make_secret("LOST_TOKEN", "token-value")
    before = raw_ciphertext(secret)
    done = rotate_secrets(KEY_B)
    assert done.returncode == 1
    assert "LOST_TOKEN cannot be decrypted" in done.stderr
    assert "nothing was re-encrypted" in done.stderr
    assert raw_ciphertext(secret) == before


def test_it_reseals_the_channel_credentials_with_the_new_first_key(settings: Any) -> None:
    from alerts.models import NotificationChannel

    settings.RPA_SECRET_KEYS = [KEY_A]
    NotificationChannel.objects.create(
        name="hook", kind="webhook", target="https://hooks.example.com/in", secret="hmac-key-1"
    )
    done = rotate_secrets(KEY_B, KEY_A)
    assert (done.returncode, done.stdout.strip()) == (
        0,
        "re-encrypted 0 secret(s) and 1 channel(s) with the first key",
    )
    settings.RPA_SECRET_KEYS = [KEY_B]  # the old key is gone: the channel still reads
    hook = NotificationChannel.objects.get(name="hook")
    assert (hook.get_target(), hook.get_secret()) == ("https://hooks.example.com/in", "hmac-key-1")
