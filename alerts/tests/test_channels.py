"""Notification channels against real servers on 127.0.0.1: what each kind sends, and the outbox
sender's retries, timeouts, concurrency and claims."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from email.message import Message
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.db import connections
from django.test import override_settings
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from alerts.channels import (
    DeliveryReport,
    HttpPost,
    Notice,
    build_request,
    deliver_pending,
    send_test,
    webhook_payload,
)
from alerts.models import Alert, Delivery, NotificationChannel
from alerts.notify import queue_notifications
from alerts.tests.conftest import MakeAlert, MakeChannel
from alerts.tests.servers import RecordingHTTPServer, RecordingSMTPServer, free_port
from rpa_monitor.test import start_manage

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
TRIGGERED, RESOLVED = Delivery.Event.TRIGGERED, Delivery.Event.RESOLVED
SECOND = timedelta(seconds=1)


def queued(alert: Alert, event: str = TRIGGERED, at: datetime = T0) -> list[Delivery]:
    return queue_notifications(alert, event, at)


def stored(alert: Alert, event: str = TRIGGERED) -> Delivery:
    return Delivery.objects.get(alert=alert, event=event)


def expected_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def text_of(message: Message) -> str:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def counts(report: DeliveryReport) -> tuple[int, int, int]:
    return report.sent, report.retrying, report.failed


# -- what each kind sends --------------------------------------------------------------


@pytest.mark.django_db
def test_it_posts_the_webhook_json_signed_with_the_channel_secret(
    http_server: RecordingHTTPServer, make_channel: MakeChannel, make_alert: MakeAlert
) -> None:
    hook = make_channel("webhook", http_server.url + "/hook", secret="s3cret")
    alert = make_alert([hook], severity="critical")
    queued(alert)

    report = deliver_pending(T0)

    assert report.summary() == "notifications: 1 sent, 0 to retry, 0 failed"
    [request] = http_server.requests
    assert (request.method, request.path) == ("POST", "/hook")
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == "rpa-monitor"
    assert hmac.compare_digest(request.headers["X-RPA-Signature"], expected_signature("s3cret", request.body))
    assert request.json == {
        "event": "triggered",
        "alert_id": alert.pk,
        "rule": alert.rule.name,
        "kind": "workflow_failed",
        "severity": "critical",
        "subject": "bot",
        "status": "triggered",
        "details": {"run_id": 1, "exit_code": 1, "error": "boom"},
        "url": f"{settings.RPA_BASE_URL}/admin/alerts/alert/{alert.pk}/change/",
    }
    delivery = stored(alert)
    assert (delivery.outcome, delivery.attempts, delivery.response_code) == ("sent", 1, 200)
    assert (delivery.sent_at, delivery.last_attempt_at, delivery.error) == (T0, T0, "")


@pytest.mark.django_db
def test_it_sends_no_signature_header_without_a_secret(
    http_server: RecordingHTTPServer, make_channel: MakeChannel, make_alert: MakeAlert
) -> None:
    queued(make_alert([make_channel("webhook", http_server.url)]))
    deliver_pending(T0)
    [request] = http_server.requests
    assert "X-RPA-Signature" not in request.headers
    assert request.json["event"] == "triggered"


@pytest.mark.django_db
def test_it_posts_a_slack_message_with_a_color_and_fields(
    http_server: RecordingHTTPServer, make_channel: MakeChannel, make_alert: MakeAlert
) -> None:
    slack = make_channel("slack", http_server.url + "/services/T/B/X")
    alert = make_alert([slack], summary="Workflow bot failed <!channel> & more")
    queued(alert)
    deliver_pending(T0)
    alert.resolve(None, T0 + 60 * SECOND, reason="the condition cleared")
    deliver_pending(T0 + 60 * SECOND)

    triggered, resolved = (request.json for request in http_server.requests)
    # Text a user controls cannot ping the channel: <, > and & are escaped.
    assert triggered["text"] == ":warning: *WARNING* Workflow bot failed &lt;!channel&gt; &amp; more"
    [attachment] = triggered["attachments"]
    assert attachment["color"] == "#f2a900"
    fields = {field["title"]: field["value"] for field in attachment["fields"]}
    assert fields == {
        "Rule": alert.rule.name,
        "Subject": "bot",
        "Status": "triggered",
        "Severity": "warning",
        "Link": f"<{alert.url}|Open in RPA Monitor>",
    }
    assert resolved["text"].startswith(":white_check_mark: *RESOLVED* (warning) Workflow bot failed")
    assert resolved["attachments"][0]["color"] == "#2eb67d"
    assert {f["title"]: f["value"] for f in resolved["attachments"][0]["fields"]}["Status"] == "resolved"


@pytest.mark.django_db
def test_it_triggers_then_resolves_a_pagerduty_incident_with_one_dedup_key(
    http_server: RecordingHTTPServer, make_channel: MakeChannel, make_alert: MakeAlert
) -> None:
    http_server.respond(202, body=b'{"status":"success","dedup_key":"x"}')
    pagerduty = make_channel("pagerduty", http_server.url + "/v2/enqueue", secret="R0UTING-KEY")
    alert = make_alert([pagerduty], severity="critical", triggered_at=T0)
    queued(alert)
    assert deliver_pending(T0).sent == 1
    alert.resolve(None, T0 + 300 * SECOND, reason="the condition cleared")
    assert deliver_pending(T0 + 300 * SECOND).sent == 1

    trigger, resolve = (request.json for request in http_server.requests)
    assert [request.path for request in http_server.requests] == ["/v2/enqueue", "/v2/enqueue"]
    assert (trigger["event_action"], resolve["event_action"]) == ("trigger", "resolve")
    assert trigger["dedup_key"] == resolve["dedup_key"] == f"rpa-monitor-alert-{alert.pk}"
    assert trigger["routing_key"] == resolve["routing_key"] == "R0UTING-KEY"
    payload = trigger["payload"]
    assert payload["summary"] == "Workflow bot failed (exit code 1)"
    assert payload["severity"] == "critical"
    assert payload["source"]
    assert datetime.fromisoformat(payload["timestamp"]) == T0
    assert (payload["component"], payload["group"]) == ("bot", "workflow_failed")
    assert payload["custom_details"] == {"run_id": 1, "exit_code": 1, "error": "boom"}
    assert trigger["links"] == [{"href": alert.url, "text": "Alert in RPA Monitor"}]
    assert datetime.fromisoformat(resolve["payload"]["timestamp"]) == T0 + 300 * SECOND
    assert stored(alert, RESOLVED).response_code == 202


@pytest.mark.django_db
def test_it_mails_the_alert_and_its_resolution_through_smtp(
    smtp_server: RecordingSMTPServer, make_channel: MakeChannel, make_alert: MakeAlert
) -> None:
    mail = make_channel("email", "ops@example.com, oncall@example.com")
    alert = make_alert([mail], severity="critical")
    queued(alert)
    assert deliver_pending(T0).sent == 1
    alert.resolve(None, T0 + 60 * SECOND, reason="the condition cleared")
    assert deliver_pending(T0 + 60 * SECOND).sent == 1

    triggered, resolved = smtp_server.messages
    assert triggered["Subject"] == "[RPA Monitor][CRITICAL] Workflow bot failed (exit code 1)"
    assert resolved["Subject"] == "[RPA Monitor][RESOLVED] Workflow bot failed (exit code 1)"
    assert triggered["From"] == settings.DEFAULT_FROM_EMAIL
    assert triggered["To"] == "ops@example.com, oncall@example.com"
    assert smtp_server.envelopes[0][1] == ["ops@example.com", "oncall@example.com"]
    body = text_of(triggered)
    for line in [f"Rule:     {alert.rule.name}", "Subject:  bot", "Status:   triggered", "error: boom"]:
        assert line in body
    assert f"Link:     {alert.url}" in body
    assert "Status:   resolved" in text_of(resolved)
    delivery = stored(alert)
    assert (delivery.outcome, delivery.response_code) == ("sent", None)


@pytest.mark.django_db
def test_it_retries_a_mail_the_smtp_server_refuses(make_channel: MakeChannel, make_alert: MakeAlert) -> None:
    with RecordingSMTPServer(rcpt_reply="550 No such user here") as smtp, smtp.as_email_backend():
        alert = make_alert([make_channel("email", "nobody@example.com")])
        queued(alert)
        assert counts(deliver_pending(T0)) == (0, 1, 0)
    delivery = stored(alert)
    assert delivery.outcome == "pending"
    assert delivery.error == "SMTP recipients refused: nobody@example.com (550 No such user here)"


@pytest.mark.django_db
def test_it_retries_a_mail_when_no_smtp_server_answers(
    make_channel: MakeChannel, make_alert: MakeAlert
) -> None:
    alert = make_alert([make_channel("email", "ops@example.com")])
    queued(alert)
    with override_settings(
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=free_port(),
    ):
        assert counts(deliver_pending(T0)) == (0, 1, 0)
    assert stored(alert).error == "SMTP connection failed: Connection refused"


@given(
    details=st.dictionaries(
        st.text(max_size=10),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(),
            lambda inner: (
                st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
            ),
            max_leaves=8,
        ),
        max_size=4,
    ),
    secret=st.text(min_size=1, max_size=40),
)
def test_it_signs_exactly_the_bytes_it_sends(details: dict[str, Any], secret: str) -> None:
    notice = Notice(
        event="triggered",
        alert_id=7,
        rule="r",
        kind="workflow_failed",
        severity="info",
        subject="bot",
        status="triggered",
        summary="s",
        details=details,
        url="http://x/",
        at=T0,
        dedup_key="k",
    )
    post = build_request(
        NotificationChannel(kind="webhook", target="http://127.0.0.1/", secret=secret), notice
    )
    assert isinstance(post, HttpPost)
    assert json.loads(post.body) == webhook_payload(notice)
    assert hmac.compare_digest(post.headers["X-RPA-Signature"], expected_signature(secret, post.body))


# -- failures, retries, timeouts --------------------------------------------------------


@pytest.mark.django_db
@override_settings(RPA_ALERT_RETRY_SECONDS=30, RPA_ALERT_MAX_ATTEMPTS=5)
def test_it_retries_a_500_with_a_doubling_backoff_until_it_is_sent(
    http_server: RecordingHTTPServer, make_channel: MakeChannel, make_alert: MakeAlert
) -> None:
    http_server.respond(500, 500, 200, body=b"upstream broke")
    alert = make_alert([make_channel("webhook", http_server.url)])
    queued(alert)

    assert counts(deliver_pending(T0)) == (0, 1, 0)
    delivery = stored(alert)
    assert (delivery.outcome, delivery.attempts, delivery.response_code) == ("pending", 1, 500)
    assert delivery.error == "HTTP 500 Internal Server Error"  # the body ("upstream broke") is not kept
    assert delivery.next_attempt_at == T0 + 30 * SECOND

    assert counts(deliver_pending(T0 + 29 * SECOND)) == (0, 0, 0)  # not before its backoff
    assert len(http_server.requests) == 1
    assert counts(deliver_pending(T0 + 30 * SECOND)) == (0, 1, 0)
    assert stored(alert).next_attempt_at == T0 + 90 * SECOND  # twice the wait after the second failure
    assert counts(deliver_pending(T0 + 89 * SECOND)) == (0, 0, 0)
    assert counts(deliver_pending(T0 + 90 * SECOND)) == (1, 0, 0)

    delivery = stored(alert)
    assert (delivery.outcome, delivery.attempts, delivery.response_code) == ("sent", 3, 200)
    assert (delivery.error, delivery.sent_at) == ("", T0 + 90 * SECOND)
    assert len(http_server.requests) == 3


@pytest.mark.django_db
@override_settings(RPA_ALERT_RETRY_SECONDS=30, RPA_ALERT_MAX_ATTEMPTS=2)
def test_it_marks_a_delivery_failed_after_the_last_attempt(
    http_server: RecordingHTTPServer, make_channel: MakeChannel, make_alert: MakeAlert
) -> None:
    http_server.respond(503)
    alert = make_alert([make_channel("webhook", http_server.url)])
    queued(alert)
    assert counts(deliver_pending(T0)) == (0, 1, 0)
    assert counts(deliver_pending(T0 + 30 * SECOND)) == (0, 0, 1)
    assert counts(deliver_pending(T0 + timedelta(days=2))) == (0, 0, 0)

    delivery = stored(alert)
    assert (delivery.outcome, delivery.attempts, delivery.response_code) == ("failed", 2, 503)
    assert delivery.error == "HTTP 503 Service Unavailable"
    assert len(http_server.requests) == 2


@pytest.mark.django_db
@override_settings(RPA_ALERT_HTTP_TIMEOUT=0.3)
def test_it_records_a_timeout_without_waiting_for_slow_endpoints(
    make_channel: MakeChannel, make_alert: MakeAlert
) -> None:
    with RecordingHTTPServer(delay=10) as slow:
        hooks = [make_channel("webhook", f"{slow.url}/{name}") for name in "abc"]
        alert = make_alert(hooks)
        queued(alert)
        started = time.monotonic()
        report = deliver_pending(T0)
        elapsed = time.monotonic() - started

    assert elapsed < 5  # the 0.3 s timeout, not the server's 10 s delay (x 3 channels)
    assert counts(report) == (0, 3, 0)
    for delivery in Delivery.objects.filter(alert=alert):
        assert (delivery.error, delivery.response_code, delivery.attempts) == (
            "timed out after 0.3 s",
            None,
            1,
        )


@pytest.mark.django_db
@override_settings(RPA_ALERT_HTTP_TIMEOUT=1.0)
def test_it_sends_to_all_channels_at_once(make_channel: MakeChannel, make_alert: MakeAlert) -> None:
    with RecordingHTTPServer(delay=10) as slow:
        alert = make_alert([make_channel("webhook", f"{slow.url}/{n}") for n in range(4)])
        queued(alert)
        started = time.monotonic()
        deliver_pending(T0)
        elapsed = time.monotonic() - started
    # One after another, four 1 s timeouts would take 4 s or more.
    assert elapsed < 3
    assert len(slow.requests) == 4


@pytest.mark.django_db
def test_it_records_a_refused_connection(make_channel: MakeChannel, make_alert: MakeAlert) -> None:
    alert = make_alert([make_channel("webhook", f"http://127.0.0.1:{free_port()}/hook")])
    queued(alert)
    assert counts(deliver_pending(T0)) == (0, 1, 0)
    delivery = stored(alert)
    assert (delivery.error, delivery.response_code) == ("connection failed: Connection refused", None)


@pytest.mark.django_db
def test_it_records_a_connection_closed_without_an_answer(
    make_channel: MakeChannel, make_alert: MakeAlert
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def hang_up() -> None:
            peer, _ = listener.accept()
            with peer:
                peer.recv(65536)

        thread = threading.Thread(target=hang_up)
        thread.start()
        alert = make_alert([make_channel("webhook", f"http://127.0.0.1:{listener.getsockname()[1]}/")])
        queued(alert)
        assert counts(deliver_pending(T0)) == (0, 1, 0)
        thread.join(5)
    delivery = stored(alert)
    assert (delivery.error, delivery.response_code) == (
        "connection failed: Remote end closed connection without response",
        None,
    )


@pytest.mark.django_db
def test_it_does_not_follow_redirects(
    http_server: RecordingHTTPServer, make_channel: MakeChannel, make_alert: MakeAlert
) -> None:
    http_server.respond(302, headers={"Location": f"{http_server.url}/moved"})
    alert = make_alert([make_channel("webhook", http_server.url + "/hook")])
    queued(alert)
    deliver_pending(T0)
    assert [request.path for request in http_server.requests] == ["/hook"]
    delivery = stored(alert)
    assert (delivery.outcome, delivery.response_code) == ("pending", 302)
    assert delivery.error == "HTTP 302 Found (redirects are not followed)"  # not even the Location


@pytest.mark.django_db
def test_it_stores_no_part_of_a_long_binary_body(
    http_server: RecordingHTTPServer, make_channel: MakeChannel, make_alert: MakeAlert
) -> None:
    http_server.respond(500, body=b"\x00\xff" + b"x" * 100_000)
    alert = make_alert([make_channel("webhook", http_server.url)])
    queued(alert)
    deliver_pending(T0)
    assert stored(alert).error == "HTTP 500 Internal Server Error"


@pytest.mark.django_db
def test_it_does_not_let_failing_channels_stop_the_others(
    http_server: RecordingHTTPServer,
    smtp_server: RecordingSMTPServer,
    make_channel: MakeChannel,
    make_alert: MakeAlert,
) -> None:
    with RecordingHTTPServer([500]) as broken:
        dead = make_channel("webhook", f"http://127.0.0.1:{free_port()}/", name="dead")
        failing = make_channel("slack", broken.url, name="failing")
        odd = make_channel("webhook", http_server.url + "/odd", name="odd")
        good = make_channel("webhook", http_server.url + "/good", name="good")
        mail = make_channel("email", "ops@example.com", name="mail")
        alert = make_alert([dead, failing, odd, good, mail])
        queued(alert)
        NotificationChannel.objects.filter(pk=odd.pk).update(kind="fax")  # stored data no form allows

        assert counts(deliver_pending(T0)) == (2, 3, 0)

    outcome = {d.channel.name: (d.outcome, d.error) for d in Delivery.objects.select_related("channel")}
    assert outcome["good"] == ("sent", "")
    assert outcome["mail"] == ("sent", "")
    assert outcome["dead"] == ("pending", "connection failed: Connection refused")
    assert outcome["failing"] == ("pending", "HTTP 500 Internal Server Error")
    assert outcome["odd"] == ("pending", "could not build the notification: unknown channel kind 'fax'")
    assert [request.path for request in http_server.requests] == ["/good"]
    assert len(smtp_server.messages) == 1


@pytest.mark.django_db
def test_it_fails_the_pending_deliveries_of_a_disabled_channel(
    http_server: RecordingHTTPServer, make_channel: MakeChannel, make_alert: MakeAlert
) -> None:
    hook = make_channel("webhook", http_server.url)
    alert = make_alert([hook])
    queued(alert)
    NotificationChannel.objects.filter(pk=hook.pk).update(enabled=False)

    assert counts(deliver_pending(T0)) == (0, 0, 1)
    delivery = stored(alert)
    assert (delivery.outcome, delivery.error, delivery.attempts) == ("failed", "channel disabled", 0)
    assert http_server.requests == []


@pytest.mark.django_db
@override_settings(RPA_ALERT_MAX_ATTEMPTS=3)
def test_it_gives_up_on_a_last_attempt_whose_sender_died(
    http_server: RecordingHTTPServer, make_channel: MakeChannel, make_alert: MakeAlert
) -> None:
    alert = make_alert([make_channel("webhook", http_server.url)])
    queued(alert)
    # Claimed for its third attempt by a tick that never reported back; its lease has run out.
    Delivery.objects.filter(alert=alert).update(attempts=3, next_attempt_at=T0)

    assert counts(deliver_pending(T0)) == (0, 0, 1)
    assert stored(alert).error == "gave up after 3 attempt(s); the last one never reported back"
    assert http_server.requests == []


@pytest.mark.django_db
def test_it_holds_back_non_critical_notifications_during_quiet_hours(
    http_server: RecordingHTTPServer, make_channel: MakeChannel, make_alert: MakeAlert
) -> None:
    zone = ZoneInfo(settings.TIME_ZONE)
    night = datetime(2026, 11, 24, 23, 30, tzinfo=zone)
    morning = datetime(2026, 11, 25, 7, 0, tzinfo=zone)
    hook = make_channel("webhook", http_server.url)
    warning = make_alert([hook], severity="warning", quiet_hours="22:00-07:00", subject="slow-bot")
    critical = make_alert([hook], severity="critical", quiet_hours="22:00-07:00", subject="payroll")
    queued(warning, at=night)
    queued(critical, at=night)

    assert counts(deliver_pending(night)) == (1, 0, 0)
    assert [r.json["subject"] for r in http_server.requests] == ["payroll"]
    assert counts(deliver_pending(morning - 60 * SECOND)) == (0, 0, 0)
    assert counts(deliver_pending(morning)) == (1, 0, 0)
    assert [r.json["subject"] for r in http_server.requests] == ["payroll", "slow-bot"]


@pytest.mark.django_db
@override_settings(RPA_ALERT_RETRY_SECONDS=30)
def test_it_never_sends_a_resolved_notification_before_its_triggered_one(
    http_server: RecordingHTTPServer, make_channel: MakeChannel, make_alert: MakeAlert
) -> None:
    http_server.respond(500, 500, 200)
    alert = make_alert([make_channel("pagerduty", http_server.url, secret="key")], severity="critical")
    queued(alert)
    assert counts(deliver_pending(T0)) == (0, 1, 0)  # triggered: retry at T0 + 30 s
    alert.resolve(None, T0 + 10 * SECOND, reason="the condition cleared")

    report = deliver_pending(T0 + 10 * SECOND)
    assert (counts(report), report.waiting) == ((0, 0, 0), 1)
    assert stored(alert, RESOLVED).next_attempt_at == T0 + 30 * SECOND
    # Both due: the triggered one fails again, so the resolved one is not even tried.
    report = deliver_pending(T0 + 30 * SECOND)
    assert (counts(report), report.waiting) == ((0, 1, 0), 1)
    assert counts(deliver_pending(T0 + 90 * SECOND)) == (2, 0, 0)

    actions = [request.json["event_action"] for request in http_server.requests]
    assert actions == ["trigger", "trigger", "trigger", "resolve"]
    assert (stored(alert).attempts, stored(alert, RESOLVED).attempts) == (3, 1)


# -- concurrent ticks ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_it_never_sends_a_delivery_twice_from_two_concurrent_ticks(
    make_channel: MakeChannel, make_alert: MakeAlert
) -> None:
    with RecordingHTTPServer(delay=0.2) as server:
        hooks = [make_channel("webhook", f"{server.url}/{n}") for n in range(3)]
        alerts = [make_alert(hooks, subject=f"bot-{n}") for n in range(8)]
        for alert in alerts:
            queued(alert)
        reports: list[DeliveryReport] = []
        start = threading.Barrier(2)

        def tick() -> None:
            try:
                start.wait()
                reports.append(deliver_pending(T0))
            finally:
                connections.close_all()

        threads = [threading.Thread(target=tick) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)

    seen = [(request.path, request.json["alert_id"]) for request in server.requests]
    assert len(seen) == len(set(seen)) == 24
    assert sum(report.sent for report in reports) == 24
    assert set(Delivery.objects.values_list("outcome", "attempts")) == {("sent", 1)}


@pytest.mark.django_db(transaction=True)
def test_it_never_sends_a_delivery_twice_from_two_processes(
    make_channel: MakeChannel, make_alert: MakeAlert
) -> None:
    now = timezone.now()
    with RecordingHTTPServer(delay=0.1) as server:
        hooks = [make_channel("webhook", f"{server.url}/{n}") for n in range(4)]
        for n in range(10):
            queued(make_alert(hooks, subject=f"bot-{n}"), at=now)
        # Both processes start sending at the same moment (after Django's start-up), as two
        # hosts' ticks can: each reads the same due rows, and the claims decide who sends what.
        at = time.time() + 3
        code = (
            f"import time; time.sleep(max(0.0, {at} - time.time())); "
            "from alerts.channels import deliver_pending; print(deliver_pending().summary())"
        )
        ticks = [start_manage("shell", "-c", code) for _ in range(2)]
        outputs = [tick.communicate(timeout=60) for tick in ticks]

    assert [tick.returncode for tick in ticks] == [0, 0], outputs
    sent = [re.search(rb"notifications: (\d+) sent", out) for out, _ in outputs]
    assert sum(int(match.group(1)) for match in sent if match) == 40, outputs
    seen = [(request.path, request.json["alert_id"]) for request in server.requests]
    assert len(seen) == len(set(seen)) == 40
    assert Delivery.objects.filter(outcome="sent").count() == 40


@pytest.mark.django_db(transaction=True)
def test_it_leaves_alone_a_delivery_whose_channel_was_deleted_while_sending(
    make_channel: MakeChannel, make_alert: MakeAlert
) -> None:
    with RecordingHTTPServer(delay=0.5) as server:
        hook = make_channel("webhook", server.url)
        queued(make_alert([hook]))

        def delete_during_send() -> None:
            try:
                server.wait_for(1)
                NotificationChannel.objects.filter(pk=hook.pk).delete()
            finally:
                connections.close_all()

        deleter = threading.Thread(target=delete_during_send)
        deleter.start()
        report = deliver_pending(T0)
        deleter.join(10)

    assert counts(report) == (0, 0, 0)
    assert not Delivery.objects.exists()


# -- send_test ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_sends_a_test_notification_without_storing_a_delivery(
    http_server: RecordingHTTPServer, make_channel: MakeChannel
) -> None:
    hook = make_channel("webhook", http_server.url + "/hook", secret="s3cret")
    assert send_test(hook) == (True, "HTTP 200 OK")
    [request] = http_server.requests
    assert hmac.compare_digest(request.headers["X-RPA-Signature"], expected_signature("s3cret", request.body))
    assert request.json["rule"] == "Test notification"
    assert request.json["details"] == {"test": True, "channel": hook.name}
    assert not Delivery.objects.exists()

    http_server.respond(500, body=b"nope")
    assert send_test(hook) == (False, "HTTP 500 Internal Server Error")
    closed = make_channel("slack", f"http://127.0.0.1:{free_port()}/")
    assert send_test(closed) == (False, "connection failed: Connection refused")


@pytest.mark.django_db
def test_it_sends_a_test_mail_and_resolves_a_test_pagerduty_incident(
    http_server: RecordingHTTPServer, smtp_server: RecordingSMTPServer, make_channel: MakeChannel
) -> None:
    ok, detail = send_test(make_channel("email", "ops@example.com"))
    assert (ok, detail) == (True, "mailed to 1 recipient(s)")
    [message] = smtp_server.messages
    assert message["Subject"].startswith("[RPA Monitor][INFO] Test notification from RPA Monitor")

    pagerduty = make_channel("pagerduty", http_server.url, secret="key")
    assert send_test(pagerduty) == (True, "HTTP 200 OK; resolve: HTTP 200 OK")
    trigger, resolve = (request.json for request in http_server.requests)
    assert (trigger["event_action"], resolve["event_action"]) == ("trigger", "resolve")
    assert trigger["dedup_key"] == resolve["dedup_key"] == f"rpa-monitor-test-{pagerduty.pk}"
    assert not Delivery.objects.exists()
