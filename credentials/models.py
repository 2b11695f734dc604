"""Secrets: credentials a workflow's bot receives as environment variables (DESIGN §14).

A value is write-only: it is set through `secret.value = ...` (encrypted at once) and
read back only by `reveal()`, which the runner calls through `vault.environment_for`.
"""

from __future__ import annotations

import re
from typing import Any

from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from credentials import vault
from rpa_monitor.lib.text import is_storable

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
RESERVED_PREFIX = "RPA_"  # the runner's own variables: RPA_RUN_ID, RPA_PARAMS, ...


def validate_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise ValidationError(
            f"{name!r} is not an environment-variable name: use letters, digits and _, "
            "not starting with a digit (e.g. ERP_PASSWORD)",
            code="invalid",
        )
    if name.upper().startswith(RESERVED_PREFIX):
        raise ValidationError(
            f"names starting with {RESERVED_PREFIX} are reserved for the run's own variables "
            "(RPA_RUN_ID, RPA_PARAMS, ...)",
            code="reserved",
        )


class SecretQuerySet(models.QuerySet["Secret"]):
    def usable_by(self, user: Any) -> SecretQuerySet:
        """The secrets `user` may attach to a workflow: they must be able to change what a
        workflow executes, and, for a secret with allowed groups, be in one of them."""
        if not user.has_perm("chains.change_execution"):
            return self.none()
        if user.is_superuser:
            return self
        links = Secret.allowed_groups.through.objects.filter(secret=OuterRef("pk"))
        return self.filter(~Exists(links) | Exists(links.filter(group__user=user)))

    def reencrypt(self) -> int:
        """Re-encrypt every value with the first key; all or nothing. Returns how many.

        Raises SecretDecryptionError naming every secret no key decrypts (nothing written).
        """
        with transaction.atomic():
            secrets = list(self.select_for_update().only("pk", "name", "ciphertext"))
            tokens = vault.reencrypt_each((secret.ciphertext, secret.name) for secret in secrets)
            for secret, token in zip(secrets, tokens, strict=True):
                secret.ciphertext = token
            Secret.objects.bulk_update(secrets, ["ciphertext"], batch_size=500)
        return len(secrets)


class Secret(models.Model):
    name = models.CharField(
        max_length=100,
        unique=True,
        validators=[validate_name],
        help_text="The environment variable the bot gets it as (e.g. ERP_PASSWORD).",
    )
    # A Fernet token; the plaintext is never stored. Not editable: no form ever shows it.
    ciphertext = models.TextField(editable=False)
    description = models.TextField(blank=True)
    allowed_groups = models.ManyToManyField(
        Group,
        blank=True,
        related_name="usable_secrets",
        help_text="Who may attach it to a workflow: empty means anyone who may change a "
        "workflow's execution; otherwise only members of these groups.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    rotated_at = models.DateTimeField(
        default=timezone.now, editable=False, help_text="When the value was last set."
    )

    objects = SecretQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def value(self) -> str:
        raise AttributeError("a secret's value is write-only; the runner reads it with reveal()")

    @value.setter
    def value(self, plaintext: str) -> None:
        """Validate and encrypt a new value (ValidationError naming `value` if unusable)."""
        vault.validate_value(plaintext)
        self.ciphertext = vault.encrypt(plaintext)
        self.rotated_at = timezone.now()

    def reveal(self) -> str:
        """The plaintext, for the bot's environment only (SecretDecryptionError if no key fits)."""
        return vault.decrypt(self.ciphertext, self.name)

    def clean(self) -> None:
        if not is_storable(self.description):
            raise ValidationError({"description": "must not contain NUL characters or invalid Unicode"})
        # Deferred (the admin never loads it) means stored, so present.
        if "ciphertext" not in self.get_deferred_fields() and not self.ciphertext:
            raise ValidationError({"value": "a secret needs a value"})
