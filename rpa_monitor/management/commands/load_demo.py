from __future__ import annotations

import os
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import models

from rpa_monitor.demo import load_demo
from rpa_monitor.lib.cli import shown
from rpa_monitor.lib.text import is_storable


class Command(BaseCommand):
    help = "Register the demo bots under examples/, the demo chain and an admin login (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default=os.environ.get("RPA_DEMO_USER", "admin"))
        parser.add_argument("--password", default=os.environ.get("RPA_DEMO_PASSWORD", "rpa-demo"))

    def handle(self, *args: Any, username: str, password: str, **options: Any) -> str:
        _check_login(username, password)
        created = load_demo(username, password)
        summary = ", ".join(created) if created else "already present"
        return f"demo data ready ({summary}); admin login: {username}"


def _check_login(username: str, password: str) -> None:
    """The login as the user model would validate it: create_superuser does not, and an
    empty, overlong, NUL or undecodable one raised (or was stored) instead."""
    user_model = get_user_model()
    field = user_model._meta.get_field(user_model.USERNAME_FIELD)
    assert isinstance(field, models.Field)
    try:
        field.clean(username, None)
    except ValidationError as exc:
        raise CommandError(f"--username: {shown(username)}: {' '.join(exc.messages)}") from None
    if not password:
        raise CommandError("--password must not be empty")
    if not is_storable(password):
        raise CommandError("--password must not contain NUL characters or undecodable bytes")
