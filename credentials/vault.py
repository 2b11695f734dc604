"""Secrets at rest, in a bot's environment, and out of its logs (DESIGN §14).

What this module guarantees and how:

* **Encrypted at rest.** A value is stored only as a Fernet token (AES-128-CBC +
  HMAC-SHA256, from `cryptography`). The keys are `RPA_SECRET_KEYS`: the first
  encrypts, every key decrypts (MultiFernet), so a key is rotated by putting a new
  one first and running `manage.py rotate_secrets`, which re-encrypts every value
  with it; the old key can then be dropped. With `RPA_SECRET_KEYS` unset, the one key
  is derived from `SECRET_KEY` (HKDF-SHA256, see `derived_key`); while it is set, that
  derived key still decrypts (never encrypts), so moving from the default to explicit
  keys needs only `rotate_secrets`.
* **Into the bot, nowhere else.** `environment_for(workflow)` is the only reader of
  plaintext; the runner sets its result in the bot's environment.
* **Out of stored text.** `Redactor` replaces every occurrence of a value, of its
  JSON-escaped and URL-encoded forms and of each of its lines with `****`, in one
  compiled pattern (longest first, so a value that contains another is masked whole).
  Values shorter than `MIN_VALUE_CHARS` are never stored (see there), so every
  secret is redactable.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError

from rpa_monitor.errors import RPAMonitorError
from rpa_monitor.lib.text import SURROGATES

if TYPE_CHECKING:
    from chains.models import Workflow

MASK = "****"
# Shorter values are refused: masking every "42" or "abc" in every log line would wreck
# the logs, and where the masks fell would show the value anyway.
MIN_VALUE_CHARS = 4
# One environment string ("NAME=value") may be at most 128 KiB on Linux (MAX_ARG_STRLEN).
MAX_VALUE_BYTES = 64 * 1024
# Words that mark an environment variable as a credential (matched in the upper-cased name).
CREDENTIAL_WORDS = re.compile(
    r"PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL|AUTH_?KEY"
)
_HKDF_SALT = b"rpa-monitor"
_HKDF_INFO = b"rpa-monitor secrets v1"


class SecretDecryptionError(RPAMonitorError):
    """A stored value no key of RPA_SECRET_KEYS decrypts (its key was removed, or SECRET_KEY changed)."""

    field = "secrets"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"secret {name} cannot be decrypted with any key of RPA_SECRET_KEYS "
            "(was the key it was encrypted with removed, or SECRET_KEY changed?)"
        )
        self.name = name


# -- keys and encryption -------------------------------------------------------


def derived_key(secret_key: str) -> bytes:
    """The Fernet key used when RPA_SECRET_KEYS is unset: HKDF-SHA256 of SECRET_KEY
    (salt b"rpa-monitor", info b"rpa-monitor secrets v1"), 32 bytes, url-safe base64."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO)
    return base64.urlsafe_b64encode(hkdf.derive(secret_key.encode()))


@functools.lru_cache(maxsize=8)
def _keyring(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key.encode()))
        except (ValueError, TypeError):
            # The key itself is never echoed: it would land in a log or a terminal.
            raise ImproperlyConfigured(
                f"RPA_SECRET_KEYS: key {position} of {len(keys)} is not a Fernet key "
                "(32 url-safe base64-encoded bytes); make one with "
                '`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`'
            ) from None
    fernets.append(Fernet(derived_key(secret_key)))  # first when alone; else decrypt-only, last
    return MultiFernet(fernets)


def keyring() -> MultiFernet:
    """The keys in force: RPA_SECRET_KEYS in order, then the key derived from SECRET_KEY."""
    return _keyring(tuple(settings.RPA_SECRET_KEYS), settings.SECRET_KEY)


def check_keys() -> None:
    """Raise ImproperlyConfigured if RPA_SECRET_KEYS holds something that is not a Fernet key."""
    keyring()


def encrypt(plaintext: str) -> str:
    return keyring().encrypt(plaintext.encode()).decode()


def decrypt(token: str, name: str) -> str:
    try:
        return keyring().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretDecryptionError(name) from None


def reencrypt(token: str, name: str) -> str:
    """The same value encrypted with the first key (MultiFernet.rotate)."""
    try:
        return keyring().rotate(token.encode()).decode()
    except InvalidToken:
        raise SecretDecryptionError(name) from None


def reencrypt_each(tokens: Iterable[tuple[str, str]]) -> list[str]:
    """Each (token, name) re-encrypted with the first key, in order; all or nothing:
    SecretDecryptionError naming every one no key decrypts (`rotate_secrets`)."""
    done, failed = [], []
    for token, name in tokens:
        try:
            done.append(reencrypt(token, name))
        except SecretDecryptionError:
            failed.append(name)
    if failed:
        raise SecretDecryptionError(", ".join(failed))
    return done


# -- values --------------------------------------------------------------------


def validate_value(value: Any) -> None:
    """A value a process environment can carry and the logs can be redacted of."""
    if not isinstance(value, str):
        raise ValidationError({"value": "must be a string"})
    if len(value) < MIN_VALUE_CHARS:
        raise ValidationError(
            {"value": f"must be at least {MIN_VALUE_CHARS} characters (shorter values cannot be redacted)"}
        )
    if "\x00" in value or SURROGATES.search(value):
        raise ValidationError(
            {"value": "must not contain NUL characters or invalid Unicode (lone surrogates)"}
        )
    if len(value.encode()) > MAX_VALUE_BYTES:
        raise ValidationError({"value": f"must be at most {MAX_VALUE_BYTES} bytes (UTF-8)"})


def environment_for(workflow: Workflow) -> dict[str, str]:
    """{name: decrypted value} of the workflow's secrets, for the bot's environment.

    One query. Raises SecretDecryptionError naming the first secret no key decrypts.
    """
    return {secret.name: secret.reveal() for secret in workflow.secrets.order_by("name")}


def credential_like_keys(environment: Any) -> list[str]:
    """Keys of a workflow's `environment` that look like credentials and carry a value."""
    if not isinstance(environment, dict):
        return []
    return sorted(
        key
        for key, value in environment.items()
        if isinstance(key, str) and value and CREDENTIAL_WORDS.search(key.upper())
    )


# -- redaction -----------------------------------------------------------------


def _forms(value: str) -> set[str]:
    """What a bot may print of `value`: itself, JSON-escaped, URL-encoded, and each of its lines
    (the runner stores a line at a time, so a multi-line value never occurs whole in one)."""
    forms = {value, quote(value, safe="")}
    forms.update(json.dumps(value, ensure_ascii=ascii)[1:-1] for ascii in (False, True))
    forms.update(value.splitlines())
    # The mask itself is left alone: masking "****" changes nothing, and as a pattern it
    # would end the repeat passes (see Redactor) while a value overlapping a mask still shows.
    return {form for form in forms if len(form) >= MIN_VALUE_CHARS and form != MASK}


class Redactor:
    """Replaces every occurrence of the given values in text with `****`.

    Built once per run from the values its bot received; `redact` is one regex
    substitution (none at all when there is nothing to hide). Longest first, so
    "hunter2-extra" is masked whole even when "hunter2" is a secret too.
    """

    def __init__(self, values: Iterable[str]) -> None:
        forms = {form for value in values if isinstance(value, str) for form in _forms(value)}
        ordered = sorted(forms, key=lambda form: (-len(form), form))
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        # Masking can only make a new occurrence out of a value's own "*" characters
        # (text outside a match is scanned at every position), so only such values need
        # a second pass; each pass removes a non-"*" character or shortens the text.
        self._repeat = any("*" in form for form in ordered)

    def __bool__(self) -> bool:
        return self._pattern is not None

    def redact(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        redacted = self._pattern.sub(MASK, text)
        while self._repeat and redacted != text:
            text, redacted = redacted, self._pattern.sub(MASK, redacted)
        return redacted

    def redact_json(self, value: Any) -> Any:
        """`value` (a JSON-able metadata object) with every string, key and number redacted.
        A number whose digits hold a value becomes the redacted text."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {self.redact(str(k)): self.redact_json(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact_json(v) for v in value]
        if isinstance(value, int | float) and not isinstance(value, bool):
            text = str(value)
            redacted = self.redact(text)
            return value if redacted == text else redacted
        return value
