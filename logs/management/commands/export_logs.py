from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from logs.export import write_zip
from logs.models import Level, LogEntry
from rpa_monitor.errors import RPAMonitorError
from rpa_monitor.lib.cli import shown
from rpa_monitor.lib.dates import DateRange
from rpa_monitor.lib.text import is_storable


class Command(BaseCommand):
    help = (
        "Export log entries in [--start, --end) to a ZIP of execution_logs.json, error_logs.json "
        "and metrics.json. An error leaves no file behind."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--start",
            help="ISO date or datetime, inclusive (naive means TIME_ZONE); default: the first entry",
        )
        parser.add_argument(
            "--end", help="ISO date or datetime, exclusive; a bare date includes that whole day; default: all"
        )
        parser.add_argument("--output", required=True, help="the ZIP file to write (replaced if it exists)")
        parser.add_argument("--level", help=f"only this level ({', '.join(Level.values)})")
        parser.add_argument("--component", help="only this component")
        parser.add_argument("--workflow", help="only this workflow_id (slug)")

    def handle(
        self,
        *args: Any,
        start: str | None,
        end: str | None,
        output: str,
        level: str | None,
        component: str | None,
        workflow: str | None,
        **options: Any,
    ) -> str:
        # NUL (which PostgreSQL text refuses) or undecodable bytes: no entry or path holds them.
        for name, value in (("--output", output), ("--component", component), ("--workflow", workflow)):
            if value is not None and not is_storable(value):
                raise CommandError(f"{name}: {shown(value)} holds NUL or undecodable characters")
        if level is not None and level.upper() not in Level.values:
            raise CommandError(f"--level: {shown(level)} is not one of {', '.join(Level.values)}")
        try:
            date_range = DateRange.parse(start, end)
            entries = LogEntry.objects.matching(
                level=level.upper() if level else None,
                component=component,
                workflow_id=workflow,
                start=date_range.start,
                end=date_range.end,
            )
            summary = write_zip(output, date_range, entries)
        except RPAMonitorError as exc:
            raise CommandError(exc.message) from None
        except OSError as exc:  # write_zip's is-it-a-directory check, e.g. a file name too long to stat
            raise CommandError(f"cannot write {shown(output)}: {exc.strerror}") from None
        return str(summary)
