"""A bot's output is spooled to files: a runner that dies (kill -9) loses no line."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from chains.executors import LineSplitter, RunLogWriter, store_spool_rest
from chains.models import RunStatus, Workflow, WorkflowRun
from chains.runner import cancel_run, reap_stale_runs, run_workflow
from chains.spool import Spool, spool_dir
from logs.models import LogEntry
from rpa_monitor.test import start_manage, wait_for_running_run

PY = sys.executable
LINES = 30_000

# Prints a numbered stream as fast as it can, pausing briefly now and then so the runner
# is killed while the bot is still writing.
NUMBERED = (
    "import sys, time\n"
    f"for i in range({LINES}):\n"
    "    sys.stdout.write(f'line {i}\\n')\n"
    "    if i % 5000 == 4999:\n"
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
def test_it_removes_the_spool_files_of_a_finished_run(settings, tmp_path: Path) -> None:
    settings.DATA_DIR = tmp_path
    workflow = Workflow.objects.create(slug="short", name="short", command=[PY, "-c", "print('hi')"])
    run = run_workflow(workflow)
    assert run.status == RunStatus.SUCCESS
    assert LogEntry.objects.filter(run=run, message="hi").count() == 1
    assert run.spool == ""
    assert list(spool_dir().iterdir()) == []


@pytest.mark.django_db(transaction=True)
def test_a_run_cancelled_while_its_runner_was_dead_gets_its_lines_at_the_next_tick() -> None:
    code = "import time\nfor i in range(5000):\n    print(f'line {i}')\ntime.sleep(60)\n"
    Workflow.objects.create(slug="idle", name="idle", command=[PY, "-c", code])
    runner = start_manage("run_workflow", "idle")
    run = wait_for_running_run("idle")
    spool = Spool(run.spool)
    _wait_until(lambda: LogEntry.objects.filter(run=run).exists())
    runner.kill()
    runner.communicate(timeout=10)
    assert cancel_run(run, "cancelled by test")  # SIGTERM to the bot; nobody reads its spool now
    reap_stale_runs(timezone.now() + timedelta(minutes=5), lease_seconds=60)
    stored = LogEntry.objects.filter(run=run, component="bot").values_list("message", flat=True)
    assert sorted(stored) == sorted(f"line {i}" for i in range(5000))
    run.refresh_from_db()
    assert (run.status, run.spool) == (RunStatus.CANCELLED, "")
    assert not any(Path(path).exists() for path in spool.paths)


@pytest.mark.django_db
def test_a_writer_whose_spool_was_taken_over_stores_nothing_twice() -> None:
    workflow = Workflow.objects.create(slug="taken", name="taken", command=["true"])
    run = WorkflowRun.objects.create(workflow=workflow, host=socket.gethostname(), status=RunStatus.RUNNING)
    spool = Spool.new(run.pk)
    stdout, stderr = spool.create()
    os.write(stdout, b"one\ntwo\n")
    os.close(stdout)
    os.close(stderr)
    run.spool = spool.base
    run.save()
    late = RunLogWriter(run, workflow.slug, batch_size=100, flush_seconds=60)  # the presumed-dead runner
    assert store_spool_rest(run) == 2  # the reaper took over
    late.add_stdout(b"one", 3, timezone.now(), 4)
    late.flush()
    assert late.lost
    assert sorted(LogEntry.objects.filter(run=run).values_list("message", flat=True)) == ["one", "two"]
    assert not Path(spool.paths[0]).exists()


@given(st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=12), st.data())
def test_resuming_at_any_stored_offset_yields_exactly_the_lines_after_it(lines, data) -> None:  # type: ignore[no-untyped-def]
    stream = b"".join(line + b"\n" for line in lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=5)))
    splitter, seen = LineSplitter(limit=16), []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        seen += list(splitter.feed(stream[start:end]))
    seen += list(splitter.finish())
    assert [size for _, size, _ in seen] == [len(line) for line in lines]
    for index, (_, _, after) in enumerate(seen):
        resumed = LineSplitter(limit=16, offset=after)
        rest = [*resumed.feed(stream[after:]), *resumed.finish()]
        assert rest == seen[index + 1 :]


def _stopped_bots(marker: str) -> int:
    """How many live processes whose command line holds `marker` are stopped (state T)."""
    stopped = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            state = Path(f"/proc/{name}/stat").read_bytes().rsplit(b") ", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker.encode() in cmdline and state == b"T":
            stopped += 1
    return stopped


def test_it_pauses_a_bot_that_prints_faster_than_its_lines_are_stored(db: None, settings) -> None:
    settings.RPA_SPOOL_MAX_BACKLOG_BYTES = 64 * 1024
    lines, marker = 100_000, "firehose-throttle-marker"
    # A burst far beyond the limit, then the bot stays alive: it is stopped while the burst is
    # stored (whatever the machine's speed, 256 KiB are read long before its sleep ends).
    code = (
        f"# {marker}\nimport sys, time\n"
        f"sys.stdout.write(''.join(f'line {{i}}\\n' for i in range({lines})))\n"
        "sys.stdout.flush()\ntime.sleep(4)\n"
    )
    workflow = Workflow.objects.create(slug="firehose-throttle", name="Firehose", command=[PY, "-c", code])
    seen_stopped: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen_stopped.append(_stopped_bots(marker))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        run = run_workflow(workflow)
    finally:
        done.set()
        watcher.join()
    assert run.status == RunStatus.SUCCESS
    assert LogEntry.objects.filter(run=run, component="bot").count() == lines
    assert max(seen_stopped) == 1  # it was held while its backlog was read ...
    assert _stopped_bots(marker) == 0  # ... and nothing is left stopped
