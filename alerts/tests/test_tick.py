"""Rules run in every scheduler tick: `manage.py fire_triggers` opens and resolves alerts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from alerts.models import Alert, AlertRule
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
