"""Helpers for the secrets tests: two Fernet keys, users without password hashing, raw rows."""

from __future__ import annotations

from typing import Any

from cryptography.fernet import Fernet
from django.contrib.auth.models import Permission, User
from django.db import connection

from credentials.models import Secret

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()
VALUE = "correct horse battery staple"


def make_user(username: str, *permissions: str, **fields: Any) -> User:
    """A staff user holding `permissions` (no password: tests log in with force_login)."""
    user = User.objects.create_user(username, is_staff=True, **fields)
    for perm in permissions:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return User.objects.get(pk=user.pk)  # a fresh instance: no cached permissions


def make_secret(name: str, value: str, **fields: Any) -> Secret:
    secret = Secret(name=name, **fields)
    secret.value = value
    secret.save()
    return secret


def raw_ciphertext(secret: Secret) -> str:
    """The stored column, read with SQL (no model code in between)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT ciphertext FROM credentials_secret WHERE id = %s", [secret.pk])
        return str(cursor.fetchone()[0])
