"""Secrets at rest: encryption, key rotation, names and values, a workflow's environment."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured, ValidationError

from chains.models import Workflow
from credentials.models import Secret
from credentials.tests.helpers import KEY_A, KEY_B, VALUE, make_secret, raw_ciphertext
from credentials.vault import (
    MAX_VALUE_BYTES,
    SecretDecryptionError,
    credential_like_keys,
    derived_key,
    environment_for,
)

pytestmark = pytest.mark.django_db


def test_it_stores_only_the_ciphertext() -> None:
    secret = make_secret("ERP_PASSWORD", VALUE)
    raw = raw_ciphertext(secret)
    assert VALUE not in raw
    assert Fernet(KEY_A).decrypt(raw.encode()).decode() == VALUE
    assert Secret.objects.get(pk=secret.pk).reveal() == VALUE


def test_it_never_reads_a_value_back_as_an_attribute() -> None:
    secret = make_secret("ERP_PASSWORD", VALUE)
    with pytest.raises(AttributeError, match="write-only"):
        _ = secret.value
    assert VALUE not in repr(secret) + str(secret)


def test_it_decrypts_an_older_keys_values_after_a_new_first_key(settings: Any) -> None:
    old = make_secret("OLD", "old-value")
    settings.RPA_SECRET_KEYS = [KEY_B, KEY_A]
    new = make_secret("NEW", "new-value")
    assert Secret.objects.get(pk=old.pk).reveal() == "old-value"
    assert Fernet(KEY_B).decrypt(raw_ciphertext(new).encode()) == b"new-value"


def test_it_reencrypts_every_value_with_the_first_key(settings: Any) -> None:
    secrets = [make_secret(f"S{i}", f"value-{i}") for i in range(3)]
    settings.RPA_SECRET_KEYS = [KEY_B, KEY_A]
    assert Secret.objects.reencrypt() == 3
    settings.RPA_SECRET_KEYS = [KEY_B]  # the old key is gone
    assert [Secret.objects.get(pk=s.pk).reveal() for s in secrets] == ["value-0", "value-1", "value-2"]
    assert all(Fernet(KEY_B).decrypt(raw_ciphertext(s).encode()) for s in secrets)


def test_it_reencrypts_nothing_when_a_value_has_no_key(settings: Any) -> None:
    make_secret("KEPT", "kept-value")
    settings.RPA_SECRET_KEYS = [KEY_B]
    make_secret("FINE", "fine-value")
    before = sorted(Secret.objects.values_list("ciphertext", flat=True))
    with pytest.raises(SecretDecryptionError, match="KEPT"):
        Secret.objects.reencrypt()
    assert sorted(Secret.objects.values_list("ciphertext", flat=True)) == before


def test_it_derives_the_key_from_secret_key_when_no_keys_are_set(settings: Any) -> None:
    settings.RPA_SECRET_KEYS = []
    secret = make_secret("DERIVED", VALUE)
    assert Fernet(derived_key(settings.SECRET_KEY)).decrypt(raw_ciphertext(secret).encode()).decode() == VALUE
    settings.RPA_SECRET_KEYS = [KEY_A]  # explicit keys later: the derived key still decrypts
    assert Secret.objects.get(pk=secret.pk).reveal() == VALUE
    settings.SECRET_KEY = "another-secret-key"
    with pytest.raises(SecretDecryptionError, match="DERIVED"):
        Secret.objects.get(pk=secret.pk).reveal()


def test_it_names_a_bad_key_by_position_without_showing_it(settings: Any) -> None:
    settings.RPA_SECRET_KEYS = [KEY_A, "not-a-fernet-key"]
    with pytest.raises(ImproperlyConfigured, match="key 2 of 2") as caught:
        make_secret("X_TOKEN", VALUE)
    assert "not-a-fernet-key" not in str(caught.value)
    assert [m.id for m in run_checks() if str(m.id).startswith("credentials.")] == ["credentials.E001"]


@pytest.mark.parametrize("name", ["1PASSWORD", "ERP-PASSWORD", "ERP PASSWORD", "", "PASSWÖRD", "rpa_run_id"])
def test_it_refuses_names_that_are_not_environment_variables(name: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Secret(name=name, ciphertext="stored").full_clean()
    assert list(caught.value.message_dict) == ["name"]


@pytest.mark.parametrize(
    "value", ["abc", "", "with\x00nul", "lone \ud800 surrogate", "x" * (MAX_VALUE_BYTES + 1)]
)
def test_it_refuses_values_a_bot_cannot_get_or_logs_cannot_hide(value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Secret(name="ERP_PASSWORD").value = value
    assert list(caught.value.message_dict) == ["value"]


def test_it_keeps_spaces_and_unicode_in_values() -> None:
    secret = make_secret("PASSPHRASE", "  pässwörd with spaces  ")
    assert Secret.objects.get(pk=secret.pk).reveal() == "  pässwörd with spaces  "


def test_it_gives_a_workflow_its_own_secrets_decrypted(django_assert_num_queries: Any) -> None:
    workflow = Workflow.objects.create(slug="login", name="login", command=["true"])
    workflow.secrets.set(
        [
            make_secret("ERP_USER", "robot-1"),
            make_secret("ERP_PASSWORD", VALUE),
        ]
    )
    make_secret("OTHER_TOKEN", "not-for-this-bot")
    with django_assert_num_queries(1):
        environment = environment_for(workflow)
    assert environment == {"ERP_PASSWORD": VALUE, "ERP_USER": "robot-1"}


def test_it_gives_a_workflow_without_secrets_nothing() -> None:
    workflow = Workflow.objects.create(slug="plain", name="plain", command=["true"])
    assert environment_for(workflow) == {}


def test_it_spots_credentials_in_an_environment() -> None:
    environment = {
        "ERP_PASSWORD": "hunter22",
        "db_passwd": "x",
        "GITHUB_TOKEN": "ghp_x",
        "STRIPE_API_KEY": "sk_x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "EMPTY_PASSWORD": "",
        "REGION": "eu",
        "PWD": "/srv",
    }
    assert credential_like_keys(environment) == [
        "AWS_SECRET_ACCESS_KEY",
        "ERP_PASSWORD",
        "GITHUB_TOKEN",
        "STRIPE_API_KEY",
        "db_passwd",
    ]
