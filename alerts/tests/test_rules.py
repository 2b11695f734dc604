"""Alert rules: each kind with frozen time, dedup, cooldown, auto-resolve, quiet hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st

from alerts.models import Alert, AlertRule, Delivery, NotificationChannel
from alerts.rules import ALL_WORKFLOWS, evaluate_rules
from chains.models import Chain, ChainRun, RunStatus, Workflow, WorkflowRun
from triggers.models import Trigger, TriggerFire

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
pytestmark = pytest.mark.django_db


def workflow(slug: str = "bot", **fields: Any) -> Workflow:
    fields.setdefault("created_at", T0 - timedelta(days=30))
    return Workflow.objects.create(slug=slug, name=slug, command=["true"], **fields)


def run(wf: Workflow, status: str, at: datetime, *, seconds: float = 10, **fields: Any) -> WorkflowRun:
    """A finished (or running, when status is running) run of `wf` that ended at `at`."""
    finished = None if status in (RunStatus.RUNNING, RunStatus.QUEUED) else at
    return WorkflowRun.objects.create(
        workflow=wf,
        status=status,
        created_at=at - timedelta(seconds=seconds),
        started_at=at - timedelta(seconds=seconds),
        finished_at=finished,
        **fields,
    )


def rule(kind: str, **fields: Any) -> AlertRule:
    fields.setdefault("name", f"{kind} rule")
    fields.setdefault("created_at", T0 - timedelta(days=1))
    fields.setdefault("cooldown_seconds", 0)
    channels = fields.pop("channels", [])
    made = AlertRule(kind=kind, **fields)
    made.full_clean()
    made.save()
    made.channels.set(channels)
    return made


def evaluate(at: datetime) -> None:
    with time_machine.travel(at, tick=False):
        evaluate_rules(at)


def open_alerts(r: AlertRule) -> dict[str, Alert]:
    return {a.subject: a for a in Alert.objects.open().filter(rule=r)}


def channel(name: str = "ops") -> NotificationChannel:
    return NotificationChannel.objects.create(name=name, kind="webhook", target="http://127.0.0.1:9/hook")


# -- workflow_failed / chain_failed -------------------------------------------------


def test_it_opens_one_alert_for_a_failed_workflow_and_resolves_it_when_the_next_run_succeeds() -> None:
    wf, r = workflow(), rule("workflow_failed", channels=[channel()])
    run(wf, RunStatus.FAILURE, T0, error="boom")
    evaluate(T0 + timedelta(seconds=30))
    alerts = open_alerts(r)
    assert list(alerts) == ["bot"]
    assert "failed" in alerts["bot"].summary
    assert alerts["bot"].details["error"] == "boom"
    assert Delivery.objects.filter(event="triggered", outcome="pending").count() == 1

    run(wf, RunStatus.FAILURE, T0 + timedelta(minutes=1))
    evaluate(T0 + timedelta(minutes=1, seconds=30))
    alert = Alert.objects.get(rule=r)  # still one: deduplicated, a second occurrence counted
    assert alert.occurrences == 2

    run(wf, RunStatus.SUCCESS, T0 + timedelta(minutes=2))
    evaluate(T0 + timedelta(minutes=2, seconds=30))
    alert.refresh_from_db()
    assert alert.status == Alert.Status.RESOLVED
    assert alert.resolved_by is None
    assert alert.details["resolution"] == "the condition cleared"
    assert Delivery.objects.filter(event="resolved").count() == 1


def test_it_ignores_runs_that_finished_before_the_rule_existed() -> None:
    wf = workflow()
    run(wf, RunStatus.FAILURE, T0 - timedelta(hours=2))
    r = rule("workflow_failed", created_at=T0 - timedelta(minutes=5))
    evaluate(T0)
    assert not open_alerts(r)


def test_it_does_not_count_an_attempt_that_will_be_retried() -> None:
    wf, r = workflow(max_retries=1), rule("workflow_failed")
    run(wf, RunStatus.FAILURE, T0, attempt=1)
    evaluate(T0 + timedelta(seconds=5))
    assert not open_alerts(r)
    run(wf, RunStatus.FAILURE, T0 + timedelta(seconds=20), attempt=2)
    evaluate(T0 + timedelta(seconds=30))
    assert list(open_alerts(r)) == ["bot"]


def test_it_scopes_a_rule_to_one_workflow() -> None:
    a, b = workflow("a"), workflow("b")
    r = rule("workflow_failed", workflow=a)
    run(a, RunStatus.TIMEOUT, T0)
    run(b, RunStatus.FAILURE, T0)
    evaluate(T0 + timedelta(seconds=10))
    assert list(open_alerts(r)) == ["a"]


def test_it_alerts_on_a_failed_chain_with_its_failure_point() -> None:
    chain = Chain.objects.create(slug="orders", name="Orders")
    r = rule("chain_failed", chain=chain)
    ChainRun.objects.create(chain=chain, status="failure", finished_at=T0, failed_step=2, error="step 2")
    evaluate(T0 + timedelta(seconds=10))
    alert = open_alerts(r)["orders"]
    assert alert.details["failed_step"] == 2
    assert "at step 2" in alert.summary
    ChainRun.objects.create(chain=chain, status=RunStatus.SUCCESS, finished_at=T0 + timedelta(minutes=1))
    evaluate(T0 + timedelta(minutes=1, seconds=10))
    assert not open_alerts(r)


# -- consecutive_failures -----------------------------------------------------------


def test_it_alerts_after_n_failures_in_a_row_only() -> None:
    wf, r = workflow(), rule("consecutive_failures", params={"count": 3})
    for minute in range(2):
        run(wf, RunStatus.FAILURE, T0 + timedelta(minutes=minute))
    evaluate(T0 + timedelta(minutes=2))
    assert not open_alerts(r)
    run(wf, RunStatus.CANCELLED, T0 + timedelta(minutes=2, seconds=10))  # decides nothing
    run(wf, RunStatus.ABANDONED, T0 + timedelta(minutes=3))
    evaluate(T0 + timedelta(minutes=3, seconds=10))
    alert = open_alerts(r)["bot"]
    assert alert.details["count"] == 3
    assert len(alert.details["runs"]) == 3
    run(wf, RunStatus.SUCCESS, T0 + timedelta(minutes=4))
    evaluate(T0 + timedelta(minutes=4, seconds=10))
    assert not open_alerts(r)


def test_it_counts_consecutive_chain_failures_when_scoped_to_a_chain() -> None:
    chain = Chain.objects.create(slug="orders", name="Orders")
    r = rule("consecutive_failures", chain=chain, params={"count": 2})
    for minute in range(2):
        ChainRun.objects.create(chain=chain, status="failure", finished_at=T0 + timedelta(minutes=minute))
    evaluate(T0 + timedelta(minutes=2))
    assert list(open_alerts(r)) == ["orders"]


# -- error_rate_above ---------------------------------------------------------------


def test_it_alerts_when_the_error_rate_over_the_window_is_above_the_percent() -> None:
    wf = workflow()
    r = rule("error_rate_above", params={"percent": 50, "window_seconds": 600, "count": 4})
    run(wf, RunStatus.FAILURE, T0 - timedelta(minutes=20))  # outside the window
    for i, status in enumerate([RunStatus.FAILURE, RunStatus.SUCCESS, RunStatus.FAILURE]):
        run(wf, status, T0 - timedelta(minutes=5 - i))
    evaluate(T0)
    assert not open_alerts(r), "3 runs in the window: fewer than count=4"
    run(wf, RunStatus.FAILURE, T0 - timedelta(minutes=1))
    evaluate(T0)
    alert = open_alerts(r)[ALL_WORKFLOWS]
    assert alert.details["error_rate"] == 75.0
    assert alert.details["finished"] == 4
    evaluate(T0 + timedelta(minutes=10))  # the window slid past them all
    assert not open_alerts(r)


# -- no_success_within ----------------------------------------------------------------


def test_it_is_a_dead_mans_switch_for_each_enabled_workflow() -> None:
    quiet, busy = workflow("quiet"), workflow("busy")
    workflow("off", enabled=False)
    r = rule("no_success_within", params={"seconds": 3600})
    run(quiet, RunStatus.SUCCESS, T0 - timedelta(hours=3))
    run(busy, RunStatus.SUCCESS, T0 - timedelta(minutes=10))
    evaluate(T0)
    alerts = open_alerts(r)
    assert list(alerts) == ["quiet"]
    assert alerts["quiet"].details["last_success_at"] == (T0 - timedelta(hours=3)).isoformat()
    run(quiet, RunStatus.SUCCESS, T0 + timedelta(minutes=1))
    evaluate(T0 + timedelta(minutes=2))
    assert not open_alerts(r)


def test_it_gives_a_new_rule_or_workflow_its_window_before_alerting() -> None:
    workflow("new", created_at=T0 - timedelta(minutes=10))
    r = rule("no_success_within", params={"seconds": 3600})
    evaluate(T0)
    assert not open_alerts(r)
    evaluate(T0 + timedelta(minutes=51))
    assert list(open_alerts(r)) == ["new"]


# -- duration_above -------------------------------------------------------------------


def test_it_alerts_on_a_run_still_running_past_the_limit_and_on_a_slow_finished_one() -> None:
    wf = workflow()
    r = rule("duration_above", params={"seconds": 600})
    running = run(wf, RunStatus.RUNNING, T0, seconds=900)
    evaluate(T0)
    alert = open_alerts(r)["bot"]
    assert "has been running for 15 min" in alert.summary
    assert alert.details["workflow_run_id"] == running.pk
    WorkflowRun.objects.filter(pk=running.pk).update(status=RunStatus.SUCCESS, finished_at=T0)
    run(wf, RunStatus.SUCCESS, T0 + timedelta(minutes=5), seconds=30)
    evaluate(T0 + timedelta(minutes=6))
    assert not open_alerts(r)


# -- missed_schedule ------------------------------------------------------------------


def schedule_trigger(wf: Workflow, next_fire_at: datetime) -> Trigger:
    trigger = Trigger.objects.create(
        name="every 5 min", trigger_type="schedule", workflow=wf, config={"interval_seconds": 300}
    )
    Trigger.objects.filter(pk=trigger.pk).update(next_fire_at=next_fire_at)  # save() computes its own
    return trigger


def test_it_alerts_when_a_slot_fired_late_with_missed_slots_and_clears_on_an_on_time_fire() -> None:
    wf = workflow()
    trigger = schedule_trigger(wf, next_fire_at=T0 + timedelta(minutes=5))
    r = rule("missed_schedule", params={"seconds": 60})
    TriggerFire.objects.create(
        trigger=trigger,
        due_at=T0 - timedelta(minutes=30),
        fired_at=T0,
        outcome="started",
        lateness_seconds=1800,
        missed_slots=5,
    )
    evaluate(T0 + timedelta(seconds=5))
    (alert,) = open_alerts(r).values()
    assert alert.details["missed_slots"] == 5
    assert "missed" in alert.summary
    TriggerFire.objects.create(
        trigger=trigger, due_at=T0 + timedelta(minutes=5), fired_at=T0 + timedelta(minutes=5, seconds=2),
        outcome="started", lateness_seconds=2,
    )  # fmt: skip
    evaluate(T0 + timedelta(minutes=5, seconds=10))
    assert not open_alerts(r)


def test_it_alerts_when_a_slot_is_overdue_and_never_fired() -> None:
    wf = workflow()
    schedule_trigger(wf, next_fire_at=T0 - timedelta(minutes=10))
    r = rule("missed_schedule", params={"seconds": 60})
    evaluate(T0)
    (alert,) = open_alerts(r).values()
    assert "has not fired (10 min late)" in alert.summary


# -- stale_runs -----------------------------------------------------------------------


def test_it_alerts_on_an_abandoned_run_until_the_workflow_runs_normally_again() -> None:
    wf = workflow()
    r = rule("stale_runs", severity="critical")
    run(wf, RunStatus.ABANDONED, T0, host="h1", pid=123, error="abandoned: no heartbeat")
    evaluate(T0 + timedelta(seconds=5))
    alert = open_alerts(r)["bot"]
    assert alert.severity == "critical"
    assert alert.details["host"] == "h1"
    assert alert.details["pid"] == 123
    run(wf, RunStatus.FAILURE, T0 + timedelta(minutes=1))  # a normal (failed) run: not stale any more
    evaluate(T0 + timedelta(minutes=1, seconds=5))
    assert not open_alerts(r)


# -- lifecycle: cooldown, manual handling, disabled rules, quiet hours ---------------


def test_it_records_but_does_not_notify_a_new_alert_within_the_cooldown() -> None:
    wf = workflow()
    r = rule("workflow_failed", cooldown_seconds=3600, channels=[channel()])
    run(wf, RunStatus.FAILURE, T0)
    evaluate(T0 + timedelta(seconds=5))
    run(wf, RunStatus.SUCCESS, T0 + timedelta(minutes=1))
    evaluate(T0 + timedelta(minutes=1, seconds=5))
    run(wf, RunStatus.FAILURE, T0 + timedelta(minutes=2))
    evaluate(T0 + timedelta(minutes=2, seconds=5))
    second = open_alerts(r)["bot"]
    assert not second.notify
    assert "cooldown" in second.details["notifications"]
    assert Delivery.objects.filter(alert=second).count() == 0
    run(wf, RunStatus.SUCCESS, T0 + timedelta(minutes=3))
    evaluate(T0 + timedelta(minutes=3, seconds=5))
    assert Delivery.objects.filter(alert=second).count() == 0, "no 'resolved' for an alert never notified"
    run(wf, RunStatus.FAILURE, T0 + timedelta(hours=2))
    evaluate(T0 + timedelta(hours=2, seconds=5))
    assert open_alerts(r)["bot"].notify, "the cooldown is over"


def test_it_keeps_an_acknowledged_alert_open_and_a_hand_resolved_one_closed_until_it_fails_again() -> None:
    from django.contrib.auth.models import User

    user = User.objects.create(username="ops")
    wf, r = workflow(), rule("workflow_failed", channels=[channel()])
    run(wf, RunStatus.FAILURE, T0)
    evaluate(T0 + timedelta(seconds=5))
    alert = open_alerts(r)["bot"]
    assert alert.acknowledge(user)
    assert not alert.acknowledge(user)
    evaluate(T0 + timedelta(seconds=65))
    alert.refresh_from_db()
    assert alert.status == Alert.Status.ACKNOWLEDGED
    assert alert.acknowledged_by == user
    assert alert.resolve(user, T0 + timedelta(minutes=2))
    assert Delivery.objects.filter(alert=alert, event="resolved").count() == 1
    assert not alert.resolve(user)  # once
    evaluate(T0 + timedelta(minutes=3))
    assert list(open_alerts(r)) == ["bot"], "the workflow is still failing: a new alert"


def test_it_resolves_the_open_alerts_of_a_disabled_rule() -> None:
    wf, r = workflow(), rule("workflow_failed")
    run(wf, RunStatus.FAILURE, T0)
    evaluate(T0 + timedelta(seconds=5))
    AlertRule.objects.filter(pk=r.pk).update(enabled=False)
    evaluate(T0 + timedelta(seconds=65))
    assert Alert.objects.get(rule=r).details["resolution"] == "the rule was disabled"


@override_settings(TIME_ZONE="Europe/Berlin")
def test_it_defers_non_critical_notifications_in_quiet_hours_but_not_critical_ones() -> None:
    wf = workflow()
    ops = channel()
    warn = rule("workflow_failed", name="warn", quiet_hours="22:00-07:00", channels=[ops])
    crit = rule(
        "workflow_failed", name="crit", severity="critical", quiet_hours="22:00-07:00", channels=[ops]
    )
    night = datetime(2026, 11, 24, 23, 30, tzinfo=UTC)  # 00:30 in Berlin
    run(wf, RunStatus.FAILURE, night)
    evaluate(night + timedelta(seconds=5))
    warn_delivery = Delivery.objects.get(alert__rule=warn)
    crit_delivery = Delivery.objects.get(alert__rule=crit)
    assert warn_delivery.next_attempt_at == datetime(2026, 11, 25, 6, 0, tzinfo=UTC)  # 07:00 Berlin
    assert crit_delivery.next_attempt_at == night + timedelta(seconds=5)


def test_it_opens_one_alert_when_two_hosts_evaluate_at_once() -> None:
    wf, r = workflow(), rule("workflow_failed", channels=[channel()])
    run(wf, RunStatus.FAILURE, T0)
    at = T0 + timedelta(seconds=5)
    evaluate(at)
    AlertRule.objects.filter(pk=r.pk).update(evaluated_at=None)  # the other host saw the old state
    evaluate(at)
    assert Alert.objects.filter(rule=r).count() == 1
    assert Delivery.objects.count() == 1


def test_it_keeps_evaluating_other_rules_when_one_is_broken() -> None:
    wf = workflow()
    broken = rule("consecutive_failures", name="broken", params={"count": 2})
    AlertRule.objects.filter(pk=broken.pk).update(params={"count": "many"})  # bypassing validation
    good = rule("workflow_failed", name="good")
    run(wf, RunStatus.FAILURE, T0)
    with time_machine.travel(T0 + timedelta(seconds=5), tick=False):
        report = evaluate_rules()
    assert report.errors
    assert "broken" in report.errors[0]
    assert list(open_alerts(good)) == ["bot"]


# -- the property: one open alert per rule and subject, open iff the latest run failed --


OUTCOMES = st.sampled_from(["success", "failure", "timeout", "cancelled"])


@pytest.mark.django_db(transaction=True)
@given(outcomes=st.lists(st.lists(OUTCOMES, max_size=3)))
def test_property_one_open_alert_tracks_the_latest_decided_run(outcomes: list[list[str]]) -> None:
    Workflow.objects.all().delete()
    AlertRule.objects.all().delete()
    wf, r = workflow(), rule("workflow_failed")
    latest = None
    moment = T0
    for tick_outcomes in outcomes:
        for status in tick_outcomes:
            moment += timedelta(seconds=10)
            run(wf, status, moment)
            latest = status if status != "cancelled" else latest
        moment += timedelta(seconds=30)
        evaluate(moment)
        open_now = Alert.objects.open().filter(rule=r)
        assert open_now.count() <= 1
        assert open_now.exists() == (latest in ("failure", "timeout"))
