"""The alerts admin: rule and channel forms refuse bad input naming the field; Acknowledge/Resolve."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin.models import LogEntry as AdminLogEntry
from django.db import models
from django.test import Client
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from alerts.models import Alert, AlertRule, Delivery, NotificationChannel
from chains.models import Chain, Workflow
from rpa_monitor.tests.badinput import (
    GARBAGE,
    assert_names_a_field,
    form_errors,
    superuser_client,
    table_state,
)

pytestmark = pytest.mark.django_db
TABLES: list[type[models.Model]] = [
    AlertRule,
    AlertRule.channels.through,
    NotificationChannel,
    Alert,
    Delivery,
    AdminLogEntry,
]
RULE_FIELDS = [
    "name",
    "kind",
    "enabled",
    "severity",
    "workflow",
    "chain",
    "params",
    "channels",
    "cooldown_seconds",
    "quiet_hours",
]
CHANNEL_FIELDS = ["name", "kind", "target", "secret", "enabled"]


@pytest.fixture
def client() -> Client:
    return superuser_client()


@pytest.fixture
def world() -> dict[str, Any]:
    workflow = Workflow.objects.create(slug="bot", name="bot", command=["true"])
    chain = Chain.objects.create_with_steps("nightly", "Nightly", ["bot"])
    hook = NotificationChannel.objects.create(name="hook", kind="webhook", target="http://127.0.0.1:9/x")
    return {"workflow": workflow, "chain": chain, "hook": hook}


def rule_data(world: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    base = {
        "name": "three in a row",
        "kind": "consecutive_failures",
        "enabled": "on",
        "severity": "critical",
        "workflow": str(world["workflow"].pk),
        "chain": "",
        "params": '{"count": 3}',
        "channels": [str(world["hook"].pk)],
        "cooldown_seconds": "900",
        "quiet_hours": "22:00-07:00",
    }
    return {k: v for k, v in (base | overrides).items() if v is not None}


def channel_data(**overrides: Any) -> dict[str, Any]:
    base = {"name": "ops", "kind": "webhook", "target": "https://hooks.example.com/rpa", "secret": "s3cret"}
    return {k: v for k, v in (base | overrides).items() if v is not None}


def refused(client: Client, path: str, data: dict[str, Any], fields: list[str]) -> dict[str, list[str]]:
    before = table_state(*TABLES)
    response = client.post(path, data)
    assert response.status_code == 200, response.status_code
    errors = form_errors(response)
    assert_names_a_field(errors, fields)
    assert table_state(*TABLES) == before, "a refused form wrote rows"
    return errors


RULE_ADD = "admin:alerts_alertrule_add"
CHANNEL_ADD = "admin:alerts_notificationchannel_add"


def test_it_saves_a_valid_rule(client: Client, world: dict[str, Any]) -> None:
    response = client.post(reverse(RULE_ADD), rule_data(world))
    assert response.status_code == 302
    rule = AlertRule.objects.get()
    assert rule.param("count") == 3
    assert list(rule.channels.all()) == [world["hook"]]


@pytest.mark.parametrize(
    ("overrides", "field", "text"),
    [
        ({"params": '{"count": -1}'}, "params", "count must be between 1 and 1000, not -1"),
        ({"params": '{"count": 2.5}'}, "params", "count must be a whole number"),
        ({"params": '{"count": "3"}'}, "params", "count must be a whole number"),
        ({"params": '{"count": 3, "colour": 1}'}, "params", "unknown parameter 'colour'"),
        ({"params": "[3]"}, "params", "Must be a JSON object"),
        (
            {"kind": "error_rate_above", "params": '{"percent": 10, "window_seconds": 0}'},
            "params",
            "window_seconds must be between 60",
        ),
        ({"kind": "error_rate_above", "params": '{"percent": 0}'}, "params", "percent must be above 0"),
        ({"kind": "error_rate_above", "params": '{"percent": 101}'}, "params", "percent must be between"),
        ({"kind": "no_success_within", "params": "{}"}, "params", "seconds is required"),
        ({"kind": "workflow_failed", "params": '{"count": 1}'}, "params", "take no parameters"),
        ({"kind": "chain_failed", "params": "{}"}, "workflow", "rules are about chains"),
        ({"chain": "CHAIN"}, "chain", "not both"),
        ({"channels": ["999999"]}, "channels", "999999 is not one of the available choices"),
        ({"channels": ["not-a-number"]}, "channels", "not a valid value"),
        ({"quiet_hours": "22-07"}, "quiet_hours", "Use HH:MM-HH:MM"),
        ({"quiet_hours": "25:00-07:00"}, "quiet_hours", "Use HH:MM-HH:MM"),
        ({"quiet_hours": "07:00-07:00"}, "quiet_hours", "the window would be empty"),
        ({"cooldown_seconds": "-5"}, "cooldown_seconds", "greater than or equal to 0"),
        ({"severity": "apocalyptic"}, "severity", "Select a valid choice"),
        ({"kind": "sometimes"}, "kind", "Select a valid choice"),
    ],
)
def test_it_refuses_bad_rule_parameters_naming_the_field(
    client: Client, world: dict[str, Any], overrides: dict[str, Any], field: str, text: str
) -> None:
    if overrides.get("chain") == "CHAIN":
        overrides = {**overrides, "chain": str(world["chain"].pk)}
    errors = refused(client, reverse(RULE_ADD), rule_data(world, **overrides), RULE_FIELDS)
    assert any(text in message for message in errors.get(field, [])), errors


@pytest.mark.parametrize(
    ("overrides", "field", "text"),
    [
        ({"target": "not a url"}, "target", "Not an http(s) URL"),
        ({"target": "ftp://example.com/hook"}, "target", "Not an http(s) URL"),
        ({"target": "http://"}, "target", "Not an http(s) URL"),
        ({"kind": "slack", "target": "hooks.slack.com/services/x"}, "target", "Not an http(s) URL"),
        ({"kind": "email", "target": "ops@example.com, nobody"}, "target", "Not an email address: nobody"),
        ({"kind": "pagerduty", "secret": ""}, "secret", "routing key"),
        ({"target": ""}, "target", "required"),
        ({"kind": "sms"}, "kind", "Select a valid choice"),
    ],
)
def test_it_refuses_bad_channels_naming_the_field(
    client: Client, world: dict[str, Any], overrides: dict[str, Any], field: str, text: str
) -> None:
    errors = refused(client, reverse(CHANNEL_ADD), channel_data(**overrides), CHANNEL_FIELDS)
    assert any(text in message for message in errors.get(field, [])), errors


@given(
    data=st.dictionaries(st.sampled_from(RULE_FIELDS), st.one_of(GARBAGE, st.none()), min_size=1, max_size=3)
)
def test_rule_form_takes_garbage_in_any_field(
    client: Client, world: dict[str, Any], data: dict[str, Any]
) -> None:
    response = client.post(reverse(RULE_ADD), rule_data(world, **data))
    assert response.status_code in (200, 302, 400)
    for rule in AlertRule.objects.all():
        rule.full_clean()  # what was accepted is valid
    AlertRule.objects.all().delete()


@given(
    data=st.dictionaries(
        st.sampled_from(CHANNEL_FIELDS), st.one_of(GARBAGE, st.none()), min_size=1, max_size=3
    )
)
def test_channel_form_takes_garbage_in_any_field(
    client: Client, world: dict[str, Any], data: dict[str, Any]
) -> None:
    response = client.post(reverse(CHANNEL_ADD), channel_data(**data))
    assert response.status_code in (200, 302, 400)
    for channel in NotificationChannel.objects.all():
        channel.full_clean()
    NotificationChannel.objects.exclude(pk=world["hook"].pk).delete()


def make_alert(world: dict[str, Any], subject: str = "bot") -> Alert:
    rule = AlertRule.objects.create(name=f"r-{subject}", kind="workflow_failed")
    rule.channels.set([world["hook"]])
    return Alert.objects.create(rule=rule, subject=subject, severity="warning", summary=f"{subject} failed")


def test_it_acknowledges_and_resolves_from_the_changelist_with_an_audit_entry(
    client: Client, world: dict[str, Any]
) -> None:
    alert = make_alert(world)
    changelist = reverse("admin:alerts_alert_changelist")
    response = client.post(changelist, {"action": "acknowledge", "_selected_action": [alert.pk]})
    assert response.status_code == 302
    alert.refresh_from_db()
    assert alert.status == "acknowledged"
    assert alert.acknowledged_by is not None
    assert alert.acknowledged_by.username == "root"

    client.post(changelist, {"action": "resolve", "_selected_action": [alert.pk]})
    alert.refresh_from_db()
    assert alert.status == "resolved"
    assert alert.resolved_by == alert.acknowledged_by
    assert Delivery.objects.filter(alert=alert, event="resolved", outcome="pending").count() == 1
    history = AdminLogEntry.objects.filter(object_id=str(alert.pk)).values_list("change_message", flat=True)
    assert sorted(history) == ["Acknowledged", "Resolved"]


def test_it_needs_the_change_permission_to_handle_alerts(world: dict[str, Any]) -> None:
    from django.contrib.auth.models import Permission, User

    alert = make_alert(world)
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_alert"))
    client = Client()
    client.force_login(viewer)
    changelist = reverse("admin:alerts_alert_changelist")
    assert client.get(changelist).status_code == 200
    client.post(changelist, {"action": "resolve", "_selected_action": [alert.pk]})
    alert.refresh_from_db()
    assert alert.status == "triggered"


def test_alert_pages_render_with_their_filters(client: Client, world: dict[str, Any]) -> None:
    alert = make_alert(world)
    Delivery.objects.create(alert=alert, channel=world["hook"], event="triggered", error="HTTP 500")
    for name in ("alert", "alertrule", "notificationchannel", "delivery"):
        assert client.get(reverse(f"admin:alerts_{name}_changelist")).status_code == 200
    assert (
        client.get(reverse("admin:alerts_alert_changelist") + "?open=yes&severity__exact=warning").status_code
        == 200
    )
    page = client.get(reverse("admin:alerts_alert_change", args=[alert.pk]))
    assert page.status_code == 200
    assert b"HTTP 500" in page.content


def test_it_disables_and_enables_rules_from_the_changelist_with_an_audit_entry(
    client: Client, world: dict[str, Any]
) -> None:
    rule = AlertRule.objects.create(name="r", kind="workflow_failed")
    changelist = reverse("admin:alerts_alertrule_changelist")
    client.post(changelist, {"action": "disable", "_selected_action": [rule.pk]})
    rule.refresh_from_db()
    assert not rule.enabled
    client.post(changelist, {"action": "enable", "_selected_action": [rule.pk]})
    rule.refresh_from_db()
    assert rule.enabled
    history = AdminLogEntry.objects.filter(object_id=str(rule.pk)).values_list("change_message", flat=True)
    assert sorted(history) == ["Disabled", "Enabled"]
