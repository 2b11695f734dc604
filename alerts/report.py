"""Daily and weekly reports by email (`manage.py send_report`).

A report covers complete local days (settings.TIME_ZONE): `day` is the day before
the given date, `week` the 7 days ending the day before. It reads only bounded,
indexed data: the WorkflowDay rows of the period (rolled up first, so they are
current), chain runs by the `finished_at` index and alerts by `triggered_at`.
The email is text with an HTML alternative; the weekly one also carries a PDF.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from io import BytesIO
from typing import Any
from xml.sax.saxutils import escape

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives
from django.core.validators import validate_email
from django.db.models import Case, Count, IntegerField, Value, When
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from alerts.models import Alert, AlertRule, NotificationChannel
from chains.daily import (
    BEFORE_DAYS,
    WEEK_DAYS,
    SlowFlag,
    day_bounds,
    local_day,
    merged_percentiles,
    oldest_kept_day,
    rollup_days,
    slower_than_usual,
    zone,
)
from chains.models import ChainRun, Workflow, WorkflowDay
from rpa_monitor.errors import RPAMonitorError
from rpa_monitor.lib.admin import format_seconds
from rpa_monitor.lib.cli import shown

PERIOD_DAYS = {"day": 1, "week": 7}
TOP_ALERTS = 10
SLOW_WINDOW_DAYS = WEEK_DAYS + BEFORE_DAYS
SEVERITIES = [AlertRule.Severity.CRITICAL, AlertRule.Severity.WARNING, AlertRule.Severity.INFO]
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}\Z")


class ReportError(RPAMonitorError):
    """A report that cannot be made or sent; `field` names the option (or setting) at fault."""

    field = "report"


# -- what the report covers, and for whom ------------------------------------------------------


@dataclass(frozen=True)
class Period:
    kind: str  # day | week
    first: date
    last: date

    @classmethod
    def ending_before(cls, kind: str, on: date) -> Period:
        return cls(kind, on - timedelta(days=PERIOD_DAYS[kind]), on - timedelta(days=1))

    @property
    def label(self) -> str:
        return self.first.isoformat() if self.first == self.last else f"{self.first} to {self.last}"

    @property
    def adjective(self) -> str:
        return "daily" if self.kind == "day" else "weekly"

    @property
    def title(self) -> str:
        return f"{self.adjective.capitalize()} report {self.label}"

    def bounds(self) -> tuple[datetime, datetime]:
        """[start, end) in UTC: local midnight before the first day to the one after the last."""
        return day_bounds(self.first)[0], day_bounds(self.last)[1]

    @property
    def pdf_filename(self) -> str:
        return f"rpa-report-{self.first}-to-{self.last}.pdf"


def parse_period(kind: str, on: str | None = None, now: datetime | None = None) -> Period:
    """The period of a `kind` report for the date `on` (YYYY-MM-DD, default today).

    ReportError names the option at fault."""
    if kind not in PERIOD_DAYS:
        raise ReportError(f"--period: {shown(kind)} is not one of {', '.join(PERIOD_DAYS)}", "--period")
    today = local_day(now or timezone.now())
    day = today if on is None else _parse_date(on)
    if day > today:
        raise ReportError(f"--date: {day} is in the future: a report covers days that have ended", "--date")
    # Aggregates older than this are gone (and year-1 dates would not even convert to UTC).
    oldest = oldest_kept_day(today)
    if day - oldest <= timedelta(days=PERIOD_DAYS[kind]):
        raise ReportError(
            f"--date: {day} is too long ago: daily aggregates are kept from {oldest} "
            f"(RPA_AGGREGATE_DAYS={settings.RPA_AGGREGATE_DAYS})",
            "--date",
        )
    return Period.ending_before(kind, day)


def _parse_date(text: str) -> date:
    if not DATE_RE.match(text.strip()):
        raise ReportError(f"--date: {shown(text)} is not a date in the form YYYY-MM-DD", "--date")
    try:
        return date.fromisoformat(text.strip())
    except ValueError as exc:
        raise ReportError(f"--date: {shown(text)} is not a valid date ({exc})", "--date") from None


def report_recipients(to: list[str] | None = None) -> list[str]:
    """`to` (addresses, commas allowed), else RPA_REPORT_RECIPIENTS, else the enabled email channels."""
    if to:
        return _addresses(to, "--to")
    if settings.RPA_REPORT_RECIPIENTS:
        return _addresses(settings.RPA_REPORT_RECIPIENTS, "RPA_REPORT_RECIPIENTS")
    found = []
    for channel in NotificationChannel.objects.filter(kind=NotificationChannel.Kind.EMAIL, enabled=True):
        # Saved targets were validated by the channel form; one that was not would bounce anyway.
        found += [address for address in channel.recipients if _is_address(address)]
    if not found:
        raise ReportError(
            "no recipients: give --to, set RPA_REPORT_RECIPIENTS or enable an email notification channel",
            "--to",
        )
    return list(dict.fromkeys(found))


def _addresses(values: list[str], option: str) -> list[str]:
    addresses = [part.strip() for value in values for part in value.split(",")]
    bad = [address for address in addresses if not _is_address(address)]
    if bad:
        listed = ", ".join(shown(address, 60) or "''" for address in bad[:5])
        raise ReportError(f"{option}: not an email address: {listed}", option)
    return list(dict.fromkeys(addresses))


def _is_address(text: str) -> bool:
    try:
        validate_email(text)
    except ValidationError:
        return False
    return True


# -- the numbers ----------------------------------------------------------------------------


@dataclass
class WorkflowLine:
    slug: str
    name: str
    runs: int = 0
    successes: int = 0
    failures: int = 0
    cancelled: int = 0
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    slow: SlowFlag | None = None

    @property
    def success_rate(self) -> float | None:
        decided = self.runs - self.cancelled
        return 100.0 * self.successes / decided if decided else None


@dataclass
class Report:
    period: Period
    generated_at: datetime
    workflows: list[WorkflowLine] = field(default_factory=list)
    slow: list[tuple[str, SlowFlag]] = field(default_factory=list)  # every flagged workflow, by slug
    chain_runs: dict[str, int] = field(default_factory=dict)  # by status
    alerts_by_severity: dict[str, int] = field(default_factory=dict)
    top_alerts: list[Alert] = field(default_factory=list)

    @property
    def runs(self) -> int:
        return sum(line.runs for line in self.workflows)

    @property
    def failures(self) -> int:
        return sum(line.failures for line in self.workflows)

    @property
    def success_rate(self) -> float | None:
        decided = sum(line.runs - line.cancelled for line in self.workflows)
        return 100.0 * sum(line.successes for line in self.workflows) / decided if decided else None

    @property
    def subject(self) -> str:
        return f"[RPA Monitor] {self.period.title}: {self.runs} runs, {self.failures} failed"


def build_report(period: Period, now: datetime | None = None) -> Report:
    """Roll up the period's days (so the report is current), then read its numbers."""
    now = now or timezone.now()
    # The period, and the five weeks "slower than usual" compares (final days cost nothing).
    rollup_days(min(period.first, period.last - timedelta(days=SLOW_WINDOW_DAYS - 1)), period.last, now)
    report = Report(period, now)
    # The week that ends on the period's last day: for a weekly report, its own week.
    flags = slower_than_usual(datetime.combine(period.last, time(12), tzinfo=zone()))
    report.workflows = workflow_lines(period, flags)
    slugs = dict(Workflow.objects.filter(pk__in=flags).values_list("pk", "slug"))
    report.slow = sorted((slugs[pk], flag) for pk, flag in flags.items() if pk in slugs)
    start, end = period.bounds()
    chain_runs = ChainRun.objects.filter(finished_at__gte=start, finished_at__lt=end).order_by()
    report.chain_runs = dict(chain_runs.values_list("status").annotate(n=Count("id")).order_by("status"))
    alerts = Alert.objects.filter(triggered_at__gte=start, triggered_at__lt=end)
    report.alerts_by_severity = dict(alerts.order_by().values_list("severity").annotate(n=Count("id")))
    rank = Case(
        *(When(severity=s, then=Value(i)) for i, s in enumerate(SEVERITIES)),
        default=Value(len(SEVERITIES)),
        output_field=IntegerField(),
    )
    report.top_alerts = list(
        alerts.select_related("rule").order_by(rank, "-occurrences", "-triggered_at")[:TOP_ALERTS]
    )
    return report


def workflow_lines(period: Period, flags: dict[int, SlowFlag]) -> list[WorkflowLine]:
    """One line per workflow that ran in the period, the most failures first."""
    rows: dict[int, list[WorkflowDay]] = defaultdict(list)
    days = WorkflowDay.objects.filter(day__gte=period.first, day__lte=period.last).select_related("workflow")
    for row in days:
        rows[row.workflow_id].append(row)
    lines = []
    for workflow_id, days_of in rows.items():
        workflow = days_of[0].workflow
        line = WorkflowLine(workflow.slug, workflow.name, slow=flags.get(workflow_id))
        for row in days_of:
            line.runs += row.runs
            line.successes += row.successes
            line.failures += row.failures
            line.cancelled += row.cancelled
        # One day: its exact percentiles; several: from the merged histograms.
        if len(days_of) == 1:
            line.p50, line.p95, line.p99 = days_of[0].p50, days_of[0].p95, days_of[0].p99
        else:
            line.p50, line.p95, line.p99 = merged_percentiles(days_of)
        lines.append(line)
    return sorted(lines, key=lambda line: (-line.failures, line.slug))


# -- rendering -----------------------------------------------------------------------------


def rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def slow_note(flag: SlowFlag) -> str:
    return (
        f"slower than usual: median {format_seconds(flag.median_week)} over the last 7 days, "
        f"{format_seconds(flag.median_before)} over the 4 weeks before ({flag.ratio:.1f}x)"
    )


def _local(moment: datetime) -> str:
    return f"{moment.astimezone(zone()):%Y-%m-%d %H:%M}"


def _counts(counts: dict[str, int], order: list[str] | None = None) -> str:
    keys = [k for k in order or [] if k in counts] + sorted(k for k in counts if k not in (order or []))
    return ", ".join(f"{counts[k]} {k}" for k in keys) or "none"


def dashboard_url() -> str:
    return f"{settings.RPA_BASE_URL}/admin/dashboard/"


def render_text(report: Report) -> str:
    width = max([len(line.slug) for line in report.workflows] + [len("workflow")])
    lines = [
        f"RPA Monitor — {report.period.title} ({settings.TIME_ZONE})",
        "",
        f"Totals: {report.runs} workflow runs, {report.failures} failed, "
        f"success rate {rate(report.success_rate)}",
        "",
        f"{'workflow':<{width}}  {'runs':>6}  {'failed':>6}  {'success':>7}  "
        f"{'p50':>9}  {'p95':>9}  {'p99':>9}",
    ]
    for w in report.workflows:
        mark = "  FAILING" if w.failures else ""
        mark += "  SLOWER THAN USUAL" if w.slow else ""
        lines.append(
            f"{w.slug:<{width}}  {w.runs:>6}  {w.failures:>6}  {rate(w.success_rate):>7}  "
            f"{format_seconds(w.p50):>9}  {format_seconds(w.p95):>9}  {format_seconds(w.p99):>9}{mark}"
        )
    if not report.workflows:
        lines.append("(no workflow runs finished in this period)")
    lines += ["", "Slower than usual:"] + [f"  {slug}: {slow_note(flag)}" for slug, flag in report.slow]
    if not report.slow:
        lines[-1] += " none"
    lines += ["", f"Chain runs: {_counts(report.chain_runs)}"]
    lines.append(f"Alerts triggered: {_counts(report.alerts_by_severity, list(SEVERITIES))}")
    for alert in report.top_alerts:
        lines.append(
            f"  [{alert.severity}] {alert.summary} ({alert.subject}; {alert.status}; "
            f"{_local(alert.triggered_at)}; x{alert.occurrences}) {alert.url}"
        )
    lines += ["", f"Dashboard: {dashboard_url()}", f"Generated {_local(report.generated_at)}"]
    return "\n".join(lines) + "\n"


CELL = "padding:3px 8px;border-bottom:1px solid #ddd;text-align:{}"


def render_html(report: Report) -> str:
    head = format_html_join(
        "",
        '<th style="{}">{}</th>',
        ((CELL.format("left" if i == 0 else "right"), h) for i, h in enumerate(_HEADERS)),
    )
    rows = format_html_join("", "{}", ((_html_row(w),) for w in report.workflows))
    slow = format_html_join("", "<li><b>{}</b>: {}</li>", ((s, slow_note(f)) for s, f in report.slow))
    alerts = format_html_join(
        "",
        '<li>[{}] <a href="{}">{}</a> ({}; {}; {}; x{})</li>',
        (
            (a.severity, a.url, a.summary, a.subject, a.status, _local(a.triggered_at), a.occurrences)
            for a in report.top_alerts
        ),
    )
    return format_html(
        '<html><body style="font-family:sans-serif"><h2>RPA Monitor — {}</h2><p>{}</p>'
        "<p><b>Totals:</b> {} workflow runs, {} failed, success rate {}</p>"
        '<table style="border-collapse:collapse"><tr>{}</tr>{}</table>'
        "<h3>Slower than usual</h3>{}<h3>Chain runs</h3><p>{}</p>"
        "<h3>Alerts triggered</h3><p>{}</p><ul>{}</ul>"
        '<p><a href="{}">Dashboard</a> · generated {}</p></body></html>',
        report.period.title,
        settings.TIME_ZONE,
        report.runs,
        report.failures,
        rate(report.success_rate),
        head,
        rows or mark_safe('<tr><td colspan="8">No workflow runs finished in this period.</td></tr>'),
        format_html("<ul>{}</ul>", slow) if report.slow else "none",
        _counts(report.chain_runs),
        _counts(report.alerts_by_severity, list(SEVERITIES)),
        alerts,
        dashboard_url(),
        _local(report.generated_at),
    )


_HEADERS = ["workflow", "runs", "failed", "success", "p50", "p95", "p99", ""]


def _html_row(w: WorkflowLine) -> SafeString:
    colour = "#dc3545" if w.failures else "inherit"
    cells = [
        w.runs,
        w.failures,
        rate(w.success_rate),
        format_seconds(w.p50),
        format_seconds(w.p95),
        format_seconds(w.p99),
    ]
    numbers = format_html_join("", '<td style="{}">{}</td>', ((CELL.format("right"), c) for c in cells))
    note = "slower than usual" if w.slow else ""
    return format_html(
        '<tr><td style="{};color:{}">{}</td>{}<td style="{}">{}</td></tr>',
        CELL.format("left"),
        colour,
        w.slug,
        numbers,
        CELL.format("left"),
        note,
    )


def render_pdf(report: Report) -> bytes:
    """A title, the totals and the per-workflow table (reportlab)."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    styles = getSampleStyleSheet()
    buffer = BytesIO()
    doc = SimpleDocTemplate(
        buffer, pagesize=landscape(A4), title=f"RPA Monitor {report.period.title}", author="RPA Monitor"
    )

    def para(text: str, style: str = "Normal") -> Paragraph:
        return Paragraph(escape(text), styles[style])

    table: list[list[Any]] = [["Workflow", "Runs", "Failed", "Success", "p50", "p95", "p99", "Note"]]
    for w in report.workflows:
        note = ", ".join(n for n, on in (("failing", w.failures), ("slower than usual", w.slow)) if on)
        table.append(
            [
                para(w.slug),  # a paragraph wraps a long slug instead of overflowing the page
                str(w.runs),
                str(w.failures),
                rate(w.success_rate),
                format_seconds(w.p50),
                format_seconds(w.p95),
                format_seconds(w.p99),
                note,
            ]
        )
    grid = Table(table, repeatRows=1, colWidths=[200, 50, 50, 60, 65, 65, 65, 140])
    grid.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey),
                ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
                ("ALIGN", (1, 1), (6, -1), "RIGHT"),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    story = [
        para(f"RPA Monitor — {report.period.title}", "Title"),
        para(f"Local days in {settings.TIME_ZONE}; generated {_local(report.generated_at)}."),
        Spacer(1, 8),
        para(
            f"Totals: {report.runs} workflow runs, {report.failures} failed, "
            f"success rate {rate(report.success_rate)}",
            "Heading3",
        ),
        para(f"Chain runs: {_counts(report.chain_runs)}"),
        para(f"Alerts triggered: {_counts(report.alerts_by_severity, list(SEVERITIES))}"),
        Spacer(1, 8),
        grid if report.workflows else para("No workflow runs finished in this period."),
    ]
    doc.build(story)
    return buffer.getvalue()


# -- sending ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SentReport:
    report: Report
    recipients: list[str]
    pdf_attached: bool

    def summary(self) -> str:
        pdf = "; PDF attached" if self.pdf_attached else ""
        r = self.report
        return (
            f"sent the {r.period.adjective} report for {r.period.label} to {', '.join(self.recipients)} "
            f"({r.runs} runs, {r.failures} failed{pdf})"
        )


def send_report(period: Period, recipients: list[str], now: datetime | None = None) -> SentReport:
    """Build the report and email it (text + HTML; the weekly one with its PDF)."""
    report = build_report(period, now)
    message = EmailMultiAlternatives(
        subject=report.subject,
        body=render_text(report),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
    )
    message.attach_alternative(render_html(report), "text/html")
    with_pdf = period.kind == "week"
    if with_pdf:
        message.attach(period.pdf_filename, render_pdf(report), "application/pdf")
    try:
        message.send()
    except OSError as exc:  # SMTPException is one; so are a refused connection and a timeout
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ReportError(f"could not send the report: {reason}", "email") from None
    return SentReport(report, recipients, with_pdf)
