"""API tokens: stored hashed, shown once, revocable, acting as (and only as) their user."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from rpa_monitor.lib.text import unstorable_fields

KEY_PREFIX = "rpa_"
PREFIX_LENGTH = 12  # "rpa_" + 8 characters of the key: enough to tell tokens apart in the admin
# last_used_at is written at most this often per token: a busy script must not turn
# every read request into a write.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def hash_key(key: str) -> str:
    """sha256 of the key. A fast hash is enough: keys are 256 random bits, not passwords."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def active(self) -> ApiTokenQuerySet:
        return self.filter(revoked_at__isnull=True)


class ApiTokenManager(models.Manager["ApiToken"]):
    def get_queryset(self) -> ApiTokenQuerySet:
        return ApiTokenQuerySet(self.model, using=self._db)

    def issue(self, user: Any, name: str) -> tuple[ApiToken, str]:
        """A new token for `user` and its key: the only time the key exists in clear."""
        token = self.model(user=user, name=name)
        key = token.set_new_key()
        token.save()
        return token, key

    def authenticate(self, key: str) -> ApiToken | None:
        """The unrevoked token with this key (its user loaded), or None.

        The lookup is by the key's hash on a unique index, so neither the key nor
        anything derived from it is compared character by character in Python.
        """
        if not key.startswith(KEY_PREFIX) or len(key) > 200:
            return None
        token = self.get_queryset().active().select_related("user").filter(key_hash=hash_key(key)).first()
        if token is not None:
            token.touch()
        return token


class ApiToken(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="api_tokens",
        help_text="The token acts as this user: their staff status and permissions apply.",
    )
    name = models.CharField(max_length=100, help_text="What uses it, e.g. “nightly export script”.")
    prefix = models.CharField(
        max_length=PREFIX_LENGTH, editable=False, help_text="The key's first characters."
    )
    key_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiTokenManager()

    class Meta:
        verbose_name = "API token"
        ordering = ["-created_at", "-id"]
        constraints = [
            # Authentication looks the presented key up by its hash.
            models.UniqueConstraint(fields=["key_hash"], name="apitoken_key_hash_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def clean(self) -> None:
        errors = unstorable_fields(self)
        if errors:
            raise ValidationError(errors)

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def set_new_key(self) -> str:
        """Give the (unsaved) token a fresh random key; returns the key, keeps only its hash."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        self.prefix = key[:PREFIX_LENGTH]
        self.key_hash = hash_key(key)
        return key

    def revoke(self) -> bool:
        """Revoke for good; False when it already was."""
        now = timezone.now()
        updated = ApiToken.objects.filter(pk=self.pk, revoked_at__isnull=True).update(revoked_at=now)
        if updated:
            self.revoked_at = now
        return bool(updated)

    def touch(self) -> None:
        """Record a use (at most once per LAST_USED_RESOLUTION)."""
        now = timezone.now()
        if self.last_used_at is None or now - self.last_used_at >= LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=self.pk).update(last_used_at=now)
            self.last_used_at = now
