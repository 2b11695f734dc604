"""`manage.py send_report`: daily and weekly summaries by email, the weekly one with a PDF."""

from __future__ import annotations

import email
import email.policy
import io
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pypdf
import pytest
import time_machine
from aiosmtpd.controller import Controller
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from alerts.models import Alert, AlertRule, NotificationChannel
from alerts.report import Period, build_report, parse_period, render_pdf
from chains.daily import rollup_days
from chains.models import Chain, ChainRun, RunStatus, Workflow, WorkflowDay, WorkflowRun
from rpa_monitor.test import manage

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 23, 7, 5, tzinfo=UTC)  # a Monday morning; TIME_ZONE is UTC in tests
LAST = date(2026, 11, 22)  # yesterday: the daily report's day, the weekly report's last day


def at(day: date, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def workflow(slug: str) -> Workflow:
    return Workflow.objects.create(slug=slug, name=slug.replace("-", " ").title(), command=["true"])


def run(wf: Workflow, finished: datetime, seconds: float, status: str = "success") -> None:
    started = finished - timedelta(seconds=seconds)
    WorkflowRun.objects.create(
        workflow=wf, status=status, created_at=started, started_at=started, finished_at=finished
    )


def alert(severity: str, summary: str, triggered: datetime, occurrences: int = 1) -> Alert:
    rule, _ = AlertRule.objects.get_or_create(
        name=f"{severity} rule", defaults={"kind": "workflow_failed", "severity": severity}
    )
    return Alert.objects.create(
        rule=rule,
        subject=summary.split()[0],
        severity=severity,
        summary=summary,
        triggered_at=triggered,
        last_seen_at=triggered,
        occurrences=occurrences,
    )


def make_world(last: date = LAST) -> None:
    """A week ending on `last`, and the four weeks before it.

    login: 3 good runs a day. submit: 2 of 4 runs fail on the last day (5 failures the
    week before, outside the weekly report). data-entry: ~10 s for four weeks, ~20 s
    this week: slower than usual.
    """
    login, submit, data_entry = workflow("login"), workflow("submit"), workflow("data-entry")
    for back in range(7):
        for n in range(3):
            run(login, at(last - timedelta(days=back), 9, n), 2.0 + n)
    for n, status in enumerate([RunStatus.SUCCESS, RunStatus.FAILURE, RunStatus.SUCCESS, RunStatus.TIMEOUT]):
        run(submit, at(last, 10, n), 5.0, status)
    for n in range(5):
        run(submit, at(last - timedelta(days=7), 10, n), 5.0, RunStatus.FAILURE)
    for back in range(35):
        base = 20.0 if back < 7 else 10.0
        for n in range(4):
            run(data_entry, at(last - timedelta(days=back), 11, n), base * (0.8 + 0.13 * n))
    chain = Chain.objects.create_with_steps("nightly", "Nightly", ["login", "submit"])
    for finished, outcome in [(at(last), "success"), (at(last - timedelta(days=2)), "failure")]:
        ChainRun.objects.create(chain=chain, status=outcome, started_at=finished, finished_at=finished)
    ChainRun.objects.create(chain=chain, status="failure", finished_at=at(last - timedelta(days=8)))
    alert("critical", "submit failed (exit code 1)", at(last, 10, 1), occurrences=2)
    alert("warning", "nightly chain failed", at(last - timedelta(days=4)))
    alert("info", "login was slow", at(last - timedelta(days=9)))  # before both periods
    # The tick has kept the aggregates of past days (the report rolls up its own days anyway).
    rollup_days(last - timedelta(days=40), last - timedelta(days=7), now=at(last))


def send(*args: str) -> str:
    with time_machine.travel(NOW, tick=False):
        out = io.StringIO()
        call_command("send_report", *args, stdout=out)
        return out.getvalue()


def html_of(message: Any) -> str:
    (html, kind), *_ = message.alternatives
    assert kind == "text/html"
    return str(html)


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages)


# -- the daily and weekly reports --------------------------------------------------------


def test_the_daily_report_mails_yesterday_to_the_given_addresses(mailoutbox: list[Any]) -> None:
    make_world()
    summary = send("--period", "day", "--to", "ops@example.com", "boss@example.com")

    assert summary.strip() == (
        "sent the daily report for 2026-11-22 to ops@example.com, boss@example.com (11 runs, 2 failed)"
    )
    (message,) = mailoutbox
    assert message.subject == "[RPA Monitor] Daily report 2026-11-22: 11 runs, 2 failed"
    assert message.to == ["ops@example.com", "boss@example.com"]
    assert message.from_email == "rpa-monitor@localhost"
    assert not message.attachments
    text = message.body
    assert "Totals: 11 workflow runs, 2 failed, success rate 81.8%" in text
    lines = {line.split()[0]: line for line in text.splitlines() if line.startswith(("login ", "submit "))}
    assert lines["submit"].split()[1:4] == ["4", "2", "50.0%"]
    assert "FAILING" in lines["submit"]
    assert "FAILING" not in lines["login"]
    assert text.index("submit") < text.index("login")  # the most failures first
    assert "data-entry" in text
    assert "Chain runs: 1 success" in text
    assert "Alerts triggered: 1 critical" in text
    assert "[critical] submit failed (exit code 1)" in text
    assert "nightly chain failed" not in text  # four days ago: not in yesterday's report
    html = html_of(message)
    assert "<table" in html
    assert "submit" in html
    assert "login" in html
    assert "http://localhost:8000/admin/dashboard/" in html


def test_the_daily_report_shows_the_exact_percentiles_of_its_day(mailoutbox: list[Any]) -> None:
    make_world()
    send("--period", "day", "--to", "ops@example.com")
    login_line = next(line for line in mailoutbox[0].body.splitlines() if line.startswith("login"))
    assert login_line.split()[1:7] == ["3", "0", "100.0%", "3.00s", "3.90s", "3.98s"]


def test_the_weekly_report_covers_seven_days_and_attaches_a_pdf(mailoutbox: list[Any]) -> None:
    make_world()
    summary = send("--period", "week", "--to", "ops@example.com")

    assert summary.strip() == (
        "sent the weekly report for 2026-11-16 to 2026-11-22 to ops@example.com "
        "(53 runs, 2 failed; PDF attached)"
    )
    (message,) = mailoutbox
    assert message.subject == "[RPA Monitor] Weekly report 2026-11-16 to 2026-11-22: 53 runs, 2 failed"
    text = message.body
    assert "Totals: 53 workflow runs, 2 failed, success rate 96.2%" in text
    assert "Chain runs: 1 failure, 1 success" in text  # the one 8 days ago is not in this week
    assert "Alerts triggered: 1 critical, 1 warning" in text
    assert text.index("[critical] submit failed") < text.index("[warning] nightly chain failed")
    assert "login was slow" not in text
    data_entry = next(line for line in text.splitlines() if line.startswith("data-entry"))
    assert "SLOWER THAN USUAL" in data_entry
    assert "data-entry: slower than usual: median" in text
    assert "slower than usual" in html_of(message)

    (filename, content, mimetype), *rest = message.attachments
    assert not rest
    assert (filename, mimetype) == ("rpa-report-2026-11-16-to-2026-11-22.pdf", "application/pdf")
    assert content.startswith(b"%PDF")
    pdf = pdf_text(content)
    for words in [
        "Weekly report 2026-11-16 to 2026-11-22",
        "Totals: 53 workflow runs, 2 failed, success rate 96.2%",
        "login",
        "submit",
        "data-entry",
        "slower than usual",
    ]:
        assert words in pdf, words


def test_it_rolls_up_the_days_it_covers_first(mailoutbox: list[Any]) -> None:
    make_world()
    assert not WorkflowDay.objects.filter(day__gte=LAST - timedelta(days=6)).exists()
    send("--period", "week", "--to", "ops@example.com")
    days = WorkflowDay.objects.filter(day__gte=LAST - timedelta(days=6))
    assert {d.day for d in days} == {LAST - timedelta(days=back) for back in range(7)}
    assert all(d.final for d in days)
    assert sum(d.runs for d in days) == 53


def test_a_period_without_runs_still_makes_a_report(mailoutbox: list[Any]) -> None:
    summary = send("--period", "week", "--to", "ops@example.com", "--date", "2026-01-10")
    assert "for 2026-01-03 to 2026-01-09" in summary
    assert "(0 runs, 0 failed; PDF attached)" in summary
    assert "(no workflow runs finished in this period)" in mailoutbox[0].body
    assert "No workflow runs finished in this period." in pdf_text(mailoutbox[0].attachments[0][1])


def test_date_picks_the_period_before_it() -> None:
    assert parse_period("day", "2026-03-01", NOW) == Period("day", date(2026, 2, 28), date(2026, 2, 28))
    assert parse_period("week", "2026-11-23", NOW) == Period("week", date(2026, 11, 16), date(2026, 11, 22))
    assert parse_period("day", None, NOW).last == LAST
    assert parse_period("day", "2026-11-23", NOW).last == LAST  # today is allowed: yesterday has ended


@override_settings(TIME_ZONE="America/New_York")
def test_the_period_is_made_of_local_days() -> None:
    """07:05 UTC on the 23rd is 02:05 in New York, still the 23rd; the day there starts at 05:00 UTC."""
    wf = workflow("bot")
    run(wf, datetime(2026, 11, 22, 4, 59, tzinfo=UTC), 1.0)  # 23:59 on the 21st in New York
    run(wf, datetime(2026, 11, 23, 4, 59, tzinfo=UTC), 1.0)  # 23:59 on the 22nd in New York
    with time_machine.travel(NOW, tick=False):
        report = build_report(parse_period("day"))
    assert report.period.last == LAST
    assert report.runs == 1


def test_the_pdf_of_a_long_report_has_several_pages() -> None:
    report = build_report(Period("week", LAST - timedelta(days=6), LAST), NOW)
    assert len(pypdf.PdfReader(io.BytesIO(render_pdf(report))).pages) == 1
    for i in range(80):
        run(workflow(f"bot-{i:02d}"), at(LAST), float(i + 1))
    report = build_report(Period("week", LAST - timedelta(days=6), LAST), NOW)
    pages = pypdf.PdfReader(io.BytesIO(render_pdf(report))).pages
    assert len(pages) > 1
    text = "\n".join(page.extract_text() for page in pages)
    assert all(f"bot-{i:02d}" in text for i in range(80))


# -- recipients -------------------------------------------------------------------------------


@override_settings(RPA_REPORT_RECIPIENTS=["team@example.com", "lead@example.com"])
def test_without_to_it_mails_the_configured_recipients(mailoutbox: list[Any]) -> None:
    NotificationChannel.objects.create(name="ops", kind="email", target="ops@example.com")
    send("--period", "day")
    assert mailoutbox[0].to == ["team@example.com", "lead@example.com"]


def test_without_to_or_setting_it_mails_the_enabled_email_channels(mailoutbox: list[Any]) -> None:
    NotificationChannel.objects.create(name="ops", kind="email", target="ops@example.com, oncall@example.com")
    NotificationChannel.objects.create(name="more", kind="email", target="oncall@example.com, qa@example.com")
    NotificationChannel.objects.create(name="off", kind="email", target="old@example.com", enabled=False)
    NotificationChannel.objects.create(name="hook", kind="webhook", target="http://127.0.0.1:9/")
    send("--period", "day")
    # Channels by name ("more", then "ops"), each address once.
    assert mailoutbox[0].to == ["oncall@example.com", "qa@example.com", "ops@example.com"]


def test_without_any_recipient_it_refuses_in_one_line(mailoutbox: list[Any]) -> None:
    NotificationChannel.objects.create(name="off", kind="email", target="old@example.com", enabled=False)
    with pytest.raises(CommandError, match=r"^no recipients: give --to, set RPA_REPORT_RECIPIENTS"):
        send("--period", "day")
    assert not mailoutbox


@override_settings(RPA_REPORT_RECIPIENTS=["not-an-address"])
def test_a_bad_configured_recipient_names_the_setting(mailoutbox: list[Any]) -> None:
    with pytest.raises(CommandError, match="RPA_REPORT_RECIPIENTS: not an email address: not-an-address"):
        send("--period", "day")


def test_to_takes_repeated_and_comma_separated_addresses(mailoutbox: list[Any]) -> None:
    send("--period", "day", "--to", "a@example.com,b@example.com", "--to", "c@example.com", "a@example.com")
    assert mailoutbox[0].to == ["a@example.com", "b@example.com", "c@example.com"]


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--period", "month"], "--period"),
        (["--period", ""], "--period"),
        (["--period", "day\x00"], "--period"),
        (["--period", "day", "--date", "2026-13-45"], "--date"),
        (["--period", "day", "--date", "2026-02-30"], "--date"),
        (["--period", "day", "--date", "yesterday"], "--date"),
        (["--period", "day", "--date", "20261122"], "--date"),
        (["--period", "day", "--date", "2026-W47-1"], "--date"),
        (["--period", "day", "--date", "2026-11-24"], "--date"),  # tomorrow: the day has not ended
        (["--period", "week", "--date", "9999-12-31"], "--date"),
        (["--period", "week", "--date", "0001-01-03"], "--date"),
        (["--period", "day", "--date", "\udcff"], "--date"),
        (["--period", "day", "--date", "\u0662\u0660\u0662\u0666-11-22"], "--date"),  # Arabic-Indic digits
        (["--period", "day", "--to", "not-an-address"], "--to"),
        (["--period", "day", "--to", ""], "--to"),
        (["--period", "day", "--to", "ops@example.com,"], "--to"),
        (["--period", "day", "--to", "a@example.com\nBcc: evil@example.com"], "--to"),
        (["--period", "day", "--to", "a@exa\x00mple.com"], "--to"),
        (["--period", "day", "--to", "\udcff@example.com"], "--to"),
        (["--period", "day", "--to", "x" * 5000 + "@example.com"], "--to"),
        (["--period", "day", "--to"], "--to"),
        (["--date", "2026-11-22"], "--period"),
    ],
)
def test_bad_options_are_refused_in_one_line_naming_the_option(
    mailoutbox: list[Any], args: list[str], names: str
) -> None:
    make_world()
    rows = WorkflowDay.objects.count()
    with pytest.raises(CommandError) as refused:
        send(*args)
    message = str(refused.value)
    assert "\n" not in message.strip()
    assert names in message
    assert not mailoutbox
    assert WorkflowDay.objects.count() == rows  # refused before any rollup


SAMPLES = ["2026-11-22", "ops@example.com", " 2026-01-01 ", "a@b.co,c@d.co"]


@given(value=st.one_of(st.text(max_size=40), st.sampled_from(SAMPLES)))
def test_random_dates_and_addresses_are_sent_or_refused_never_a_traceback(value: str) -> None:
    for args in (["--date", value, "--to", "ops@example.com"], ["--to", value]):
        mail.outbox = []
        message = ""
        try:
            send("--period", "day", *args)
        except CommandError as exc:
            message = str(exc)
        assert "\n" not in message.strip()
        assert len(mail.outbox) == (0 if message else 1)


def test_an_unreachable_mail_server_is_a_one_line_error(mailoutbox: list[Any]) -> None:
    closed = free_port()
    smtp = "django.core.mail.backends.smtp.EmailBackend"
    with (
        override_settings(EMAIL_BACKEND=smtp, EMAIL_HOST="127.0.0.1", EMAIL_PORT=closed, EMAIL_TIMEOUT=2),
        pytest.raises(CommandError, match=r"^could not send the report: ") as refused,
    ):
        send("--period", "day", "--to", "ops@example.com")
    assert "\n" not in str(refused.value)


# -- the command in its own process, through a real SMTP server --------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Inbox:
    """aiosmtpd handler keeping every message it is given."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.recipients: list[list[str]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(message)  # type: ignore[arg-type]
            self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"


@pytest.fixture
def smtp_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Inbox]:
    """A real SMTP server on 127.0.0.1; manage() children reach it through the EMAIL_* variables."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    monkeypatch.setenv("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
    monkeypatch.setenv("EMAIL_HOST", "127.0.0.1")
    monkeypatch.setenv("EMAIL_PORT", str(controller.port))
    monkeypatch.setenv("DEFAULT_FROM_EMAIL", "reports@example.com")
    monkeypatch.delenv("RPA_REPORT_RECIPIENTS", raising=False)
    try:
        yield inbox
    finally:
        controller.stop()


@pytest.mark.django_db(transaction=True)
def test_the_command_mails_the_weekly_report_through_smtp_from_its_own_process(smtp_server: Inbox) -> None:
    today = timezone.localdate()
    make_world(last=today - timedelta(days=1))

    done = manage("send_report", "--period", "week", "--to", "a@example.com")

    assert done.returncode == 0, done.stderr
    first, last = today - timedelta(days=7), today - timedelta(days=1)
    assert done.stdout.strip() == (
        f"sent the weekly report for {first} to {last} to a@example.com (53 runs, 2 failed; PDF attached)"
    )
    (message,) = smtp_server.messages
    assert smtp_server.recipients == [["a@example.com"]]
    assert message["From"] == "reports@example.com"
    assert message["Subject"] == f"[RPA Monitor] Weekly report {first} to {last}: 53 runs, 2 failed"
    body = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert body is not None
    assert html is not None
    assert "Totals: 53 workflow runs, 2 failed" in body.get_content()
    assert "<table" in html.get_content()
    (attachment,) = message.iter_attachments()
    assert attachment.get_filename() == f"rpa-report-{first}-to-{last}.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert "data-entry" in pdf_text(attachment.get_content())


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (
            ["--period", "month", "--to", "a@example.com"],
            "CommandError: --period: month is not one of day, week",
        ),
        (["--period", "day", "--date", "2026-02-30", "--to", "a@example.com"], "CommandError: --date: "),
        (["--period", "day", "--to", "nobody"], "CommandError: --to: not an email address: nobody"),
        (["--period", "day"], "CommandError: no recipients: "),
        (["--to", "a@example.com"], "the following arguments are required: --period"),
    ],
)
def test_the_command_refuses_bad_options_with_a_one_line_reason(
    smtp_server: Inbox, args: list[str], reason: str
) -> None:
    done = manage("send_report", *args)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert reason in done.stderr.strip().splitlines()[-1]
    assert not smtp_server.messages
