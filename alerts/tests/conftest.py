"""Fixtures for alert tests: real HTTP and SMTP servers, and small factories for channels and alerts."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from django.utils import timezone

from alerts.models import Alert, AlertRule, NotificationChannel
from alerts.tests.servers import RecordingHTTPServer, RecordingSMTPServer

MakeChannel = Callable[..., NotificationChannel]
MakeAlert = Callable[..., Alert]


@pytest.fixture(autouse=True)
def allow_private_webhooks(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test servers listen on 127.0.0.1, which channels refuse by default (alerts.egress):
    these tests allow it, here and in the processes they start. Tests of the refusal say
    `settings.RPA_ALLOW_PRIVATE_WEBHOOKS = False`."""
    settings.RPA_ALLOW_PRIVATE_WEBHOOKS = True
    monkeypatch.setenv("RPA_ALLOW_PRIVATE_WEBHOOKS", "1")


@pytest.fixture
def http_server() -> Iterator[RecordingHTTPServer]:
    """A recording HTTP endpoint on 127.0.0.1 answering 200 (see `respond()` to change that)."""
    with RecordingHTTPServer() as server:
        yield server


@pytest.fixture
def smtp_server() -> Iterator[RecordingSMTPServer]:
    """A recording SMTP server on 127.0.0.1, with Django's mail settings pointing at it."""
    with RecordingSMTPServer() as server, server.as_email_backend():
        yield server


@pytest.fixture
def make_channel() -> MakeChannel:
    """make_channel("webhook", target, secret="…", name=…): a validated, saved channel."""
    numbers = itertools.count(1)

    def make(kind: str, target: str, **fields: Any) -> NotificationChannel:
        fields.setdefault("name", f"{kind} {next(numbers)}")
        channel = NotificationChannel(kind=kind, target=target, **fields)
        channel.full_clean()
        channel.save()
        return channel

    return make


@pytest.fixture
def make_alert() -> MakeAlert:
    """make_alert(channels=[…], severity="critical", rule=…, **alert fields): an open alert of a
    workflow_failed rule (made when `rule` is not given) notifying through `channels`."""
    numbers = itertools.count(1)

    def make(
        channels: Sequence[NotificationChannel] = (),
        *,
        severity: str = AlertRule.Severity.WARNING,
        rule: AlertRule | None = None,
        quiet_hours: str = "",
        **fields: Any,
    ) -> Alert:
        if rule is None:
            rule = AlertRule.objects.create(
                name=f"bot failed {next(numbers)}",
                kind=AlertRule.Kind.WORKFLOW_FAILED,
                severity=severity,
                quiet_hours=quiet_hours,
                cooldown_seconds=0,
            )
            rule.channels.set(channels)
        now = fields.pop("triggered_at", None) or timezone.now()
        fields.setdefault("subject", "bot")
        fields.setdefault("summary", f"Workflow {fields['subject']} failed (exit code 1)")
        fields.setdefault("details", {"run_id": 1, "exit_code": 1, "error": "boom"})
        return Alert.objects.create(
            rule=rule, severity=severity, triggered_at=now, last_seen_at=now, **fields
        )

    return make
