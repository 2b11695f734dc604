"""Rules run in every scheduler tick: `manage.py fire_triggers` opens and resolves alerts."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

import pytest
from django.utils import timezone

from alerts.models import Alert, AlertRule, Delivery, NotificationChannel
from alerts.tests.servers import RecordingHTTPServer, RecordingSMTPServer, free_port
from chains.models import RunStatus, Workflow, WorkflowRun
from rpa_monitor.test import manage
from triggers import scheduler


def failed_run(workflow: Workflow, status: str = RunStatus.FAILURE) -> WorkflowRun:
    now = timezone.now()
    return WorkflowRun.objects.create(
        workflow=workflow, status=status, started_at=now - timedelta(seconds=3), finished_at=now
    )


@pytest.mark.django_db(transaction=True)
def test_fire_triggers_opens_an_alert_and_the_next_tick_after_a_success_resolves_it() -> None:
    workflow = Workflow.objects.create(slug="bot", name="bot", command=["true"])
    AlertRule.objects.create(
        name="bot failed", kind="workflow_failed", created_at=timezone.now() - timedelta(1)
    )
    failed_run(workflow)
    done = manage("fire_triggers")
    assert done.returncode == 0, done.stderr
    assert "1 rule(s): 1 alert(s) triggered, 0 resolved" in done.stdout
    alert = Alert.objects.get()
    assert (alert.subject, alert.status) == ("bot", "triggered")

    failed_run(workflow, RunStatus.SUCCESS)
    done = manage("fire_triggers")
    assert "0 alert(s) triggered, 1 resolved" in done.stdout, done.stdout
    alert.refresh_from_db()
    assert alert.status == "resolved"


@pytest.mark.django_db
def test_a_failing_step_after_the_fires_does_not_stop_the_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(now: object) -> None:
        raise RuntimeError("rules table is gone")

    monkeypatch.setattr(scheduler, "AFTER_FIRES", [broken, scheduler.evaluate_rules])
    report = scheduler.tick()
    assert report.after[0] == "broken failed: rules table is gone"
    assert report.after[1].startswith("0 rule(s)")


@pytest.mark.django_db(transaction=True)
def test_a_tick_notifies_a_webhook_and_an_email_and_a_dead_channel_does_not_stop_them(
    http_server: RecordingHTTPServer, smtp_server: RecordingSMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole path in real processes: fire_triggers evaluates, queues, and sends (signed)."""
    workflow = Workflow.objects.create(slug="bot", name="bot", command=["true"])
    rule = AlertRule.objects.create(
        name="bot failed",
        kind="workflow_failed",
        severity="critical",
        created_at=timezone.now() - timedelta(1),
    )
    hook = NotificationChannel.objects.create(name="hook", kind="webhook", target=http_server.url, secret="k")
    mail = NotificationChannel.objects.create(name="mail", kind="email", target="ops@example.com")
    dead = NotificationChannel.objects.create(
        name="dead", kind="slack", target=f"http://127.0.0.1:{free_port()}/"
    )
    rule.channels.set([hook, mail, dead])
    failed_run(workflow)

    for name, value in {"EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(smtp_server.port)}.items():
        monkeypatch.setenv(name, value)  # the child process's mail settings
    done = manage("fire_triggers")
    assert done.returncode == 0, done.stderr
    (request,) = http_server.wait_for(1)
    assert request.json["event"] == "triggered"
    assert request.json["subject"] == "bot"
    expected = "sha256=" + hmac.new(b"k", request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["X-RPA-Signature"], expected)
    (message,) = smtp_server.wait_for(1)
    assert "[CRITICAL]" in message["Subject"]
    outcomes = dict(Delivery.objects.values_list("channel__name", "outcome"))
    assert outcomes == {"hook": "sent", "mail": "sent", "dead": "pending"}
    assert "connection" in Delivery.objects.get(channel=dead).error.lower()
