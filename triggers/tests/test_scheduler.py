"""The scheduler tick under frozen time: schedule, file and manual fires, overlap, reaping; the commands."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django_tasks_db.models import DBTaskResult
from pytest_django.fixtures import Settings

from chains.models import Chain, ChainRun, RunStatus, Workflow, WorkflowRun
from rpa_monitor.test import MANAGE, database_env, manage
from triggers.models import SchedulerTick, SeenFile, Trigger, TriggerFire
from triggers.scheduler import fire_now, tick

CREATED = datetime(2026, 5, 4, 10, 7, tzinfo=UTC)
Capture = Callable[..., Any]


@pytest.fixture(autouse=True)
def _tmp_path_is_a_file_trigger_root(settings: Settings, tmp_path: Path) -> None:
    """File triggers read only under RPA_FILE_TRIGGER_ROOTS: these tests watch tmp_path."""
    settings.RPA_FILE_TRIGGER_ROOTS = [str(tmp_path)]


def at(hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2026, 5, 4, hour, minute, second, tzinfo=UTC)


@pytest.fixture
def workflow(db: None) -> Workflow:
    return Workflow.objects.create(slug="bot", name="bot", command=["true"])


@pytest.fixture
def chain(workflow: Workflow) -> Chain:
    return Chain.objects.create_with_steps("nightly", "Nightly", ["bot"])


def scheduled(target: Workflow | Chain, config: dict[str, Any] | None = None, **fields: Any) -> Trigger:
    """A schedule trigger created at CREATED (10:07), so its first slot is computed from then."""
    field = "workflow" if isinstance(target, Workflow) else "chain"
    with time_machine.travel(CREATED, tick=False):
        return Trigger.objects.create(
            name="every 10 min",
            trigger_type=Trigger.Type.SCHEDULE,
            config=config or {"interval_seconds": 600},
            **{field: target},
            **fields,
        )


def ticked(now: datetime) -> list[TriggerFire]:
    with time_machine.travel(now, tick=False):
        return tick(now).fires


def stored(trigger: Trigger) -> Trigger:
    return Trigger.objects.get(pk=trigger.pk)


# --- Schedule triggers ----------------------------------------------------------------------


def test_it_fires_a_due_interval_trigger_once_and_moves_next_fire_at(workflow: Workflow) -> None:
    trigger = scheduled(workflow)
    assert trigger.next_fire_at == at(10, 10)
    [fire] = ticked(at(10, 10, 5))
    assert (fire.outcome, fire.due_at, fire.lateness_seconds, fire.missed_slots) == (
        "started",
        at(10, 10),
        5,
        0,
    )
    assert stored(trigger).next_fire_at == at(10, 20)
    assert stored(trigger).last_fired == at(10, 10, 5)
    assert ticked(at(10, 10, 30)) == []
    assert TriggerFire.objects.count() == 1
    assert WorkflowRun.objects.count() == 1


def test_it_fires_a_due_cron_trigger_once_and_moves_next_fire_at(workflow: Workflow) -> None:
    trigger = scheduled(workflow, {"cron": "*/15 * * * *", "timezone": "Europe/Paris"})
    assert trigger.next_fire_at == at(10, 15)
    [fire] = ticked(at(10, 15))
    assert fire.outcome == TriggerFire.Outcome.STARTED
    assert fire.lateness_seconds == 0
    assert stored(trigger).next_fire_at == at(10, 30)
    assert ticked(at(10, 16)) == []


def test_it_fires_nothing_when_nothing_is_due(workflow: Workflow) -> None:
    trigger = scheduled(workflow)
    with time_machine.travel(at(10, 9, 59), tick=False):
        report = tick(at(10, 9, 59))
    assert report.fires == []
    assert "nothing due" in report.summary()
    assert not TriggerFire.objects.exists()
    assert stored(trigger).next_fire_at == at(10, 10)


def test_it_does_not_fire_a_disabled_trigger(workflow: Workflow) -> None:
    trigger = scheduled(workflow)
    Trigger.objects.filter(pk=trigger.pk).update(enabled=False)  # next_fire_at left in place
    assert ticked(at(11, 0)) == []


@pytest.mark.parametrize(
    ("start", "fired_at"),
    [
        (datetime(2026, 3, 28, 22, tzinfo=UTC), datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),  # 03:00 CEST
        (datetime(2026, 10, 24, 22, tzinfo=UTC), datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),  # 02:30 CEST
    ],
)
def test_it_fires_a_paris_0230_job_once_through_a_dst_night(
    workflow: Workflow, start: datetime, fired_at: datetime
) -> None:
    with time_machine.travel(start, tick=False):
        Trigger.objects.create(
            name="nightly",
            trigger_type=Trigger.Type.SCHEDULE,
            workflow=workflow,
            config={"cron": "30 2 * * *", "timezone": "Europe/Paris"},
            overlap=Trigger.Overlap.ALLOW,
        )
    for n in range(1, 6 * 12 + 1):  # a tick every 5 minutes for 6 hours
        ticked(start + timedelta(minutes=5 * n))
    assert list(TriggerFire.objects.values_list("due_at", "outcome")) == [(fired_at, "started")]


def test_it_coalesces_missed_slots_after_downtime_into_one_fire(workflow: Workflow) -> None:
    trigger = scheduled(workflow)
    [fire] = ticked(at(11, 5, 30))  # 10:10, 10:20, ..., 11:00 were all missed
    assert fire.due_at == at(10, 10)
    assert fire.missed_slots == 5
    assert fire.lateness_seconds == 55 * 60 + 30
    assert "5 missed slot(s)" in fire.detail
    assert stored(trigger).next_fire_at == at(11, 10)
    assert ticked(at(11, 6)) == []
    assert TriggerFire.objects.count() == 1
    assert WorkflowRun.objects.count() == 1


def test_it_skips_a_slot_while_the_previous_run_is_queued_or_running(workflow: Workflow) -> None:
    trigger = scheduled(workflow)
    [first] = ticked(at(10, 10))
    run = first.workflow_run
    assert run is not None
    [queued] = ticked(at(10, 20))
    assert queued.outcome == TriggerFire.Outcome.SKIPPED
    assert "still queued or running" in queued.detail
    assert queued.run is None
    WorkflowRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING)
    [running] = ticked(at(10, 30))
    assert running.outcome == TriggerFire.Outcome.SKIPPED
    WorkflowRun.objects.filter(pk=run.pk).update(status=RunStatus.SUCCESS)
    [again] = ticked(at(10, 40))
    assert again.outcome == TriggerFire.Outcome.STARTED
    assert WorkflowRun.objects.filter(trigger=trigger).count() == 2
    assert stored(trigger).next_fire_at == at(10, 50)


def test_it_starts_overlapping_runs_when_allowed(workflow: Workflow) -> None:
    trigger = scheduled(workflow, overlap=Trigger.Overlap.ALLOW)
    ticked(at(10, 10))
    [second] = ticked(at(10, 20))
    assert second.outcome == TriggerFire.Outcome.STARTED
    assert WorkflowRun.objects.filter(trigger=trigger, status=RunStatus.QUEUED).count() == 2


def test_it_skips_a_disabled_workflow_with_the_reason(workflow: Workflow) -> None:
    trigger = scheduled(workflow)
    Workflow.objects.filter(pk=workflow.pk).update(enabled=False)
    [fire] = ticked(at(10, 10))
    assert fire.outcome == TriggerFire.Outcome.SKIPPED
    assert fire.detail == "workflow bot is disabled"
    assert not WorkflowRun.objects.exists()
    assert stored(trigger).next_fire_at == at(10, 20)


def test_it_skips_a_disabled_chain_with_the_reason(chain: Chain) -> None:
    scheduled(chain)
    Chain.objects.filter(pk=chain.pk).update(enabled=False)
    [fire] = ticked(at(10, 10))
    assert fire.outcome == TriggerFire.Outcome.SKIPPED
    assert fire.detail == "chain nightly is disabled"
    assert not ChainRun.objects.exists()


def test_it_creates_a_queued_chain_run_linked_to_the_trigger_and_the_fire(
    chain: Chain, django_capture_on_commit_callbacks: Capture
) -> None:
    trigger = scheduled(chain, params={"region": "eu"})
    with django_capture_on_commit_callbacks(execute=True):
        [fire] = ticked(at(10, 10))
    run = ChainRun.objects.get()
    assert fire.chain_run == run
    assert fire.workflow_run is None
    assert (run.status, run.trigger, run.params) == (RunStatus.QUEUED, trigger, {"region": "eu"})
    task = DBTaskResult.objects.get()
    assert task.task_path == "chains.tasks.execute_chain_run"
    assert run.pk in task.args_kwargs["args"]


def test_it_creates_a_queued_workflow_run_and_its_task_in_the_fires_transaction(
    workflow: Workflow, django_capture_on_commit_callbacks: Capture
) -> None:
    trigger = scheduled(workflow)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        [fire] = ticked(at(10, 10))
    assert callbacks == []  # nothing waits for the commit: a crash leaves all three or none
    run = WorkflowRun.objects.get()
    assert fire.workflow_run == run
    assert (run.status, run.trigger) == (RunStatus.QUEUED, trigger)
    task = DBTaskResult.objects.get()
    assert task.task_path == "chains.tasks.execute_workflow_run"
    assert task.args_kwargs["args"] == [run.pk]
    assert run.task_id == str(task.id)


def test_it_records_when_the_tick_ran(workflow: Workflow) -> None:
    scheduled(workflow)
    ticked(at(10, 10))
    row = SchedulerTick.objects.get()
    assert (row.last_tick_at, row.fired, row.pid) == (at(10, 10), 1, os.getpid())


# --- Manual triggers ------------------------------------------------------------------------


def manual(workflow: Workflow, **fields: Any) -> Trigger:
    return Trigger.objects.create(
        name="by hand", trigger_type=Trigger.Type.MANUAL, workflow=workflow, **fields
    )


def test_it_fires_a_manual_trigger_now(
    workflow: Workflow, django_capture_on_commit_callbacks: Capture
) -> None:
    trigger = manual(workflow)
    with django_capture_on_commit_callbacks(execute=True):
        fire = fire_now(trigger, now=at(12, 0))
    assert (fire.outcome, fire.due_at, fire.trigger) == ("started", at(12, 0), trigger)
    assert fire.workflow_run is not None
    assert fire.workflow_run.trigger == trigger
    assert DBTaskResult.objects.count() == 1
    assert stored(trigger).last_fired == at(12, 0)
    assert stored(trigger).next_fire_at is None


def test_it_records_two_manual_fires_in_the_same_instant(workflow: Workflow) -> None:
    trigger = manual(workflow, overlap=Trigger.Overlap.ALLOW)
    first, second = fire_now(trigger, now=at(12, 0)), fire_now(trigger, now=at(12, 0))
    assert first.pk != second.pk
    assert {first.outcome, second.outcome} == {"started"}
    assert WorkflowRun.objects.filter(trigger=trigger).count() == 2


def test_it_never_fires_a_manual_trigger_on_a_tick(workflow: Workflow) -> None:
    manual(workflow)
    assert ticked(at(12, 0)) == []


# --- Reaper ---------------------------------------------------------------------------------


def test_it_reaps_a_running_run_with_a_stale_heartbeat(chain: Chain) -> None:
    chain_run = ChainRun.objects.create(chain=chain, status=RunStatus.RUNNING, total_steps=2)
    workflow = Workflow.objects.get(slug="bot")
    stale = WorkflowRun.objects.create(
        workflow=workflow,
        chain_run=chain_run,
        position=2,
        status=RunStatus.RUNNING,
        heartbeat_at=at(11, 50),
        host="bot-host-7",
        pid=4242,
    )
    fresh = WorkflowRun.objects.create(
        workflow=workflow, status=RunStatus.RUNNING, heartbeat_at=at(11, 59, 50)
    )
    with time_machine.travel(at(12, 0), tick=False):
        report = tick(at(12, 0))
    assert report.reaped == 1
    stale.refresh_from_db()
    assert stale.status == RunStatus.ABANDONED
    assert "bot-host-7" in stale.error
    assert "4242" in stale.error
    chain_run.refresh_from_db()
    assert (chain_run.status, chain_run.failed_step) == (RunStatus.FAILURE, 2)
    assert "abandoned" in chain_run.error
    fresh.refresh_from_db()
    assert fresh.status == RunStatus.RUNNING


# --- File triggers --------------------------------------------------------------------------


def watching(workflow: Workflow, directory: Path, **config: Any) -> Trigger:
    return Trigger.objects.create(
        name="inbox",
        trigger_type=Trigger.Type.FILE,
        workflow=workflow,
        config={"path": str(directory), **config},
    )


def write(path: Path, content: str, mtime: int) -> Path:
    """Write `content` and set an explicit mtime (filesystem clocks are coarse)."""
    path.write_text(content)
    os.utime(path, ns=(mtime * 10**9, mtime * 10**9))
    return path


def minute(n: int) -> datetime:
    return at(12, 0) + timedelta(minutes=n)


def file_ticks(*minutes: int) -> list[list[TriggerFire]]:
    return [ticked(minute(n)) for n in minutes]


def test_it_fires_a_new_file_on_the_scan_after_it_was_first_seen(workflow: Workflow, tmp_path: Path) -> None:
    trigger = watching(workflow, tmp_path)
    report = write(tmp_path / "report.csv", "a,b\n", 1_700_000_000)
    first, second = file_ticks(1, 2)
    assert first == []
    assert SeenFile.objects.get().path == str(report)
    [fire] = second
    assert fire.outcome == TriggerFire.Outcome.STARTED
    assert fire.workflow_run is not None
    params = fire.workflow_run.params
    assert params["file"] == str(report)
    assert params["file_name"] == "report.csv"
    assert stored(trigger).last_fired == minute(2)


def test_it_does_not_fire_a_file_that_is_still_growing(workflow: Workflow, tmp_path: Path) -> None:
    watching(workflow, tmp_path)
    upload = write(tmp_path / "upload.csv", "a\n", 1_700_000_000)
    assert file_ticks(1) == [[]]
    write(upload, "a\nb\n", 1_700_000_060)
    assert file_ticks(2) == [[]]
    write(upload, "a\nb\nc\n", 1_700_000_120)
    assert file_ticks(3) == [[]]
    [fire] = ticked(minute(4))  # unchanged since the previous scan
    assert fire.workflow_run is not None
    assert fire.workflow_run.params["file_size"] == len("a\nb\nc\n")


def test_it_does_not_fire_a_file_whose_mtime_changed_at_the_same_size(
    workflow: Workflow, tmp_path: Path
) -> None:
    watching(workflow, tmp_path)
    upload = write(tmp_path / "upload.csv", "aaaa", 1_700_000_000)
    file_ticks(1)
    write(upload, "bbbb", 1_700_000_030)
    assert file_ticks(2) == [[]]
    assert len(ticked(minute(3))) == 1


def test_it_never_fires_twice_for_the_same_file(workflow: Workflow, tmp_path: Path) -> None:
    watching(workflow, tmp_path, pattern="*.csv")
    write(tmp_path / "report.csv", "a,b\n", 1_700_000_000)
    fires = file_ticks(1, 2, 3, 4, 5)
    assert [len(f) for f in fires] == [0, 1, 0, 0, 0]
    assert TriggerFire.objects.count() == 1


def test_it_fires_again_for_a_rewritten_file_once_settled(workflow: Workflow, tmp_path: Path) -> None:
    watching(workflow, tmp_path)
    report = write(tmp_path / "report.csv", "v1\n", 1_700_000_000)
    assert [len(f) for f in file_ticks(1, 2)] == [0, 1]
    WorkflowRun.objects.update(status=RunStatus.SUCCESS)  # the first file was processed
    write(report, "version 2\n", 1_700_086_400)
    assert file_ticks(3) == [[]]
    [second] = ticked(minute(4))
    assert second.outcome == TriggerFire.Outcome.STARTED
    assert second.workflow_run is not None
    assert second.workflow_run.params["file_size"] == len("version 2\n")
    assert file_ticks(5, 6) == [[], []]


def test_it_only_fires_files_matching_the_pattern(workflow: Workflow, tmp_path: Path) -> None:
    watching(workflow, tmp_path, pattern="*.csv")
    write(tmp_path / "orders.csv", "x", 1_700_000_000)
    write(tmp_path / "notes.txt", "x", 1_700_000_000)
    write(tmp_path / "orders.csv.part", "x", 1_700_000_000)
    (tmp_path / "archive.csv").mkdir()  # a directory is not a file
    [[], [fire]] = file_ticks(1, 2)
    assert fire.workflow_run is not None
    assert fire.workflow_run.params["file"] == str(tmp_path / "orders.csv")
    assert list(SeenFile.objects.values_list("path", flat=True)) == [str(tmp_path / "orders.csv")]


def test_it_waits_for_settle_seconds(workflow: Workflow, tmp_path: Path) -> None:
    watching(workflow, tmp_path, settle_seconds=150)
    write(tmp_path / "big.bin", "x", 1_700_000_000)
    assert file_ticks(1, 2, 3) == [[], [], []]  # seen at minute 1; 150 s later is 3.5
    assert len(ticked(minute(4))) == 1


def test_it_fires_each_of_several_new_files_in_one_scan_when_overlap_is_allowed(
    workflow: Workflow, tmp_path: Path
) -> None:
    Trigger.objects.filter(pk=watching(workflow, tmp_path).pk).update(overlap=Trigger.Overlap.ALLOW)
    for name in ("a.csv", "b.csv", "c.csv"):
        write(tmp_path / name, name, 1_700_000_000)
    [first, second] = file_ticks(1, 2)
    assert first == []
    assert [f.outcome for f in second] == ["started"] * 3
    assert len({f.due_at for f in second}) == 3  # same instant, still one fire row each
    files = sorted(f.workflow_run.params["file"] for f in second if f.workflow_run is not None)
    assert files == [str(tmp_path / name) for name in ("a.csv", "b.csv", "c.csv")]


def test_it_fires_once_per_new_file_even_while_a_previous_run_is_queued(
    workflow: Workflow, tmp_path: Path
) -> None:
    # Regression (triggers/scheduler.py, _fire_file → start_fire → _skip_reason): with the default overlap
    # policy `skip`, the second of two files arriving together is recorded as `skipped` (the first
    # file's run is still queued) and its SeenFile is already marked fired, so it is never picked up
    # again: a file is silently lost. Issue #4 part 6: file triggers "fire once per new file".
    watching(workflow, tmp_path)
    write(tmp_path / "a.csv", "a", 1_700_000_000)
    write(tmp_path / "b.csv", "b", 1_700_000_000)
    fires = [fire for batch in file_ticks(1, 2, 3) for fire in batch]
    WorkflowRun.objects.update(status=RunStatus.SUCCESS)
    fires += [fire for batch in file_ticks(4, 5) for fire in batch]
    started = sorted(f.workflow_run.params["file"] for f in fires if f.workflow_run is not None)
    assert started == [str(tmp_path / "a.csv"), str(tmp_path / "b.csv")]


def test_it_records_one_error_for_a_vanished_directory_and_recovers(
    workflow: Workflow, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    trigger = watching(workflow, inbox)
    inbox.rmdir()
    fires = file_ticks(1, 2, 3, 4)
    assert [len(f) for f in fires] == [1, 0, 0, 0]
    error = fires[0][0]
    assert error.outcome == TriggerFire.Outcome.ERROR
    assert str(inbox) in error.detail
    assert stored(trigger).enabled
    assert str(inbox) in stored(trigger).problem
    inbox.mkdir()
    write(inbox / "late.csv", "x", 1_700_000_000)
    assert file_ticks(5) == [[]]
    assert stored(trigger).problem == ""
    [fire] = ticked(minute(6))
    assert fire.outcome == TriggerFire.Outcome.STARTED
    assert TriggerFire.objects.filter(outcome=TriggerFire.Outcome.ERROR).count() == 1


def test_it_records_a_new_error_when_the_directory_vanishes_again(workflow: Workflow, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    watching(workflow, inbox)
    inbox.rmdir()
    file_ticks(1, 2)
    inbox.mkdir()
    file_ticks(3)
    inbox.rmdir()
    file_ticks(4, 5)
    assert TriggerFire.objects.filter(outcome=TriggerFire.Outcome.ERROR).count() == 2


# --- Commands (real processes) --------------------------------------------------------------


def overdue(workflow: Workflow) -> Trigger:
    trigger = Trigger.objects.create(
        name="overdue",
        trigger_type=Trigger.Type.SCHEDULE,
        workflow=workflow,
        config={"interval_seconds": 3600},
    )
    Trigger.objects.filter(pk=trigger.pk).update(next_fire_at=datetime.now(UTC) - timedelta(minutes=5))
    return trigger


def test_it_fires_due_triggers_from_the_command_and_prints_them(
    transactional_db: None, workflow: Workflow
) -> None:
    trigger = overdue(workflow)
    result = manage("fire_triggers")
    assert result.returncode == 0, result.stderr
    run = WorkflowRun.objects.get(trigger=trigger)
    assert f"trigger {trigger.pk} (overdue) → bot: started WorkflowRun {run.pk}" in result.stdout
    assert "1 started" in result.stdout
    assert TriggerFire.objects.get().outcome == TriggerFire.Outcome.STARTED
    assert DBTaskResult.objects.count() == 1  # enqueued for the worker


def test_it_prints_nothing_due_from_the_command(transactional_db: None) -> None:
    result = manage("fire_triggers")
    assert result.returncode == 0, result.stderr
    assert "nothing due" in result.stdout


def test_it_refuses_an_unknown_trigger_id_naming_it(transactional_db: None) -> None:
    result = manage("fire_triggers", "--trigger", "999")
    assert result.returncode != 0
    assert "999" in result.stderr
    assert "Traceback" not in result.stderr
    assert not TriggerFire.objects.exists()


def test_it_fires_a_manual_trigger_from_the_command(transactional_db: None, workflow: Workflow) -> None:
    trigger = manual(workflow)
    result = manage("fire_triggers", "--trigger", str(trigger.pk))
    assert result.returncode == 0, result.stderr
    run = WorkflowRun.objects.get(trigger=trigger)
    assert run.status == RunStatus.QUEUED
    assert f"started WorkflowRun {run.pk}" in result.stdout
    assert DBTaskResult.objects.count() == 1


def test_it_runs_the_scheduler_for_a_number_of_ticks(transactional_db: None, workflow: Workflow) -> None:
    trigger = overdue(workflow)
    result = manage("run_scheduler", "--interval", "0.2", "--max-ticks", "3", timeout=60)
    assert result.returncode == 0, result.stderr
    assert "after 3 tick(s)" in result.stdout
    assert TriggerFire.objects.filter(trigger=trigger).count() == 1
    assert SchedulerTick.objects.exists()


def test_it_stops_the_scheduler_on_sigterm(transactional_db: None) -> None:
    process = subprocess.Popen(
        [sys.executable, MANAGE, "run_scheduler", "--interval", "0.2"],
        env=database_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not SchedulerTick.objects.exists():  # the signal handlers are in place once it ticks
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the scheduler never ticked"
            time.sleep(0.05)
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert time.monotonic() - sent < 5
    assert "scheduler stopped after" in stdout
