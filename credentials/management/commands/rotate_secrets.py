from __future__ import annotations

from typing import Any

from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from alerts.models import reseal_channels
from credentials.models import Secret
from credentials.vault import SecretDecryptionError


class Command(BaseCommand):
    help = (
        "Re-encrypt every secret and channel credential with the first key of RPA_SECRET_KEYS "
        "(after putting a new key first), so older keys can be removed. All or nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--new-key",
            action="store_true",
            help="only print a fresh Fernet key to put first in RPA_SECRET_KEYS",
        )

    def handle(self, *args: Any, new_key: bool, **options: Any) -> str:
        if new_key:
            return Fernet.generate_key().decode()
        try:
            with transaction.atomic():
                count = Secret.objects.reencrypt()
                channels = reseal_channels()  # their secrets and HTTP targets use the same keys
        except (SecretDecryptionError, ImproperlyConfigured) as exc:
            raise CommandError(f"{exc}; nothing was re-encrypted") from None
        return f"re-encrypted {count} secret(s) and {channels} channel(s) with the first key"
