"""After a runner or a tick dies, nothing is left stuck: the next slot runs normally (overlap skip)."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.conf import settings
from django_tasks.backends.dummy import DummyBackend
from django_tasks_db.models import DBTaskResult

from chains.models import Chain, ChainRun, RunStatus, Workflow, WorkflowRun
from rpa_monitor.metrics import active_workflows
from rpa_monitor.test import MANAGE, database_env, start_manage, wait_for_running_run
from triggers.models import Trigger, TriggerFire
from triggers.scheduler import tick
from triggers.tests.test_concurrency import WAIT_THEN_FIRE

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


# --- A killed tick: the fire, the run and its task are one unit ------------------------------

KILLED_TRIGGERS = 30
KILLS = 8


def queued_without_task() -> list[int]:
    """Queued runs no task in the backend will ever run (the backend's own rows are the truth)."""
    enqueued = {task.args_kwargs["args"][0] for task in DBTaskResult.objects.all()}
    queued = WorkflowRun.objects.filter(status=RunStatus.QUEUED).values_list("pk", flat=True)
    return sorted(set(queued) - enqueued)


def kill_mid_tick(barrier: Path, delay: float) -> None:
    """Start a real `fire_triggers`, let it fire for `delay` seconds after its first fire, SIGKILL it."""
    barrier.mkdir()
    fires_before = TriggerFire.objects.count()
    process = subprocess.Popen(
        [sys.executable, "-c", WAIT_THEN_FIRE, str(barrier), MANAGE],
        env=database_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not list(barrier.glob("ready-*")):  # Django is loaded: what remains is the tick
            assert process.poll() is None, "fire_triggers exited before its tick"
            assert time.monotonic() < deadline, "fire_triggers never became ready"
            time.sleep(0.01)
        (barrier / "go").touch()
        while TriggerFire.objects.count() == fires_before and process.poll() is None:
            assert time.monotonic() < deadline, "fire_triggers never fired"
            time.sleep(0.002)
        time.sleep(delay)
    finally:
        process.kill()
        process.wait()


def test_it_leaves_no_queued_run_without_a_task_when_ticks_are_killed(
    transactional_db: None, tmp_path: Path
) -> None:
    workflow = Workflow.objects.create(slug="bot", name="bot", command=["true"])
    for n in range(KILLED_TRIGGERS):
        Trigger.objects.create(
            name=f"hourly {n}",
            workflow=workflow,
            config={"interval_seconds": 3600},
            overlap=Trigger.Overlap.ALLOW,  # every round creates runs (the killed step)
        )
    delays = random.Random(9).choices([0.0, 0.005, 0.01, 0.02, 0.04], k=KILLS)
    slot = (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0)
    for round_, delay in enumerate(delays):
        Trigger.objects.update(next_fire_at=slot + timedelta(minutes=round_))  # a new slot each round
        kill_mid_tick(tmp_path / f"round-{round_}", delay)
    assert queued_without_task() == []
    # The worker runs what was enqueued; under overlap skip every trigger fires its next slot.
    for run in WorkflowRun.objects.filter(status=RunStatus.QUEUED):
        if run.pk not in queued_without_task():
            assert run.start("here", None, None)
            run.finish(RunStatus.SUCCESS)
    Trigger.objects.update(overlap=Trigger.Overlap.SKIP, next_fire_at=slot + timedelta(hours=1))
    later = datetime.now(UTC) + timedelta(minutes=5)
    with time_machine.travel(later, tick=False):
        fires = tick(later).fires
    assert [f.outcome for f in fires] == [TriggerFire.Outcome.STARTED] * KILLED_TRIGGERS


# --- A queued run whose task was lost: enqueued again once, then abandoned (DESIGN §15) -------


def every_minute(target: Workflow | Chain) -> Trigger:
    field = "workflow" if isinstance(target, Workflow) else "chain"
    with time_machine.travel(T0, tick=False):
        return Trigger.objects.create(name="every minute", config={"interval_seconds": 60}, **{field: target})


def tick_at(minutes: int) -> list[str]:
    now = T0 + timedelta(minutes=minutes)
    with time_machine.travel(now, tick=False):
        return [fire.outcome for fire in tick(now).fires]


def test_it_enqueues_a_run_whose_task_was_lost_again_once_then_abandons_it() -> None:
    trigger = every_minute(Workflow.objects.create(slug="bot", name="bot", command=["true"]))
    assert tick_at(1) == ["started"]
    run = WorkflowRun.objects.get(trigger=trigger)
    DBTaskResult.objects.all().delete()  # the backend lost it (a flushed Redis, a purged table)
    assert tick_at(2) == ["skipped"]  # within the grace (the lease): not judged yet
    assert tick_at(3) == ["skipped"]  # judged lost: enqueued again
    run.refresh_from_db()
    assert (run.status, run.task_id, run.task_requeued_at) == (
        RunStatus.QUEUED,
        str(DBTaskResult.objects.get().pk),
        T0 + timedelta(minutes=3),
    )
    DBTaskResult.objects.all().delete()  # and lost again
    assert tick_at(4) == ["skipped"]
    assert tick_at(5) == ["started"]  # abandoned first, so the slot starts a new run
    run.refresh_from_db()
    assert run.status == RunStatus.ABANDONED
    assert "missing from the task backend" in run.error
    assert "enqueued again once" in run.error


def test_it_leaves_a_queued_run_whose_task_is_waiting_alone() -> None:
    trigger = every_minute(Workflow.objects.create(slug="bot", name="bot", command=["true"]))
    assert tick_at(1) == ["started"]
    assert tick_at(30) == ["skipped"]  # no worker for half an hour: still queued, still its task
    run = WorkflowRun.objects.get(trigger=trigger)
    assert (run.status, run.task_requeued_at, DBTaskResult.objects.count()) == (RunStatus.QUEUED, None, 1)


def test_it_adopts_the_task_of_a_run_queued_before_tasks_were_recorded(
    django_capture_on_commit_callbacks: Any,
) -> None:
    from chains.tasks import execute_workflow_run

    workflow = Workflow.objects.create(slug="bot", name="bot", command=["true"])
    with time_machine.travel(T0, tick=False):
        run = WorkflowRun.objects.create(workflow=workflow)
        task_id = str(execute_workflow_run.enqueue(run.pk).id)
    tick_at(5)
    run.refresh_from_db()
    assert (run.status, run.task_id, run.task_requeued_at) == (RunStatus.QUEUED, task_id, None)
    assert DBTaskResult.objects.count() == 1  # not enqueued a second time


DUMMY_TASKS = {"default": {"BACKEND": "django_tasks.backends.dummy.DummyBackend"}}


def test_a_backend_outside_the_database_gets_a_crashed_ticks_run_again_once(
    settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from chains.tasks import execute_chain_run

    settings.TASKS = DUMMY_TASKS
    backend = execute_chain_run.get_backend()
    assert isinstance(backend, DummyBackend)
    Workflow.objects.create(slug="bot", name="bot", command=["true"])
    trigger = every_minute(Chain.objects.create_with_steps("c", "c", ["bot"]))
    with django_capture_on_commit_callbacks(execute=False):
        assert tick_at(1) == ["started"]  # committed, then killed before the enqueue on commit
    run = ChainRun.objects.get(trigger=trigger)
    assert (run.task_id, backend.results) == ("", [])
    with django_capture_on_commit_callbacks(execute=True):
        assert tick_at(3) == ["skipped"]
    [result] = backend.results
    assert (result.args, ChainRun.objects.get().task_id) == ([run.pk], result.id)
    backend.clear()  # lost again
    with django_capture_on_commit_callbacks(execute=True):
        assert tick_at(5) == ["started"]
    run.refresh_from_db()
    assert run.status == RunStatus.ABANDONED
    assert "missing from the task backend" in run.error


def test_a_second_task_for_a_run_that_already_ran_starts_nothing() -> None:
    from chains.tasks import execute_chain_run, execute_workflow_run

    workflow = Workflow.objects.create(slug="bot", name="bot", command=["true"])
    run = WorkflowRun.objects.create(workflow=workflow, status=RunStatus.SUCCESS)
    chain_run = ChainRun.objects.create(
        chain=Chain.objects.create_with_steps("c", "c", ["bot"]), status=RunStatus.CANCELLED
    )
    assert execute_workflow_run.call(run.pk) == RunStatus.SUCCESS
    assert execute_chain_run.call(chain_run.pk) == RunStatus.CANCELLED
    assert WorkflowRun.objects.count() == 1


# --- A reaped run's task row is finished too ----------------------------------------------------


def test_a_reaped_chain_runs_task_row_is_no_longer_running() -> None:
    from chains.runner import enqueue_chain

    Workflow.objects.create(slug="bot", name="bot", command=["true"])
    chain = Chain.objects.create_with_steps("c", "c", ["bot"])
    with time_machine.travel(T0, tick=False):
        chain_run = enqueue_chain(chain)
        task = DBTaskResult.objects.get()
        task.claim("worker-that-dies")  # the worker takes it, starts the step, then dies
        assert chain_run.start()
        step = WorkflowRun.objects.create(
            workflow=chain.steps.get().workflow, chain_run=chain_run, position=1
        )
        assert step.start("this-host", 99999999, 99999998)
    tick_at(10)
    task.refresh_from_db()
    assert (task.status, task.finished_at) == ("FAILED", T0 + timedelta(minutes=10))
    assert task.exception_class_path == "chains.tasks.TaskAbandoned"


@pytest.mark.django_db(transaction=True)
def test_a_reaped_runs_task_row_is_no_longer_running_after_its_worker_is_killed() -> None:
    from chains.runner import enqueue_workflow

    workflow = Workflow.objects.create(slug="sleeper", name="sleeper", command=["sleep", "30"])
    enqueue_workflow(workflow)
    worker = start_manage("db_worker", "--no-startup-delay", "--no-reload", "--interval", "0.1")
    try:
        run = wait_for_running_run("sleeper", 60)
        assert DBTaskResult.objects.get().status == "RUNNING"
    finally:
        worker.kill()  # SIGKILL: no chance to record anything
        worker.communicate()
    later = datetime.now(UTC) + timedelta(seconds=settings.RPA_RUN_LEASE_SECONDS + 10)
    with time_machine.travel(later, tick=False):
        assert tick(later).reaped == 1
    run.refresh_from_db()
    task = DBTaskResult.objects.get()
    assert (run.status, task.status) == (RunStatus.ABANDONED, "FAILED")
