"""`manage.py send_report --period day|week [--to ADDR ...] [--date YYYY-MM-DD]`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from alerts.report import PERIOD_DAYS, parse_period, report_recipients, send_report
from rpa_monitor.errors import RPAMonitorError


class Command(BaseCommand):
    help = (
        "Email a summary of the day before --date (default today) or of the 7 days ending then: "
        "runs, failures, success rates and p50/p95/p99 per workflow, chain runs and alerts. "
        "The weekly report also carries a PDF."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--period", required=True, help=f"one of {', '.join(PERIOD_DAYS)}")
        parser.add_argument(
            "--to",
            nargs="+",
            action="extend",
            metavar="ADDR",
            help="recipients (default: RPA_REPORT_RECIPIENTS, else the enabled email channels)",
        )
        parser.add_argument(
            "--date", help="YYYY-MM-DD: report on the complete day(s) before it (default: today)"
        )

    def handle(self, *args: Any, period: str, to: list[str] | None, date: str | None, **options: Any) -> str:
        try:
            covered = parse_period(period, date)
            recipients = report_recipients(to)
            sent = send_report(covered, recipients)
        except RPAMonitorError as exc:
            raise CommandError(exc.message) from None
        return sent.summary()
