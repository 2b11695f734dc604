"""Send alert notifications: what each channel kind says, and the outbox sender the tick runs.

A notification is a `Delivery` row (an outbox): `queue_notifications` writes it in
the transaction that opens or resolves the alert, and every scheduler tick calls
`deliver_pending`, which

1. takes the due pending deliveries, oldest first, a bounded batch (the partial
   index `delivery_pending_due_idx` finds them: O(due), however long the history);
2. claims each with a compare-and-set UPDATE on its attempt counter, so two ticks
   on two hosts never send the same one: the loser's UPDATE matches no row. The
   claim also leases it (next_attempt_at moves past the longest send), so a
   delivery whose sender died is simply due again later;
3. sends the claimed ones at once from a thread pool, each with a short timeout,
   so a slow or dead endpoint costs the tick about one timeout and never holds up
   the other channels. The threads only talk HTTP/SMTP; every database write
   happens back in the calling thread;
4. records each outcome: 2xx → sent; anything else is stored (short error text,
   response code; never the response body, see `alerts.egress`) and retried with a doubling delay, until
   RPA_ALERT_MAX_ATTEMPTS attempts → failed.

A "resolved" notification never overtakes its alert's "triggered" one on the same
channel (a receiver such as PagerDuty would otherwise keep the incident open): it
waits while that one is still pending, and when both are due they go out in order.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import smtplib
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import F, Q
from django.utils import timezone

from alerts import egress
from alerts.models import Alert, Delivery, NotificationChannel
from logs import get_logger
from rpa_monitor.lib.text import clean_text

log = get_logger("alerts")

BATCH_SIZE = 50  # due deliveries per tick; each gets its own sending thread
USER_AGENT = "rpa-monitor"
ERROR_CHARS = 300
MAX_BACKOFF = timedelta(days=1)
PAGERDUTY_SUMMARY_CHARS = 1024
SUBJECT_CHARS = 200

Kind = NotificationChannel.Kind
Event = Delivery.Event
Outcome = Delivery.Outcome


# -- what a notification says ---------------------------------------------------------


@dataclass(frozen=True)
class Notice:
    """One alert event as the channels see it (or a test notification, which has no alert)."""

    event: str
    alert_id: int
    rule: str
    kind: str
    severity: str
    subject: str
    status: str
    summary: str
    details: dict[str, Any]
    url: str
    at: datetime
    dedup_key: str

    @property
    def resolved(self) -> bool:
        return self.event == Event.RESOLVED


def notice_for(alert: Alert, event: str) -> Notice:
    resolved = event == Event.RESOLVED
    at = (alert.resolved_at if resolved else alert.triggered_at) or timezone.now()
    return Notice(
        event=event,
        alert_id=alert.pk,
        rule=alert.rule.name,
        kind=alert.rule.kind,
        severity=alert.severity,
        subject=alert.subject,
        status=alert.status,
        summary=alert.summary,
        details=alert.details if isinstance(alert.details, dict) else {"value": alert.details},
        url=alert.url,
        at=at,
        dedup_key=f"rpa-monitor-alert-{alert.pk}",
    )


def notice_for_test(channel: NotificationChannel) -> Notice:
    return Notice(
        event=Event.TRIGGERED,
        alert_id=0,
        rule="Test notification",
        kind="test",
        severity="info",
        subject=channel.name,
        status=Alert.Status.TRIGGERED,
        summary=f"Test notification from RPA Monitor to the channel {channel.name!r}",
        details={"test": True, "channel": channel.name},
        url=f"{settings.RPA_BASE_URL}/admin/alerts/notificationchannel/{channel.pk}/change/",
        at=timezone.now(),
        dedup_key=f"rpa-monitor-test-{channel.pk}",
    )


def webhook_payload(notice: Notice) -> dict[str, Any]:
    """The generic webhook's JSON (DESIGN §8b): exactly these keys."""
    return {
        "event": notice.event,
        "alert_id": notice.alert_id,
        "rule": notice.rule,
        "kind": notice.kind,
        "severity": notice.severity,
        "subject": notice.subject,
        "status": notice.status,
        "details": notice.details,
        "url": notice.url,
    }


SLACK_LOOK = {
    "critical": (":red_circle:", "#d7263d"),
    "warning": (":warning:", "#f2a900"),
    "info": (":information_source:", "#3b82f6"),
}
SLACK_RESOLVED = (":white_check_mark:", "#2eb67d")


def slack_payload(notice: Notice) -> dict[str, Any]:
    """A Slack incoming-webhook message (also what Mattermost and Rocket.Chat accept)."""
    marker, color = (
        SLACK_RESOLVED if notice.resolved else SLACK_LOOK.get(notice.severity, SLACK_LOOK["warning"])
    )
    label = f"*RESOLVED* ({notice.severity})" if notice.resolved else f"*{notice.severity.upper()}*"
    summary = _slack_escape(_one_line(notice.summary))
    fields = [
        {"title": "Rule", "value": _slack_escape(notice.rule), "short": True},
        {"title": "Subject", "value": _slack_escape(notice.subject), "short": True},
        {"title": "Status", "value": notice.status, "short": True},
        {"title": "Severity", "value": notice.severity, "short": True},
        {"title": "Link", "value": f"<{notice.url}|Open in RPA Monitor>", "short": False},
    ]
    attachment = {
        "color": color,
        "fallback": f"[{'RESOLVED' if notice.resolved else notice.severity.upper()}] {summary}",
        "fields": fields,
        "footer": "RPA Monitor",
        "ts": int(notice.at.timestamp()),
    }
    return {"text": f"{marker} {label} {summary}", "attachments": [attachment]}


PAGERDUTY_SEVERITY = {"critical": "critical", "warning": "warning", "info": "info"}


def pagerduty_payload(notice: Notice, routing_key: str) -> dict[str, Any]:
    """A PagerDuty Events API v2 event; the dedup_key ties the resolve to its trigger."""
    return {
        "routing_key": routing_key,
        "event_action": "resolve" if notice.resolved else "trigger",
        "dedup_key": notice.dedup_key,
        "payload": {
            "summary": _one_line(notice.summary)[:PAGERDUTY_SUMMARY_CHARS] or notice.rule,
            "source": _source(),
            "severity": PAGERDUTY_SEVERITY.get(notice.severity, "warning"),
            "timestamp": notice.at.isoformat(),
            "component": notice.subject,
            "group": notice.kind,
            "class": notice.rule,
            "custom_details": notice.details,
        },
        "links": [{"href": notice.url, "text": "Alert in RPA Monitor"}],
        "client": "RPA Monitor",
        "client_url": notice.url,
    }


def email_message(notice: Notice, recipients: list[str]) -> EmailMessage:
    label = "RESOLVED" if notice.resolved else notice.severity.upper()
    subject = f"[RPA Monitor][{label}] {_one_line(notice.summary)}"
    if len(subject) > SUBJECT_CHARS:
        subject = subject[: SUBJECT_CHARS - 1] + "…"
    lines = [
        f"{'Resolved' if notice.resolved else 'Alert'}: {notice.summary}",
        "",
        f"Rule:     {notice.rule} ({notice.kind})",
        f"Subject:  {notice.subject}",
        f"Severity: {notice.severity}",
        f"Status:   {notice.status}",
        f"{'Resolved' if notice.resolved else 'Triggered'}: {notice.at.isoformat(timespec='seconds')}",
        f"Link:     {notice.url}",
        "",
        "Details:",
        *(f"  {key}: {_detail_text(value)}" for key, value in notice.details.items()),
    ]
    return EmailMessage(
        subject=subject,
        body="\n".join(lines) + "\n",
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
    )


def signature(secret: str, body: bytes) -> str:
    """The X-RPA-Signature value: a receiver recomputes it over the raw body to trust it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class HttpPost:
    url: str
    body: bytes
    headers: dict[str, str]


Outbound = HttpPost | EmailMessage


def build_request(channel: NotificationChannel, notice: Notice) -> Outbound:
    """What to send through `channel`: an HTTP POST, or an email for the mail backend."""
    if channel.kind == Kind.EMAIL:
        return email_message(notice, channel.recipients)
    if channel.kind == Kind.WEBHOOK:
        return _json_post(channel.get_target(), webhook_payload(notice), secret=channel.get_secret())
    if channel.kind == Kind.SLACK:
        return _json_post(channel.get_target(), slack_payload(notice))
    if channel.kind == Kind.PAGERDUTY:
        return _json_post(channel.get_target(), pagerduty_payload(notice, channel.get_secret()))
    raise ValueError(f"unknown channel kind {channel.kind!r}")


def _json_post(url: str, payload: dict[str, Any], secret: str = "") -> HttpPost:
    body = json.dumps(payload, cls=DjangoJSONEncoder, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    if secret:
        headers["X-RPA-Signature"] = signature(secret, body)
    return HttpPost(url.strip(), body, headers)


def _one_line(text: str) -> str:
    return " ".join((text or "").split())


def _slack_escape(text: str) -> str:
    # Slack reads <…> as links and mentions: user text must not be able to ping @channel.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _detail_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, cls=DjangoJSONEncoder)


def _source() -> str:
    """PagerDuty's `source`: the site's host, or this machine's when the site says localhost."""
    host = urlsplit(settings.RPA_BASE_URL).hostname or ""
    if host in ("", "localhost", "127.0.0.1", "::1"):
        return socket.gethostname() or "rpa-monitor"
    return host


# -- sending (runs in worker threads: no ORM, no logging to the database) --------------


@dataclass(frozen=True)
class Result:
    ok: bool
    detail: str  # "HTTP 200" when sent, else the error text stored on the delivery
    response_code: int | None = None
    attempted: bool = True  # False: held back because the notification before it failed


def send(outbound: Outbound, timeout: float) -> Result:
    """Send one notification; never raises (a failure is a Result)."""
    try:
        if isinstance(outbound, EmailMessage):
            return _send_email(outbound, timeout)
        return _post(outbound, timeout)
    except Exception as exc:  # an odd library error must not take the tick down
        text = f"{type(exc).__name__}: {exc}"
        if isinstance(outbound, EmailMessage):
            return Result(False, _short(text))
        return Result(False, _scrub(text, outbound.url))


def _post(post: HttpPost, timeout: float) -> Result:
    try:
        # egress.post refuses private targets, pins the connection to the address it
        # checked and follows no redirect: a webhook that moved is a configuration problem
        # to show, and following it could re-POST the alert (and its signature) anywhere.
        code = egress.post(post.url, post.body, post.headers, timeout)
    except egress.RefusedTarget as exc:
        return Result(False, str(exc))
    except requests.Timeout:
        return Result(False, f"timed out after {timeout:g} s")
    except requests.ConnectionError as exc:
        return Result(False, _scrub(f"connection failed: {_reason(exc)}", post.url))
    except requests.RequestException as exc:
        return Result(False, _scrub(f"request failed: {exc}", post.url))
    # Only the code and its standard phrase: the body, the server's reason text and a
    # Location are what an internal service would leak through an error message.
    if 200 <= code < 300:
        return Result(True, egress.status_text(code), code)
    if 300 <= code < 400:
        return Result(False, f"{egress.status_text(code)} (redirects are not followed)", code)
    return Result(False, egress.status_text(code), code)


def _scrub(text: str, url: str) -> str:
    """An error text without the URL's path and query (a Slack webhook's path is its token)."""
    parts = urlsplit(url)
    for secret in (url, parts.path + (f"?{parts.query}" if parts.query else ""), parts.path):
        if len(secret) > 1:
            text = text.replace(secret, "…")
    return _short(text)


def _send_email(message: EmailMessage, timeout: float) -> Result:
    if not message.to:
        return Result(False, "no recipients")
    try:
        with get_connection(timeout=timeout) as connection:
            sent = connection.send_messages([message])
    except TimeoutError:
        return Result(False, f"timed out after {timeout:g} s")
    except smtplib.SMTPRecipientsRefused as exc:
        refused = "; ".join(
            f"{to} ({code} {_smtp_text(text)})" for to, (code, text) in exc.recipients.items()
        )
        return Result(False, _short(f"SMTP recipients refused: {refused}"))
    except smtplib.SMTPResponseException as exc:
        code = exc.smtp_code if 0 < exc.smtp_code < 1000 else None
        return Result(False, _short(f"SMTP {exc.smtp_code}: {_smtp_text(exc.smtp_error)}"), code)
    except (smtplib.SMTPException, OSError) as exc:
        return Result(False, f"SMTP connection failed: {_reason(exc)}")
    if not sent:
        return Result(False, "the mail backend sent nothing")
    return Result(True, f"mailed to {len(message.recipients())} recipient(s)")


def _smtp_text(text: bytes | str) -> str:
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)


ERRNO_RE = re.compile(r"\[Errno -?\d+\] ([^'\"\]\)]+)")


def _reason(exc: BaseException) -> str:
    """The socket error under requests' and urllib3's wrapping, e.g. "Connection refused"."""
    queue, seen = [exc], set()
    while queue:  # breadth first: the error nearest the top that says what the socket saw
        error = queue.pop(0)
        if id(error) in seen:
            continue
        seen.add(id(error))
        # The socket's own error (requests' exceptions are OSErrors too, but only wrappers).
        if isinstance(error, OSError) and not isinstance(error, requests.RequestException):
            return error.strerror or _short(str(error), 200) or type(error).__name__
        linked = [*error.args, getattr(error, "reason", None), error.__cause__, error.__context__]
        queue += [item for item in linked if isinstance(item, BaseException)]
    found = ERRNO_RE.search(str(exc))
    return found.group(1).strip() if found else _short(str(exc), 200)


def _short(text: str, limit: int = ERROR_CHARS) -> str:
    text = clean_text(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _send_in_order(items: list[Outbound | Result], timeout: float) -> list[Result]:
    """Send one alert's notifications through one channel in order (triggered, then resolved);
    after a failure the rest wait, so a "resolved" never arrives before its "triggered"."""
    results: list[Result] = []
    for item in items:
        if results and not results[-1].ok:
            results.append(Result(False, "waiting for the notification before it", attempted=False))
        elif isinstance(item, Result):
            results.append(item)
        else:
            results.append(send(item, timeout))
    return results


# -- the outbox sender ------------------------------------------------------------------


@dataclass
class DeliveryReport:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    waiting: int = 0  # "resolved" notifications held until their "triggered" one is done

    def summary(self) -> str:
        text = f"notifications: {self.sent} sent, {self.retrying} to retry, {self.failed} failed"
        if self.waiting:
            text += f", {self.waiting} waiting for their alert's first notification"
        return text


def deliver_pending(now: datetime | None = None) -> DeliveryReport:
    """Send the due pending deliveries (see the module docstring); never raises for a
    delivery problem — each outcome is stored on its Delivery and counted in the report."""
    now = now or timezone.now()
    report = DeliveryReport()
    due = list(
        Delivery.objects.filter(
            Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True), outcome=Outcome.PENDING
        )
        .select_related("alert__rule", "channel")
        .order_by("next_attempt_at", "id")[:BATCH_SIZE]
    )
    claimed = [delivery for delivery in due if _claim(delivery, now, report)]
    units = _in_order(claimed, now, report)
    timeout = settings.RPA_ALERT_HTTP_TIMEOUT
    work = [[_outbound(delivery) for delivery in unit] for unit in units]
    if work:
        with ThreadPoolExecutor(max_workers=len(work), thread_name_prefix="alert-send") as pool:
            outcomes = list(pool.map(_send_in_order, work, [timeout] * len(work)))
        for unit, results in zip(units, outcomes, strict=True):
            _record_unit(unit, results, now, report)
    return report


def _lease() -> timedelta:
    # Longer than any send can take (connect + read timeouts, a triggered and a
    # resolved one in a row), so a delivery is never re-claimed while in flight.
    return timedelta(seconds=60 + 4 * settings.RPA_ALERT_HTTP_TIMEOUT)


def _claim(delivery: Delivery, now: datetime, report: DeliveryReport) -> bool:
    """Take the delivery for this tick: True when this caller won it and should send it."""
    mine = Delivery.objects.filter(pk=delivery.pk, outcome=Outcome.PENDING, attempts=delivery.attempts)
    if not delivery.channel.enabled:
        if mine.update(outcome=Outcome.FAILED, error="channel disabled", last_attempt_at=now):
            report.failed += 1
            log.warning(f"{_label(delivery)}: not sent, channel disabled", **_meta(delivery))
        return False
    if delivery.attempts >= settings.RPA_ALERT_MAX_ATTEMPTS:
        # Its last attempt was claimed by a sender that never reported back (it died).
        error = f"gave up after {delivery.attempts} attempt(s); the last one never reported back"
        if mine.update(outcome=Outcome.FAILED, error=error, last_attempt_at=now):
            report.failed += 1
            log.error(f"{_label(delivery)}: {error}", **_meta(delivery))
        return False
    lease_end = now + _lease()
    if not mine.update(attempts=F("attempts") + 1, next_attempt_at=lease_end):
        return False  # another tick claimed it (or it was sent, failed or deleted) meanwhile
    delivery.attempts += 1
    delivery.next_attempt_at = lease_end
    return True


def _in_order(claimed: list[Delivery], now: datetime, report: DeliveryReport) -> list[list[Delivery]]:
    """Group the claimed deliveries into units sent one after another: a "resolved" goes
    with its "triggered" when both are claimed, and waits when that one is pending elsewhere."""
    resolved = [d for d in claimed if d.event == Event.RESOLVED]
    triggered_pending: dict[tuple[int, int], tuple[int, datetime | None]] = {}
    if resolved:
        rows = Delivery.objects.filter(
            alert_id__in={d.alert_id for d in resolved}, event=Event.TRIGGERED, outcome=Outcome.PENDING
        ).values_list("alert_id", "channel_id", "pk", "next_attempt_at")
        triggered_pending = {(alert, channel): (pk, at) for alert, channel, pk, at in rows}
    by_pk = {d.pk: d for d in claimed}
    units: dict[int, list[Delivery]] = {}
    for delivery in claimed:
        first = triggered_pending.get((delivery.alert_id, delivery.channel_id))
        if delivery.event == Event.RESOLVED and first is not None:
            first_pk, first_due = first
            if first_pk in by_pk:
                units.setdefault(first_pk, [by_pk[first_pk]]).append(delivery)
            else:
                _wait(delivery, first_due, now, report)
        else:
            units.setdefault(delivery.pk, [delivery])
    return list(units.values())


def _wait(delivery: Delivery, until: datetime | None, now: datetime, report: DeliveryReport) -> None:
    """Give a claimed delivery back unsent (the attempt is not counted), due again at `until`."""
    due = max(until or now, now)
    mine = Delivery.objects.filter(pk=delivery.pk, outcome=Outcome.PENDING, attempts=delivery.attempts)
    if mine.update(attempts=F("attempts") - 1, next_attempt_at=due):
        report.waiting += 1


def _outbound(delivery: Delivery) -> Outbound | Result:
    try:
        return build_request(delivery.channel, notice_for(delivery.alert, delivery.event))
    except Exception as exc:  # bad stored data must fail this delivery, not the tick
        return Result(False, _short(f"could not build the notification: {exc}"))


def _record_unit(unit: list[Delivery], results: list[Result], now: datetime, report: DeliveryReport) -> None:
    retry_at: datetime | None = None
    for delivery, result in zip(unit, results, strict=True):
        if result.attempted:
            retry_at = _record(delivery, result, now, report)
        else:
            _wait(delivery, retry_at, now, report)


def _record(delivery: Delivery, result: Result, now: datetime, report: DeliveryReport) -> datetime | None:
    """Store one send's outcome; returns when it will be retried (None: it is done)."""
    # Only if it is still this tick's claim: a delivery deleted with its channel, or
    # (after an overlong send) re-claimed by another tick, is left alone.
    mine = Delivery.objects.filter(pk=delivery.pk, outcome=Outcome.PENDING, attempts=delivery.attempts)
    fields: dict[str, Any] = {"last_attempt_at": now, "response_code": result.response_code}
    retry_at = None
    if result.ok:
        fields.update(outcome=Outcome.SENT, sent_at=now, error="")
    elif delivery.attempts >= settings.RPA_ALERT_MAX_ATTEMPTS:
        fields.update(outcome=Outcome.FAILED, error=clean_text(result.detail))
    else:
        retry_at = now + backoff(delivery.attempts)
        fields.update(error=clean_text(result.detail), next_attempt_at=retry_at)
    if not mine.update(**fields):
        return None
    meta = {**_meta(delivery), "attempts": delivery.attempts, "response_code": result.response_code}
    if result.ok:
        report.sent += 1
        log.info(f"{_label(delivery)}: sent ({result.detail})", **meta)
    elif retry_at is None:
        report.failed += 1
        log.error(f"{_label(delivery)}: failed after {delivery.attempts} attempt(s): {result.detail}", **meta)
    else:
        report.retrying += 1
        log.warning(f"{_label(delivery)}: {result.detail}; retry at {retry_at.isoformat()}", **meta)
    return retry_at


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt: RPA_ALERT_RETRY_SECONDS, doubling, at most a day."""
    seconds = settings.RPA_ALERT_RETRY_SECONDS * 2 ** min(max(attempts - 1, 0), 20)
    return min(timedelta(seconds=seconds), MAX_BACKOFF)


def _label(delivery: Delivery) -> str:
    return f"{delivery.event} notification of alert {delivery.alert_id} via {delivery.channel.name}"


def _meta(delivery: Delivery) -> dict[str, Any]:
    return {"delivery_id": delivery.pk, "alert_id": delivery.alert_id, "channel": delivery.channel.name}


# -- the admin's "Send a test notification" ----------------------------------------------


def send_test(channel: NotificationChannel) -> tuple[bool, str]:
    """Send a test notification through `channel` now (enabled or not); nothing is stored.

    Returns (ok, detail), detail being what the endpoint answered or the error.
    """
    notice = notice_for_test(channel)
    timeout = settings.RPA_ALERT_HTTP_TIMEOUT
    try:
        outbound = build_request(channel, notice)
    except Exception as exc:
        return False, _short(f"could not build the notification: {exc}")
    result = send(outbound, timeout)
    if result.ok and channel.kind == Kind.PAGERDUTY:
        # Resolve the test incident at once: a test must not leave the on-call with an open incident.
        resolve = replace(notice, event=Event.RESOLVED, status=Alert.Status.RESOLVED)
        closed = send(build_request(channel, resolve), timeout)
        detail = f"{result.detail}; resolve: {closed.detail}"
        result = replace(result, detail=detail)
    message = f"test notification via {channel.name}: {result.detail}"
    if result.ok:
        log.info(message, channel=channel.name)
    else:
        log.warning(message, channel=channel.name)
    return result.ok, result.detail
