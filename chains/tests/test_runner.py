"""The runner with real subprocesses: success, failure, timeout, capture, retries, python callables."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from chains.models import Chain, ChainRun, RunStatus, Workflow, WorkflowRun, WorkflowRunCount
from chains.runner import reap_stale_runs, run_chain, run_workflow
from logs.models import LogEntry
from rpa_monitor.test import start_manage, wait_for_running_run

pytestmark = pytest.mark.django_db

PY = sys.executable


def command(slug: str, *argv: str, **fields: object) -> Workflow:
    return Workflow.objects.create(slug=slug, name=slug, command=list(argv), **fields)


def script(slug: str, code: str, **fields: object) -> Workflow:
    return command(slug, PY, "-c", code, **fields)


def test_it_runs_a_command_to_success() -> None:
    run = run_workflow(command("ok", "true"))
    assert run.status == RunStatus.SUCCESS
    assert run.exit_code == 0
    assert run.started_at
    assert run.finished_at
    assert run.finished_at >= run.started_at
    assert run.host
    assert run.pid
    assert run.worker_pid == os.getpid()
    assert run.heartbeat_at is not None


def test_it_records_failure_with_exit_code_and_last_stderr_line() -> None:
    run = run_workflow(script("bad", "import sys; print('boom', file=sys.stderr); sys.exit(3)"))
    assert run.status == RunStatus.FAILURE
    assert run.exit_code == 3
    assert run.error == "exit code 3: boom"


def test_it_kills_the_whole_process_group_on_timeout(tmp_path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    workflow = command("slow", "sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait", timeout_seconds=1)
    started = time.monotonic()
    run = run_workflow(workflow)
    assert time.monotonic() - started < 15
    assert run.status == RunStatus.TIMEOUT
    assert "timed out after 1s" in run.error
    grandchild = int(pidfile.read_text())
    for _ in range(50):  # the kernel reaps asynchronously
        if not _alive(grandchild):
            break
        time.sleep(0.1)
    assert not _alive(grandchild)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead
        return f.read().split(") ")[1][0] != "Z"


@pytest.mark.parametrize("exit_code", [0, 3])
def test_it_ends_the_process_group_when_the_run_finishes(exit_code: int) -> None:
    # A background grandchild outlives the bot's main process: the run's end ends it too.
    run = run_workflow(command(f"leaves-{exit_code}", "sh", "-c", f"(sleep 612 &); exit {exit_code}"))
    assert run.status == (RunStatus.SUCCESS if exit_code == 0 else RunStatus.FAILURE)
    assert run.pid is not None
    assert _session_members(run.pid) == []


def _session_members(sid: int) -> list[int]:
    """Live (not zombie) processes of session `sid`, read from /proc."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(") ", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:  # state, ppid, pgrp, session
            members.append(int(entry))
    return members


def test_it_turns_json_lines_into_structured_entries_and_stderr_into_warnings() -> None:
    code = (
        "import json, sys\n"
        "print(json.dumps({'level': 'error', 'message': 'field missing', 'node_id': 'form', 'row': 7}))\n"
        "print('plain line')\n"
        "print('{not json')\n"
        "print('to stderr', file=sys.stderr)\n"
    )
    run = run_workflow(script("capture", code))
    entries = {e.message: e for e in LogEntry.objects.filter(run=run, component="bot")}
    assert set(entries) == {"field missing", "plain line", "{not json", "to stderr"}
    structured = entries["field missing"]
    assert (structured.level, structured.node_id, structured.metadata) == ("ERROR", "form", {"row": 7})
    assert structured.workflow_id == "capture"
    assert entries["plain line"].level == "INFO"
    assert entries["{not json"].level == "INFO"
    assert entries["to stderr"].level == "WARNING"
    assert entries["to stderr"].metadata == {"stream": "stderr"}


def test_it_passes_the_rpa_environment_to_the_child() -> None:
    code = (
        "import json, os\n"
        "keys = ['RPA_RUN_ID', 'RPA_WORKFLOW_ID', 'RPA_CHAIN_ID', 'RPA_PARAMS', 'GREETING']\n"
        "print(json.dumps({'message': 'env', **{k: os.environ.get(k) for k in keys}}))\n"
    )
    workflow = script("env", code, environment={"GREETING": "hello"})
    Chain.objects.create_with_steps("envchain", "env chain", ["env"])
    chain_run = run_chain(Chain.objects.get(slug="envchain"), params={"file": "/tmp/x.csv"})
    run = chain_run.workflow_runs.get()
    entry = LogEntry.objects.get(run=run, message="env")
    assert entry.metadata == {
        "RPA_RUN_ID": str(run.pk),
        "RPA_WORKFLOW_ID": workflow.slug,
        "RPA_CHAIN_ID": "envchain",
        "RPA_PARAMS": '{"file": "/tmp/x.csv"}',
        "GREETING": "hello",
    }


def test_it_survives_binary_garbage_huge_lines_and_invalid_json(settings) -> None:
    settings.RPA_MAX_LINE_BYTES = 1000
    code = (
        "import sys\n"
        "sys.stdout.buffer.write(bytes(b for b in range(256) if b != 10) + b'\\n')\n"
        "sys.stdout.write('x' * (10 * 1024 * 1024) + '\\n')\n"
        'sys.stdout.write(\'{"level": "INFO", "message": \\n\')\n'
        "sys.stdout.write('after\\n')\n"
    )
    run = run_workflow(script("garbage", code))
    assert run.status == RunStatus.SUCCESS
    entries = list(LogEntry.objects.filter(run=run, component="bot").order_by("id"))
    assert len(entries) == 4
    assert "\x00" not in entries[0].message
    assert "\ufffd" in entries[0].message
    assert entries[1].message == "x" * 1000
    assert entries[1].metadata == {"truncated": True, "original_bytes": 10 * 1024 * 1024}
    assert entries[2].message == '{"level": "INFO", "message": '
    assert entries[3].message == "after"


def test_it_retries_each_attempt_in_its_own_row(tmp_path) -> None:
    marker = tmp_path / "attempts"
    code = (
        f"import pathlib, sys\np = pathlib.Path({str(marker)!r})\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\np.write_text(str(n))\n"
        "sys.exit(0 if n == 3 else 1)\n"
    )
    workflow = script("flaky", code, max_retries=3)
    run = run_workflow(workflow)
    assert run.status == RunStatus.SUCCESS
    assert run.attempt == 3
    attempts = list(WorkflowRun.objects.filter(workflow=workflow).order_by("attempt"))
    assert [(r.attempt, r.status) for r in attempts] == [
        (1, RunStatus.FAILURE),
        (2, RunStatus.FAILURE),
        (3, RunStatus.SUCCESS),
    ]
    counts = dict(WorkflowRunCount.objects.filter(workflow=workflow).values_list("status", "count"))
    assert counts == {"failure": 2, "success": 1}


def test_it_stops_retrying_after_max_retries() -> None:
    workflow = command("always-bad", "false", max_retries=2)
    run = run_workflow(workflow)
    assert (run.status, run.attempt) == (RunStatus.FAILURE, 3)
    assert WorkflowRun.objects.filter(workflow=workflow).count() == 3


def test_a_retry_keeps_the_task_and_the_trigger_of_its_first_attempt() -> None:
    from triggers.models import Trigger

    workflow = command("flaky3", "false", max_retries=1)
    trigger = Trigger.objects.create(name="manual", trigger_type=Trigger.Type.MANUAL, workflow=workflow)
    first = WorkflowRun.objects.create(workflow=workflow, task_id="task-1", trigger=trigger)
    last = run_workflow(workflow, run=first)
    assert last.attempt == 2
    assert (last.task_id, last.trigger_id) == ("task-1", trigger.pk)


def test_it_calls_python_workflows_with_a_context() -> None:
    workflow = Workflow.objects.create(
        slug="report", name="report", kind=Workflow.Kind.PYTHON, callable="examples.python_jobs:daily_report"
    )
    run = run_workflow(workflow, params={"day": "2026-11-24"})
    assert run.status == RunStatus.SUCCESS, run.error
    assert (run.progress_done, run.progress_total) == (4, 4)
    messages = list(LogEntry.objects.filter(run=run).values_list("node_id", "message"))
    assert ("sales", "building section sales") in messages
    assert ("publish", "report ready") in messages


def test_it_fails_python_workflows_that_raise_with_the_traceback() -> None:
    workflow = Workflow.objects.create(
        slug="flaky-py", name="flaky", kind=Workflow.Kind.PYTHON, callable="examples.python_jobs:flaky_check"
    )
    run = run_workflow(workflow)
    assert run.status == RunStatus.FAILURE
    assert "Traceback (most recent call last)" in run.error
    assert "ConnectionError: upstream system did not answer" in run.error
    error_entry = LogEntry.objects.get(run=run, level="ERROR", component="bot")
    assert error_entry.metadata == {"exception": "ConnectionError"}


def test_it_fails_cleanly_when_the_program_does_not_exist() -> None:
    run = run_workflow(command("missing", "/no/such/program"))
    assert run.status == RunStatus.FAILURE
    assert "could not start" in run.error
    assert LogEntry.objects.filter(run=run, level="ERROR").exists()


def test_a_chain_stops_at_the_first_failure_and_records_the_failure_point() -> None:
    command("one", "true")
    command("two", "false")
    command("three", "true")
    chain = Chain.objects.create_with_steps("abc", "abc", ["one", "two", "three"])
    chain_run = run_chain(chain)
    assert chain_run.status == RunStatus.FAILURE
    assert chain_run.failed_step == 2
    assert chain_run.error.startswith("step 2 (two) failure")
    assert [r.workflow.slug for r in chain_run.step_runs()] == ["one", "two"]
    assert ChainRun.objects.get(pk=chain_run.pk).finished_at is not None


@pytest.mark.django_db(transaction=True)
def test_it_stops_the_bot_when_the_run_is_finished_elsewhere(settings) -> None:
    settings.RPA_HEARTBEAT_SECONDS = 0.2
    workflow = command("long", "sleep", "30")

    def cancel_when_running() -> None:
        try:
            for _ in range(100):
                if WorkflowRun.objects.filter(workflow=workflow, status=RunStatus.RUNNING).exists():
                    run = WorkflowRun.objects.get(workflow=workflow)
                    run.finish(RunStatus.CANCELLED, error="cancelled by test")
                    return
                time.sleep(0.1)
        finally:
            connection.close()  # this thread's own connection; left open it blocks test DB teardown

    canceller = threading.Thread(target=cancel_when_running)
    canceller.start()
    started = time.monotonic()
    run = run_workflow(workflow)
    canceller.join()
    assert time.monotonic() - started < 10
    assert run.status == RunStatus.CANCELLED
    assert run.error == "cancelled by test"
    assert run.pid is not None
    assert not _alive(run.pid)


@pytest.mark.django_db(transaction=True)
def test_sigterm_to_run_workflow_cancels_the_run_and_kills_the_bot() -> None:
    command("sleepy", "sleep", "30")
    proc = start_manage("run_workflow", "sleepy")
    run = wait_for_running_run("sleepy")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=20)
    assert proc.returncode != 0
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert "runner interrupted" in run.error
    assert run.pid is not None
    for _ in range(50):
        if not _alive(run.pid):
            break
        time.sleep(0.1)
    assert not _alive(run.pid)


def test_the_reaper_abandons_a_chain_run_whose_runner_died_between_steps() -> None:
    command("a", "true")
    command("b", "true")
    chain = Chain.objects.create_with_steps("ab", "ab", ["a", "b"])
    long_ago = timezone.now() - timedelta(minutes=10)
    chain_run = ChainRun.objects.create(
        chain=chain, status=RunStatus.RUNNING, started_at=long_ago, heartbeat_at=long_ago, total_steps=2
    )
    WorkflowRun.objects.create(
        workflow=Workflow.objects.get(slug="a"), chain_run=chain_run, position=1, status=RunStatus.SUCCESS
    )
    fresh = ChainRun.objects.create(chain=chain, status=RunStatus.RUNNING, heartbeat_at=timezone.now())
    reap_stale_runs(timezone.now(), lease_seconds=60)
    chain_run.refresh_from_db()
    assert chain_run.status == RunStatus.ABANDONED
    assert chain_run.failed_step == 1
    assert "after step 1 of 2" in chain_run.error
    fresh.refresh_from_db()
    assert fresh.status == RunStatus.RUNNING


def test_step_heartbeats_renew_the_chain_runs_lease(settings) -> None:
    settings.RPA_HEARTBEAT_SECONDS = 0.2
    script("beat", "import time; time.sleep(1)")
    chain = Chain.objects.create_with_steps("beating", "beating", ["beat"])
    chain_run = run_chain(chain)
    assert chain_run.status == RunStatus.SUCCESS
    chain_run.refresh_from_db()
    assert chain_run.heartbeat_at is not None
    assert chain_run.started_at is not None
    assert chain_run.heartbeat_at - chain_run.started_at >= timedelta(seconds=0.5)


@pytest.mark.django_db(transaction=True)
def test_after_kill_9_of_the_runner_the_reaper_abandons_the_run_and_kills_the_orphaned_bot() -> None:
    command("orphan", "sleep", "60")
    proc = start_manage("run_workflow", "orphan")
    run = wait_for_running_run("orphan")
    assert run.pid is not None
    proc.kill()  # kill -9: no cleanup, the bot lives on in its own session
    proc.communicate(timeout=10)
    assert _alive(run.pid)
    reaped = reap_stale_runs(timezone.now() + timedelta(minutes=5), lease_seconds=60)
    assert [r.pk for r in reaped] == [run.pk]
    run.refresh_from_db()
    assert run.status == RunStatus.ABANDONED
    assert f"pid {run.pid}" in run.error
    for _ in range(50):
        if not _alive(run.pid):
            break
        time.sleep(0.1)
    assert not _alive(run.pid)
    assert not WorkflowRun.objects.filter(status=RunStatus.RUNNING).exists()


def test_the_reaper_never_kills_a_process_that_is_not_the_runs_bot() -> None:
    stranger = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        workflow = command("ghost", "true")
        run = WorkflowRun.objects.create(
            workflow=workflow,
            status=RunStatus.RUNNING,
            host=socket.gethostname(),
            pid=stranger.pid,  # a reused pid: alive, but not this run's bot
            heartbeat_at=timezone.now() - timedelta(minutes=10),
        )
        reap_stale_runs(timezone.now(), lease_seconds=60)
        run.refresh_from_db()
        assert run.status == RunStatus.ABANDONED
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()
