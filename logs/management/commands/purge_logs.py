from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from logs.retention import parse_age, purge
from rpa_monitor.lib.cli import shown

MAX_BATCH_SIZE = 1_000_000


class Command(BaseCommand):
    help = "Delete log entries and finished run history older than --older-than (e.g. 90d), in batches."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", required=True, help="age such as 90d, 12h, 2w")
        parser.add_argument("--dry-run", action="store_true", help="count what would be deleted")
        parser.add_argument("--batch-size", type=int, default=5000)

    def handle(self, *args: Any, older_than: str, dry_run: bool, batch_size: int, **options: Any) -> str:
        try:
            age = parse_age(older_than)
        except ValueError as exc:
            raise CommandError(f"--older-than: {exc}") from None
        except OverflowError:  # more days than a timedelta holds
            raise CommandError(f"--older-than: {shown(older_than)} is too long ago") from None
        try:
            cutoff = timezone.now() - age
        except OverflowError:  # before year 1
            raise CommandError(f"--older-than: {shown(older_than)} is too long ago") from None
        # Beyond the largest LIMIT the databases take, and far beyond a short transaction.
        if not 0 < batch_size <= MAX_BATCH_SIZE:
            raise CommandError(f"--batch-size must be > 0 and <= {MAX_BATCH_SIZE}, got {batch_size}")
        report = purge(cutoff, dry_run=dry_run, batch_size=batch_size)
        return f"{report.summary(dry_run)} (older than {cutoff:%Y-%m-%d %H:%M:%S} UTC)"
