"""A bot's output is spooled to files: a runner that dies (kill -9) loses no line."""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from chains.models import RunStatus, Workflow
from chains.runner import reap_stale_runs, run_workflow
from chains.spool import spool_dir
from logs.models import LogEntry
from rpa_monitor.test import start_manage, wait_for_running_run

PY = sys.executable
LINES = 60_000

# Prints a numbered stream as fast as it can, pausing briefly now and then so the runner
# is killed while the bot is still writing.
NUMBERED = (
    "import sys, time\n"
    f"for i in range({LINES}):\n"
    "    sys.stdout.write(f'line {i}\\n')\n"
    "    if i % 10000 == 9999:\n"
    "        sys.stdout.flush(); time.sleep(0.1)\n"
    "print('to stderr', file=sys.stderr)\n"
)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"  # a zombie is dead
    except FileNotFoundError:
        return False


def _wait_until(condition, seconds: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.mark.django_db(transaction=True)
def test_it_stores_every_line_exactly_once_when_the_runner_is_killed() -> None:
    Workflow.objects.create(slug="numbers", name="numbers", command=[PY, "-c", NUMBERED])
    runner = start_manage("run_workflow", "numbers")
    run = wait_for_running_run("numbers")
    _wait_until(lambda: LogEntry.objects.filter(run=run).exists())
    runner.kill()  # kill -9 mid-stream: no cleanup, no last flush
    runner.communicate(timeout=10)
    assert run.pid is not None
    _wait_until(lambda: not _alive(run.pid))  # the bot finishes on its own
    reaped = reap_stale_runs(timezone.now() + timedelta(minutes=5), lease_seconds=60)
    assert [r.pk for r in reaped] == [run.pk]
    stored = list(LogEntry.objects.filter(run=run, component="bot").values_list("message", flat=True))
    expected = [f"line {i}" for i in range(LINES)] + ["to stderr"]
    assert len(stored) == len(expected), f"{len(expected) - len(stored)} of {len(expected)} lines lost"
    assert sorted(stored) == sorted(expected)
    run.refresh_from_db()
    assert run.status == RunStatus.ABANDONED
    assert run.spool == ""


@pytest.mark.django_db
def test_it_removes_the_spool_files_of_a_finished_run() -> None:
    workflow = Workflow.objects.create(slug="short", name="short", command=[PY, "-c", "print('hi')"])
    before = set(Path(spool_dir()).glob("*"))
    run = run_workflow(workflow)
    assert run.status == RunStatus.SUCCESS
    assert LogEntry.objects.filter(run=run, message="hi").count() == 1
    assert run.spool == ""
    assert set(Path(spool_dir()).glob("*")) == before
