"""After a runner dies, the reaper frees the trigger: the next slot runs normally (overlap skip)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from chains.models import Chain, ChainRun, RunStatus, Workflow, WorkflowRun
from rpa_monitor.metrics import active_workflows
from triggers.models import Trigger, TriggerFire
from triggers.scheduler import tick

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def test_the_next_slot_runs_normally_once_the_dead_run_is_reaped(settings: object) -> None:
    Workflow.objects.create(slug="bot", name="bot", command=["true"])
    chain = Chain.objects.create_with_steps("c", "c", ["bot"])
    with time_machine.travel(T0, tick=False):
        trigger = Trigger(name="every minute", trigger_type=Trigger.Type.SCHEDULE, chain=chain)
        trigger.config = {"interval_seconds": 60}
        trigger.save()
    with time_machine.travel(T0 + timedelta(seconds=61), tick=False):
        [first] = tick().fires
    assert first.outcome == TriggerFire.Outcome.STARTED
    # The worker picks it up, starts the step, and is killed -9: heartbeats stop.
    chain_run = ChainRun.objects.get(trigger=trigger)
    with time_machine.travel(T0 + timedelta(seconds=62), tick=False):
        assert chain_run.start()
        step = WorkflowRun.objects.create(
            workflow=chain.steps.get().workflow, chain_run=chain_run, position=1
        )
        assert step.start("this-host", 99999999, 99999998)
    assert active_workflows().samples[0].value == 1
    with time_machine.travel(T0 + timedelta(seconds=121), tick=False):
        [skipped] = tick().fires  # within the lease: the run may still be alive
    assert skipped.outcome == TriggerFire.Outcome.SKIPPED
    with time_machine.travel(T0 + timedelta(seconds=61 + 60 * 5), tick=False):
        report = tick()  # lease (60 s) long expired: reaped, then the slot fires normally
    assert report.reaped == 1
    step.refresh_from_db()
    chain_run.refresh_from_db()
    assert (step.status, chain_run.status) == (RunStatus.ABANDONED, RunStatus.FAILURE)
    assert [f.outcome for f in report.fires] == [TriggerFire.Outcome.STARTED]
    assert active_workflows().samples[0].value == 0
