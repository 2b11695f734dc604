"""Running one attempt of a workflow as a supervised child process.

Both kinds run as a child in its own process group (session): `command`
workflows exec their argv directly (no shell), `python` workflows run
`python -m chains.pyworker package.module:function`, which calls the function
with a context. One supervisor loop then does everything for both, in the
runner's own thread (so it holds a single database connection):

* reads stdout/stderr without blocking, splits lines, and turns them into
  LogEntry rows (the JSON-line protocol, see `parse_stdout_line`);
* writes those rows in batches (size, time, and at once for ERROR);
* renews the run's heartbeat (and progress) every RPA_HEARTBEAT_SECONDS;
* on timeout sends SIGTERM to the whole group, then SIGKILL after a grace,
  so grandchildren die too.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from chains.models import RunStatus, Workflow, WorkflowRun
from logs.models import ERROR_LEVELS, Level, LogEntry, LogRow, normalize_level

BOT_COMPONENT = "bot"
# After the bot exits, how long to keep reading pipes a leftover grandchild still holds.
DRAIN_SECONDS = 1.0
PYTHON_NAMES = frozenset({"python", "python3"})
# Progress updates from a bot are written at most this often.
PROGRESS_SECONDS = 1.0


@dataclass
class Outcome:
    status: RunStatus
    exit_code: int | None = None
    error: str = ""


@dataclass
class LineSplitter:
    """Splits a byte stream into lines, cutting lines longer than `limit` bytes."""

    limit: int
    pending: bytearray = field(default_factory=bytearray)
    skipping: int = 0  # bytes dropped from the current over-long line so far
    head: bytes = b""  # the kept start of the current over-long line

    def feed(self, data: bytes) -> Iterator[tuple[bytes, int]]:
        """Yield (line, original length) for each complete line in `data`."""
        self.pending += data
        start = 0
        while True:
            end = self.pending.find(b"\n", start)
            if end < 0:
                break
            yield from self._emit(bytes(self.pending[start:end]))
            start = end + 1
        del self.pending[:start]
        if len(self.pending) > self.limit:
            # Keep the head of a huge line, count (not keep) the rest.
            if not self.skipping:
                self.skipping = len(self.pending)
                self.head = bytes(self.pending[: self.limit])
            else:
                self.skipping += len(self.pending)
            self.pending.clear()

    def finish(self) -> Iterator[tuple[bytes, int]]:
        if self.pending or self.skipping:
            yield from self._emit(bytes(self.pending))
        self.pending.clear()

    def _emit(self, tail: bytes) -> Iterator[tuple[bytes, int]]:
        if self.skipping:
            total = self.skipping + len(tail)
            self.skipping = 0
            yield self.head, total
        elif len(tail) > self.limit:
            yield tail[: self.limit], len(tail)
        else:
            yield tail, len(tail)


@dataclass
class RunLogWriter:
    """Turns a run's output lines into LogEntry rows and writes them in batches."""

    run: WorkflowRun
    workflow_id: str
    batch_size: int
    flush_seconds: float
    rows: list[LogRow] = field(default_factory=list)
    last_flush: float = field(default_factory=time.monotonic)
    last_error: str = ""
    progress: tuple[int, int] | None = None
    stored: int = 0

    def add_stdout(self, raw: bytes, size: int, timestamp: datetime) -> None:
        row, progress = parse_stdout_line(raw, size, timestamp, self.workflow_id, self.run.pk)
        if progress is not None:
            self.progress = progress
        if row is not None:
            self._add(row)

    def add_stderr(self, raw: bytes, size: int, timestamp: datetime) -> None:
        text = decode_line(raw)
        if not text.strip():
            return
        metadata: dict[str, Any] = {"stream": "stderr"}
        if size > len(raw):
            metadata.update(truncated=True, original_bytes=size)
        self.last_error = text
        self._add(
            LogRow(
                timestamp,
                Level.WARNING,
                BOT_COMPONENT,
                text,
                self.workflow_id,
                "",
                self.run.pk,
                metadata,
            )
        )

    def _add(self, row: LogRow) -> None:
        self.rows.append(row)
        if row.level in ERROR_LEVELS:
            self.last_error = row.message
            self.flush()
        elif len(self.rows) >= self.batch_size:
            self.flush()

    def flush_if_due(self, now: float) -> None:
        if self.rows and now - self.last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        rows, self.rows = self.rows, []
        self.last_flush = time.monotonic()
        if rows:
            self.stored += LogEntry.objects.ingest(rows)


def decode_line(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace")
    return text[:-1] if text.endswith("\r") else text


def parse_stdout_line(
    raw: bytes, size: int, timestamp: datetime, workflow_id: str, run_id: int | None
) -> tuple[LogRow | None, tuple[int, int] | None]:
    """One stdout line → (log row or None, progress or None).

    A JSON object line is structured: `level`, `message` (or `msg`),
    `node_id`, `component`, and `progress` ([done, total]) are taken out, every
    other key becomes metadata. A progress-only object updates the run without
    a log entry. Anything else is an INFO entry holding the line as it was.
    """
    text = decode_line(raw)
    if not text.strip():
        return None, None
    truncated = size > len(raw)
    obj = _json_object(text) if not truncated else None
    if obj is None:
        metadata = {"truncated": True, "original_bytes": size} if truncated else None
        return LogRow(timestamp, Level.INFO, BOT_COMPONENT, text, workflow_id, "", run_id, metadata), None
    progress = _progress(obj.pop("progress")) if "progress" in obj else None
    message = obj.pop("message", None)
    if message is None:
        message = obj.pop("msg", None)
    if message is None and progress is not None and not obj:
        return None, progress
    component = obj.pop("component", None)
    node_id = obj.pop("node_id", "")
    row = LogRow(
        timestamp,
        normalize_level(obj.pop("level", Level.INFO)),
        (component if type(component) is str else _text(component)) or BOT_COMPONENT,
        text if message is None else message if type(message) is str else _text(message),
        workflow_id,
        node_id if type(node_id) is str else _text(node_id),
        run_id,
        obj,
    )
    return row, progress


def _json_object(text: str) -> dict[str, Any] | None:
    if not text.lstrip().startswith("{"):
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _progress(value: Any) -> tuple[int, int] | None:
    if isinstance(value, dict):
        value = [value.get("done"), value.get("total")]
    if isinstance(value, list | tuple) and len(value) == 2:
        done, total = value
        if isinstance(done, int) and isinstance(total, int) and done >= 0 and 0 < total < 2**31:
            return min(done, total), total
    return None


def build_argv(workflow: Workflow) -> list[str]:
    if workflow.kind == Workflow.Kind.PYTHON:
        return [sys.executable, "-m", "chains.pyworker", workflow.callable]
    argv = list(workflow.command)
    # `python` in a command means the interpreter RPA Monitor runs on (its virtualenv).
    if argv and argv[0] in PYTHON_NAMES:
        argv[0] = sys.executable
    return argv


def build_env(run: WorkflowRun, workflow: Workflow, chain_slug: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({str(k): str(v) for k, v in (workflow.environment or {}).items()})
    pythonpath = [str(settings.BASE_DIR), env.get("PYTHONPATH", "")]
    env.update(
        {
            "RPA_RUN_ID": str(run.pk),
            "RPA_WORKFLOW_ID": workflow.slug,
            "RPA_CHAIN_ID": chain_slug,
            "RPA_CHAIN_RUN_ID": str(run.chain_run_id or ""),
            "RPA_ATTEMPT": str(run.attempt),
            "RPA_PARAMS": json.dumps(run.params or {}),
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(p for p in pythonpath if p),
        }
    )
    env.setdefault("DJANGO_SETTINGS_MODULE", "rpa_monitor.settings")
    return env


def execute(run: WorkflowRun, chain_slug: str = "") -> Outcome:
    """Run one attempt to its end and record the outcome on `run`."""
    workflow = run.workflow
    writer = RunLogWriter(run, workflow.slug, settings.RPA_LOG_BATCH_SIZE, settings.RPA_LOG_FLUSH_SECONDS)
    try:
        proc = subprocess.Popen(
            build_argv(workflow),
            cwd=workflow.resolved_working_dir(),
            env=build_env(run, workflow, chain_slug),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # own process group: a timeout kills grandchildren too
        )
    except (OSError, ValueError) as exc:
        return _fail_to_start(run, writer, exc)
    if not run.start(socket.gethostname(), proc.pid, os.getpid()):
        # Cancelled (or otherwise finished) before it could start.
        _kill_group(proc, signal.SIGKILL)
        proc.wait()
        return Outcome(RunStatus(run.status))
    try:
        outcome = supervise(proc, run, writer, workflow.timeout_seconds)
    except BaseException as exc:
        # The runner itself is going down (Ctrl-C, SIGTERM, a bug): take the bot
        # with it and record why, rather than leave an orphan and a "running" row.
        _stop_group(proc)
        writer.flush()
        run.finish(RunStatus.CANCELLED, proc.returncode, f"runner interrupted: {type(exc).__name__}: {exc}")
        raise
    writer.flush()  # every captured line is stored before the run is marked finished
    run.finish(outcome.status, outcome.exit_code, outcome.error)
    # The row is the truth: if someone else finished the run first, report their outcome.
    return Outcome(RunStatus(run.status), run.exit_code, run.error)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the bot's process group, SIGKILL it after the grace period."""
    _kill_group(proc, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=settings.RPA_KILL_GRACE_SECONDS)
    _kill_group(proc, signal.SIGKILL)
    proc.wait()


def _fail_to_start(run: WorkflowRun, writer: RunLogWriter, exc: Exception) -> Outcome:
    error = f"could not start {build_argv(run.workflow)[:1]}: {exc}"
    now = datetime.now(UTC)
    writer.rows.append(LogRow(now, Level.ERROR, "runner", error, run.workflow.slug, "", run.pk, None))
    writer.flush()
    run.start(socket.gethostname(), None, os.getpid())
    run.finish(RunStatus.FAILURE, None, error)
    return Outcome(RunStatus.FAILURE, None, error)


def supervise(proc: subprocess.Popen[bytes], run: WorkflowRun, writer: RunLogWriter, timeout: int) -> Outcome:
    assert proc.stdout is not None
    assert proc.stderr is not None
    limit = settings.RPA_MAX_LINE_BYTES
    streams = {
        proc.stdout.fileno(): (LineSplitter(limit), writer.add_stdout),
        proc.stderr.fileno(): (LineSplitter(limit), writer.add_stderr),
    }
    selector = selectors.DefaultSelector()
    for fd in streams:
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ)
    clock = _Clock(time.monotonic(), timeout, settings.RPA_HEARTBEAT_SECONDS)
    try:
        while True:
            now = time.monotonic()
            if clock.exited_at is None and proc.poll() is not None:
                clock.exited_at = now
            streams_open = bool(selector.get_map())
            if clock.exited_at is not None and (not streams_open or now - clock.exited_at > DRAIN_SECONDS):
                break
            _enforce_timeout(proc, clock, now)
            _beat(proc, run, writer, clock, now)
            writer.flush_if_due(now)
            wait = clock.wait(now, writer)
            if streams_open:
                for key, _ in selector.select(wait):
                    _read(key.fd, selector, streams)
            else:
                _wait_quietly(proc, wait)
    finally:
        selector.close()
        proc.stdout.close()
        proc.stderr.close()
    returncode = proc.wait()
    for splitter, sink in streams.values():
        for line, size in splitter.finish():
            sink(line, size, datetime.now(UTC))
    return _outcome(returncode, clock, writer.last_error)


@dataclass
class _Clock:
    """The supervisor's deadlines: timeout, kill after grace, heartbeat, progress."""

    started: float
    timeout: int
    beat_every: float
    exited_at: float | None = None
    timed_out: bool = False  # the group was told to stop (timeout, or the run was finished elsewhere)
    stopped: bool = False  # ... because the run was finished elsewhere
    kill_at: float | None = None
    next_beat: float = 0.0
    progress_written: tuple[int, int] | None = None
    progress_at: float = 0.0

    def __post_init__(self) -> None:
        self.deadline = self.started + self.timeout
        self.next_beat = self.started + self.beat_every

    def wait(self, now: float, writer: RunLogWriter) -> float:
        """Seconds until something is due; at most 0.5 so exits are noticed quickly."""
        due = [self.next_beat, self.kill_at if self.timed_out else self.deadline]
        if writer.rows:
            due.append(writer.last_flush + writer.flush_seconds)
        if writer.progress != self.progress_written:
            due.append(self.progress_at + PROGRESS_SECONDS)
        return min(0.5, max(0.0, min(d for d in due if d is not None) - now))


def _enforce_timeout(proc: subprocess.Popen[bytes], clock: _Clock, now: float) -> None:
    if not clock.timed_out and now >= clock.deadline:
        clock.timed_out = True
        _kill_group(proc, signal.SIGTERM)
        clock.kill_at = now + settings.RPA_KILL_GRACE_SECONDS
    elif clock.kill_at is not None and now >= clock.kill_at:
        _kill_group(proc, signal.SIGKILL)
        clock.kill_at = None


def _beat(
    proc: subprocess.Popen[bytes], run: WorkflowRun, writer: RunLogWriter, clock: _Clock, now: float
) -> None:
    """Renew the lease on schedule; write new progress at most once per PROGRESS_SECONDS."""
    progress_due = writer.progress != clock.progress_written and now - clock.progress_at >= PROGRESS_SECONDS
    if now < clock.next_beat and not progress_due:
        return
    if not run.heartbeat(writer.progress) and not clock.timed_out:
        # Someone finished the run under us (cancelled, or reaped as abandoned): stop the bot.
        clock.timed_out, clock.stopped = True, True
        _kill_group(proc, signal.SIGTERM)
        clock.kill_at = now + settings.RPA_KILL_GRACE_SECONDS
    clock.next_beat = now + clock.beat_every
    clock.progress_written, clock.progress_at = writer.progress, now


def _read(fd: int, selector: selectors.BaseSelector, streams: dict[int, Any]) -> None:
    splitter, sink = streams[fd]
    try:
        data = os.read(fd, 1 << 16)
    except BlockingIOError:
        return
    if not data:
        selector.unregister(fd)
        return
    timestamp = datetime.now(UTC)
    for line, size in splitter.feed(data):
        sink(line, size, timestamp)


def _wait_quietly(proc: subprocess.Popen[bytes], seconds: float) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=max(seconds, 0.01))


def _kill_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _outcome(returncode: int, clock: _Clock, last_error: str) -> Outcome:
    if clock.stopped:
        return Outcome(RunStatus.CANCELLED, returncode, "stopped: the run was finished elsewhere")
    if clock.timed_out:
        return Outcome(
            RunStatus.TIMEOUT, returncode, f"timed out after {clock.timeout}s; process group killed"
        )
    if returncode == 0:
        return Outcome(RunStatus.SUCCESS, 0)
    reason = f"killed by signal {_signal_name(-returncode)}" if returncode < 0 else f"exit code {returncode}"
    return Outcome(RunStatus.FAILURE, returncode, f"{reason}: {last_error}" if last_error else reason)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def kill_orphaned_bot(run: WorkflowRun, sig: signal.Signals = signal.SIGKILL) -> bool:
    """Signal (default SIGKILL) the process group of a run's bot, if it still runs on this host.

    When a runner dies (kill -9), its bot lives on in its own session. The pid
    alone may have been reused since, so the process must prove it is this
    run's bot: its environment holds RPA_RUN_ID=<run id>.
    """
    if run.pid is None or run.host != socket.gethostname():
        return False
    try:
        with open(f"/proc/{run.pid}/environ", "rb") as f:
            environ = f.read().split(b"\0")
    except OSError:
        return False  # gone already (or not ours to read)
    if f"RPA_RUN_ID={run.pk}".encode() not in environ:
        return False
    try:
        os.killpg(run.pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True
