"""Running one attempt of a workflow as a supervised child process.

Both kinds run as a child in its own process group (session): `command`
workflows exec their argv directly (no shell), `python` workflows run
`python -m chains.pyworker package.module:function`, which calls the function
with a context. The child's stdout and stderr are spool files (chains.spool),
never pipes, so its output is on disk as soon as it is written. One supervisor
loop then does everything for both, in the runner's own thread (so it holds a
single database connection):

* tails the spool files, splits lines, and turns them into LogEntry rows (the
  JSON-line protocol, see `parse_stdout_line`);
* writes those rows in batches (size, time, and at once for ERROR), each batch
  moving the run's spool offsets in the same transaction;
* renews the run's heartbeat (and progress) every RPA_HEARTBEAT_SECONDS;
* on timeout sends SIGTERM to the whole group, then SIGKILL after a grace,
  so grandchildren die too; when the bot ends, whatever its outcome, what is
  left of its group is ended the same way.

When a runner dies, `store_spool_rest` (the reaper, the spool sweep) stores what
it had not, from the stored offsets on.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chains.models import RunStatus, Workflow, WorkflowRun
from chains.spool import Spool
from credentials.vault import MASK, Redactor, SecretDecryptionError, environment_for
from logs.models import ERROR_LEVELS, Level, LogEntry, LogRow, normalize_level

BOT_COMPONENT = "bot"
PYTHON_NAMES = frozenset({"python", "python3"})
# Progress updates from a bot are written at most this often.
PROGRESS_SECONDS = 1.0
# With nothing new in the spool, look again after at most this long.
IDLE_SECONDS = 0.1
# Spool bytes read per stream between two looks at the clock (heartbeat, timeout, flush).
READ_BUDGET = 1 << 18
READ_CHUNK = 1 << 16
# After SIGKILL, how long to wait for a process group to disappear (a process stuck in
# uninterruptible sleep may never): then the rest of its output is read anyway.
GONE_SECONDS = 5.0
# Names of the worker's environment a command bot gets besides RPA_BOT_ENV_PASSTHROUGH:
# trace context, so a bot's spans join the run's trace (DESIGN §20).
TRACE_NAMES = frozenset({"TRACEPARENT", "TRACESTATE"})
TRACE_PREFIX = "OTEL_"

Sink = Callable[[bytes, int, datetime, int], None]


@dataclass
class Outcome:
    status: RunStatus
    exit_code: int | None = None
    error: str = ""


@dataclass
class LineSplitter:
    """Splits a byte stream into lines, cutting lines longer than `limit` bytes.

    Each line comes with the stream position just after it (its newline): what
    is stored up to a line, and where reading resumes after it.
    """

    limit: int
    offset: int = 0  # stream position of pending[0]
    pending: bytearray = field(default_factory=bytearray)
    skipping: int = 0  # bytes dropped from the current over-long line so far
    head: bytes = b""  # the kept start of the current over-long line

    def feed(self, data: bytes) -> Iterator[tuple[bytes, int, int]]:
        """Yield (line, original length, position after it) for each complete line in `data`."""
        self.pending += data
        pending, offset, limit = self.pending, self.offset, self.limit
        start = 0
        while True:
            end = pending.find(b"\n", start)
            if end < 0:
                break
            if self.skipping or end - start > limit:
                yield from self._emit(bytes(pending[start:end]), offset + end + 1)
            else:  # the common case, inline: bots print many short lines
                yield bytes(pending[start:end]), end - start, offset + end + 1
            start = end + 1
        del pending[:start]
        self.offset += start
        if len(pending) > limit:
            # Keep the head of a huge line, count (not keep) the rest.
            if not self.skipping:
                self.skipping = len(pending)
                self.head = bytes(pending[:limit])
            else:
                self.skipping += len(pending)
            self.offset += len(pending)
            pending.clear()

    def finish(self) -> Iterator[tuple[bytes, int, int]]:
        """The stream has ended: its last line may lack a newline."""
        if self.pending or self.skipping:
            yield from self._emit(bytes(self.pending), self.offset + len(self.pending))
        self.offset += len(self.pending)
        self.pending.clear()

    def _emit(self, tail: bytes, after: int) -> Iterator[tuple[bytes, int, int]]:
        if self.skipping:
            total = self.skipping + len(tail)
            self.skipping = 0
            yield self.head, total, after
        elif len(tail) > self.limit:
            yield tail[: self.limit], len(tail), after
        else:
            yield tail, len(tail), after


class SpoolReader:
    """Tails one spool file from a byte offset, handing each complete line to `sink`."""

    def __init__(self, path: str, offset: int, sink: Sink) -> None:
        self.splitter = LineSplitter(settings.RPA_MAX_LINE_BYTES, offset)
        self.sink = sink
        try:
            self.fd: int | None = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self.fd = None  # removed after it was stored (or never created)
        else:
            os.lseek(self.fd, offset, os.SEEK_SET)

    def read(self, budget: int = READ_BUDGET) -> int:
        """Take what was written since the last call (up to about `budget` bytes); bytes read."""
        total, sink, feed = 0, self.sink, self.splitter.feed
        while self.fd is not None and total < budget:
            data = os.read(self.fd, READ_CHUNK)
            if not data:
                break
            total += len(data)
            timestamp = datetime.now(UTC)
            for line, size, after in feed(data):
                sink(line, size, timestamp, after)
        return total

    def backlog(self) -> int:
        """Bytes the bot has written that are not read yet."""
        if self.fd is None:
            return 0
        return os.fstat(self.fd).st_size - os.lseek(self.fd, 0, os.SEEK_CUR)

    def read_to_end(self) -> None:
        """Everything, the last line too (call it once nothing writes the file any more)."""
        while self.read():
            pass
        for line, size, after in self.splitter.finish():
            self.sink(line, size, datetime.now(UTC), after)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@dataclass
class RunLogWriter:
    """Turns a run's output lines into LogEntry rows and writes them in batches.

    Every line of a run becomes a row in `_add`, and every row is stored by
    `flush`, together with the spool offsets after its line: a batch and the
    offsets are committed together or not at all.
    """

    run: WorkflowRun
    workflow_id: str
    batch_size: int
    flush_seconds: float
    stored_offsets: tuple[int, int] = (0, 0)  # (stdout, stderr) spool offsets in the database
    rows: list[LogRow] = field(default_factory=list)
    offsets: list[int] = field(default_factory=lambda: [0, 0])  # ... after the last line taken
    last_flush: float = field(default_factory=time.monotonic)
    last_error: str = ""
    progress: tuple[int, int] | None = None
    stored: int = 0
    lost: bool = False  # someone else stores this run's spool now (the offsets moved under us)
    # Masks the values of the run's secrets in every stored line (and so in run.error, exports
    # and notifications, which take their text from stored rows).
    redactor: Redactor = field(default_factory=lambda: Redactor(()))
    run_id: int | None = field(init=False)

    def __post_init__(self) -> None:
        self.offsets = list(self.stored_offsets)
        self.run_id = self.run.pk  # read once: the per-line path is hot

    def add_stdout(self, raw: bytes, size: int, timestamp: datetime, after: int) -> None:
        self.offsets[0] = after
        row, progress = parse_stdout_line(raw, size, timestamp, self.workflow_id, self.run_id)
        if progress is not None:
            self.progress = progress
        if row is not None:
            self._add(row)

    def add_stderr(self, raw: bytes, size: int, timestamp: datetime, after: int) -> None:
        self.offsets[1] = after
        text = decode_line(raw)
        if not text.strip():
            return
        metadata: dict[str, Any] = {"stream": "stderr"}
        if size > len(raw):
            metadata.update(truncated=True, original_bytes=size)
        if self.redactor:
            text = self.redactor.redact(text)
        self.last_error = text
        self._add(
            LogRow(
                timestamp,
                Level.WARNING,
                BOT_COMPONENT,
                text,
                self.workflow_id,
                "",
                self.run_id,
                metadata,
            )
        )

    def add_runner_error(self, message: str) -> None:
        """An entry of the runner itself about this run (it could not start the bot)."""
        now = datetime.now(UTC)
        self._add(LogRow(now, Level.ERROR, "runner", message, self.workflow_id, "", self.run_id))

    def _add(self, row: LogRow) -> None:
        if self.lost:
            return
        if self.redactor:
            row = self._redacted(row)
        self.rows.append(row)
        if row.level in ERROR_LEVELS:
            self.last_error = row.message
            self.flush()
        elif len(self.rows) >= self.batch_size:
            self.flush()

    def _redacted(self, row: LogRow) -> LogRow:
        redact = self.redactor.redact
        return row._replace(
            message=redact(row.message),
            component=redact(row.component),
            node_id=redact(row.node_id),
            metadata=self.redactor.redact_json(row.metadata),
        )

    @property
    def unstored(self) -> bool:
        return bool(self.rows) or tuple(self.offsets) != self.stored_offsets

    def flush_if_due(self, now: float) -> None:
        if now - self.last_flush >= self.flush_seconds and self.unstored:
            self.flush()

    def flush(self) -> None:
        rows, self.rows = self.rows, []
        self.last_flush = time.monotonic()
        offsets = (self.offsets[0], self.offsets[1])
        if self.lost or not (rows or offsets != self.stored_offsets):
            return
        with transaction.atomic():
            if offsets != self.stored_offsets and not self.run.advance_spool(self.stored_offsets, offsets):
                # The reaper or the sweep took over this spool (our runner was presumed dead):
                # they store these lines from the offsets they saw; storing them too would double them.
                self.lost = True
                return
            self.stored += LogEntry.objects.ingest(rows)
        self.stored_offsets = offsets


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


def build_env(
    run: WorkflowRun, workflow: Workflow, chain_slug: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The bot's environment: what it needs, nothing else of the worker's (DESIGN §14, §20).

    A `command` bot is arbitrary code: it gets the worker's names listed in
    RPA_BOT_ENV_PASSTHROUGH, the trace context (TRACEPARENT, TRACESTATE, OTEL_*),
    the workflow's `environment`, `extra` (e.g. its secrets), and the RPA_* run
    variables -- never SECRET_KEY, DATABASE_URL, EMAIL_* or anything else.
    A `python` workflow is the deployment's own code, run by chains.pyworker,
    which sets up Django in the child: it keeps the worker's environment
    (database, settings) and gets the same additions.
    """
    if workflow.kind == Workflow.Kind.PYTHON:
        env = dict(os.environ)
    else:
        passthrough = set(settings.RPA_BOT_ENV_PASSTHROUGH)
        env = {
            name: value
            for name, value in os.environ.items()
            if name in passthrough or name in TRACE_NAMES or name.startswith(TRACE_PREFIX)
        }
    env.update({str(k): str(v) for k, v in (workflow.environment or {}).items()})
    env.update(extra or {})
    if workflow.kind == Workflow.Kind.PYTHON:
        pythonpath = [str(settings.BASE_DIR), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in pythonpath if p)
        env.setdefault("DJANGO_SETTINGS_MODULE", "rpa_monitor.settings")
    env.update(
        {
            "RPA_RUN_ID": str(run.pk),
            "RPA_WORKFLOW_ID": workflow.slug,
            "RPA_CHAIN_ID": chain_slug,
            "RPA_CHAIN_RUN_ID": str(run.chain_run_id or ""),
            "RPA_ATTEMPT": str(run.attempt),
            "RPA_PARAMS": json.dumps(run.params or {}),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def execute(run: WorkflowRun, chain_slug: str = "") -> Outcome:
    """Run one attempt to its end and record the outcome on `run`."""
    workflow = run.workflow
    writer = RunLogWriter(run, workflow.slug, settings.RPA_LOG_BATCH_SIZE, settings.RPA_LOG_FLUSH_SECONDS)
    started_at = timezone.now()  # before the bot starts: its recorded duration covers its whole life
    try:
        secrets = environment_for(workflow)
    except SecretDecryptionError as exc:
        return _fail_to_start(run, writer, exc, started_at)
    writer.redactor = Redactor(secrets.values())
    try:
        proc, spool = _launch(run, workflow, chain_slug, secrets)
    except (OSError, ValueError) as exc:
        return _fail_to_start(run, writer, exc, started_at)
    if not run.start(socket.gethostname(), proc.pid, os.getpid(), started_at=started_at, spool=spool.base):
        # Cancelled (or otherwise finished) before it could start.
        _kill_group(proc.pid, signal.SIGKILL)
        proc.wait()
        spool.remove()
        return Outcome(RunStatus(run.status))
    readers = _readers(spool, writer)
    try:
        outcome = supervise(proc, run, writer, workflow.timeout_seconds, readers)
    except BaseException as exc:
        # The runner itself is going down (Ctrl-C, SIGTERM, a bug): take the bot
        # with it and record why, rather than leave an orphan and a "running" row.
        end_group(proc.pid, settings.RPA_KILL_GRACE_SECONDS, proc)
        for reader in readers:
            reader.read_to_end()
        writer.flush()
        run.finish(RunStatus.CANCELLED, proc.returncode, f"runner interrupted: {type(exc).__name__}: {exc}")
        _discard_spool(run, writer)
        raise
    finally:
        for reader in readers:
            reader.close()
    writer.flush()  # every captured line is stored before the run is marked finished
    run.finish(outcome.status, outcome.exit_code, outcome.error)
    _discard_spool(run, writer)
    # The row is the truth: if someone else finished the run first, report their outcome.
    return Outcome(RunStatus(run.status), run.exit_code, run.error)


def _launch(
    run: WorkflowRun, workflow: Workflow, chain_slug: str, secrets: Mapping[str, str]
) -> tuple[subprocess.Popen[bytes], Spool]:
    """Start the bot writing to a new spool (removed again if the bot does not start)."""
    spool = Spool.new(run.pk)
    stdout, stderr = spool.create()
    try:
        proc = subprocess.Popen(
            build_argv(workflow),
            cwd=workflow.resolved_working_dir(),
            env=build_env(run, workflow, chain_slug, extra=secrets),
            stdin=subprocess.DEVNULL,
            stdout=stdout,  # straight to disk: the bot's output outlives its runner
            stderr=stderr,
            start_new_session=True,  # own process group: timeouts and the run's end reach grandchildren
        )
    except BaseException:
        spool.remove()
        raise
    finally:
        os.close(stdout)  # the bot has its own copies
        os.close(stderr)
    return proc, spool


def _readers(spool: Spool, writer: RunLogWriter) -> list[SpoolReader]:
    out, err = spool.paths
    return [
        SpoolReader(out, writer.stored_offsets[0], writer.add_stdout),
        SpoolReader(err, writer.stored_offsets[1], writer.add_stderr),
    ]


def _discard_spool(run: WorkflowRun, writer: RunLogWriter) -> None:
    """Everything in the spool is stored: remove its files, then forget them."""
    if writer.lost or not run.spool:
        return  # whoever took over removes it when done
    Spool(run.spool).remove()
    run.clear_spool()


def store_spool_rest(run: WorkflowRun) -> int:
    """Store what `run`'s runner did not, from the stored offsets to the end; remove the spool.

    For runs whose runner died (the reaper, the spool sweep): call it once the
    bot's process group is ended (see `kill_orphaned_bot`); this waits for it to
    be gone so nothing is written while the rest is read. Only on the run's host,
    where the files are. Returns the number of lines stored.
    """
    if not run.spool or run.host != socket.gethostname():
        return 0
    deadline = time.monotonic() + GONE_SECONDS
    while _run_group_alive(run) and time.monotonic() < deadline:
        time.sleep(0.02)
    writer = RunLogWriter(
        run,
        run.workflow.slug,
        settings.RPA_LOG_BATCH_SIZE,
        settings.RPA_LOG_FLUSH_SECONDS,
        stored_offsets=(run.stdout_offset, run.stderr_offset),
        redactor=_redactor_for(run.workflow),
    )
    readers = _readers(Spool(run.spool), writer)
    try:
        for reader in readers:
            reader.read_to_end()
    finally:
        for reader in readers:
            reader.close()
    writer.flush()
    _discard_spool(run, writer)
    return writer.stored


def _redactor_for(workflow: Workflow) -> Redactor:
    """The masks of a workflow's secrets for lines stored after its runner died. A value no key
    decrypts any more cannot be masked: then every line is masked rather than one shown."""
    try:
        return Redactor(environment_for(workflow).values())
    except SecretDecryptionError:
        return _MASK_ALL


class _MaskEverything(Redactor):
    def __init__(self) -> None:
        super().__init__(())

    def __bool__(self) -> bool:
        return True

    def redact(self, text: str) -> str:
        return MASK if text else text

    def redact_json(self, value: Any) -> Any:
        return None if value is None else {"redacted": MASK}


_MASK_ALL = _MaskEverything()


def _fail_to_start(run: WorkflowRun, writer: RunLogWriter, exc: Exception, started_at: datetime) -> Outcome:
    error = f"could not start {build_argv(run.workflow)[:1]}: {exc}"
    writer.add_runner_error(error)
    writer.flush()
    run.start(socket.gethostname(), None, os.getpid(), started_at=started_at)
    run.finish(RunStatus.FAILURE, None, error)
    return Outcome(RunStatus.FAILURE, None, error)


def supervise(
    proc: subprocess.Popen[bytes],
    run: WorkflowRun,
    writer: RunLogWriter,
    timeout: int,
    readers: list[SpoolReader],
) -> Outcome:
    """Tail the spool until the bot and what is left of its group are gone and all is read."""
    clock = _Clock(time.monotonic(), timeout, settings.RPA_HEARTBEAT_SECONDS)
    while True:
        read = sum(reader.read() for reader in readers)
        now = time.monotonic()
        _throttle(proc.pid, clock, sum(reader.backlog() for reader in readers))
        if clock.exited_at is None and proc.poll() is not None:
            # The bot ended: so does whatever it left running in its group, whatever its outcome.
            clock.exited_at = now
            _begin_stop(proc.pid, clock, now)
        if clock.group_gone and not read:
            break  # nothing can write any more, and everything written is read
        if clock.exited_at is not None and not clock.group_gone:
            clock.group_gone = not group_alive(proc.pid) or clock.given_up(now)
        _enforce_deadlines(proc, clock, now)
        _beat(proc, run, writer, clock, now)
        writer.flush_if_due(now)
        if writer.lost and not clock.timed_out:
            _stop_finished_elsewhere(proc, clock, now)
        if not read:
            _pause(proc, clock.wait(now, writer))
    for reader in readers:
        reader.read_to_end()
    return _outcome(proc.wait(), clock, writer.last_error)


@dataclass
class _Clock:
    """The supervisor's deadlines: timeout, kill after grace, heartbeat, progress."""

    started: float
    timeout: int
    beat_every: float
    exited_at: float | None = None  # the bot's main process ended
    group_gone: bool = False  # ... and no process of its group is left
    timed_out: bool = False  # the group was told to stop (timeout, or the run was finished elsewhere)
    stopped: bool = False  # ... because the run was finished elsewhere
    term_sent: bool = False
    throttled: bool = False  # the group is stopped (SIGSTOP) until the spool backlog is read
    kill_at: float | None = None
    killed_at: float | None = None
    next_beat: float = 0.0
    progress_written: tuple[int, int] | None = None
    progress_at: float = 0.0

    def __post_init__(self) -> None:
        self.deadline = self.started + self.timeout
        self.next_beat = self.started + self.beat_every

    def given_up(self, now: float) -> bool:
        """SIGKILL was sent long enough ago: stop waiting for a group that will not go."""
        return self.killed_at is not None and now - self.killed_at > GONE_SECONDS

    def wait(self, now: float, writer: RunLogWriter) -> float:
        """Seconds until something is due; at most IDLE_SECONDS, as new output is not announced."""
        due = [self.next_beat]
        if self.kill_at is not None:
            due.append(self.kill_at)
        elif self.exited_at is None and not self.timed_out:
            due.append(self.deadline)
        if writer.unstored:
            due.append(writer.last_flush + writer.flush_seconds)
        if writer.progress != self.progress_written:
            due.append(self.progress_at + PROGRESS_SECONDS)
        return min(IDLE_SECONDS, max(0.0, min(due) - now))


def _throttle(pgid: int, clock: _Clock, backlog: int) -> None:
    """Flow control, as a full pipe gave: a bot that prints faster than its lines are stored is
    stopped (SIGSTOP to its group) once RPA_SPOOL_MAX_BACKLOG_BYTES are unread, and continued
    at half of that. Without it a firehose fills the disk and its run outlasts the bot by hours.
    A group told to end is never stopped again (see `_kill_group`: SIGTERM comes with SIGCONT)."""
    limit = settings.RPA_SPOOL_MAX_BACKLOG_BYTES
    if not clock.throttled and backlog > limit and not clock.term_sent and clock.exited_at is None:
        clock.throttled = _kill_group(pgid, signal.SIGSTOP)
    elif clock.throttled and (backlog <= limit // 2 or clock.term_sent):
        _kill_group(pgid, signal.SIGCONT)
        clock.throttled = False


def _begin_stop(pgid: int, clock: _Clock, now: float) -> None:
    """SIGTERM the group (once); SIGKILL follows after the grace (see `_enforce_deadlines`)."""
    if clock.term_sent:
        return
    clock.term_sent = True
    if _kill_group(pgid, signal.SIGTERM):
        clock.kill_at = now + settings.RPA_KILL_GRACE_SECONDS


def _enforce_deadlines(proc: subprocess.Popen[bytes], clock: _Clock, now: float) -> None:
    if clock.exited_at is None and not clock.timed_out and now >= clock.deadline:
        clock.timed_out = True
        _begin_stop(proc.pid, clock, now)
    if clock.kill_at is not None and now >= clock.kill_at:
        _kill_group(proc.pid, signal.SIGKILL)
        clock.kill_at, clock.killed_at = None, now


def _stop_finished_elsewhere(proc: subprocess.Popen[bytes], clock: _Clock, now: float) -> None:
    clock.timed_out, clock.stopped = True, True
    _begin_stop(proc.pid, clock, now)


def _beat(
    proc: subprocess.Popen[bytes], run: WorkflowRun, writer: RunLogWriter, clock: _Clock, now: float
) -> None:
    """Renew the lease on schedule; write new progress at most once per PROGRESS_SECONDS."""
    progress_due = writer.progress != clock.progress_written and now - clock.progress_at >= PROGRESS_SECONDS
    if now < clock.next_beat and not progress_due:
        return
    if not run.heartbeat(writer.progress) and not clock.timed_out:
        # Someone finished the run under us (cancelled, or reaped as abandoned): stop the bot.
        _stop_finished_elsewhere(proc, clock, now)
    clock.next_beat = now + clock.beat_every
    clock.progress_written, clock.progress_at = writer.progress, now


def _pause(proc: subprocess.Popen[bytes], seconds: float) -> None:
    """Sleep, waking up early if the bot's main process ends."""
    if proc.returncode is not None:
        time.sleep(seconds)
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=max(seconds, 0.001))


def _kill_group(pgid: int, sig: int) -> bool:
    """Signal a process group; False when it has no process left."""
    try:
        os.killpg(pgid, sig)
        if sig == signal.SIGTERM:
            os.killpg(pgid, signal.SIGCONT)  # a throttled (stopped) process acts on SIGTERM once continued
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists, but it is not ours to stop
    return True


def group_members(pgid: int) -> list[int]:
    """Pids of the live processes of process group `pgid` (zombies are dead: they only
    wait for a parent to collect them, which a container's init may never do)."""
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b") ", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if fields[0] != b"Z" and int(fields[2]) == pgid:  # state, ppid, pgrp
            members.append(int(name))
    return members


def group_alive(pgid: int) -> bool:
    """Whether process group `pgid` has a live process (a cheap signal 0 first, /proc if needed)."""
    if not _kill_group(pgid, 0):
        return False
    return not os.path.isdir("/proc") or bool(group_members(pgid))


def wait_gone(pgid: int, seconds: float) -> bool:
    """Wait up to `seconds` for process group `pgid` to have no live process; whether it has none."""
    deadline = time.monotonic() + seconds
    while group_alive(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def end_group(pgid: int, grace: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM process group `pgid`, SIGKILL it after `grace` seconds, and wait for it to be gone."""
    deadline = time.monotonic() + grace
    _kill_group(pgid, signal.SIGTERM)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)  # collect the main process
    if not wait_gone(pgid, max(0.0, deadline - time.monotonic())):
        _kill_group(pgid, signal.SIGKILL)
        if proc is not None:
            proc.wait()
        wait_gone(pgid, GONE_SECONDS)


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

    When a runner dies (kill -9), its bot lives on in its own session; so may
    a grandchild after the bot itself ended. The group id alone may have been
    reused since, so a process of the group must prove it is this run's: its
    environment holds RPA_RUN_ID=<run id>.
    """
    if run.pid is None or not _run_group_alive(run):
        return False
    try:
        os.killpg(run.pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _run_group_alive(run: WorkflowRun) -> bool:
    """Whether a live process of this run's bot (its process group, on this host) is left."""
    if run.pid is None or run.host != socket.gethostname() or not _kill_group(run.pid, 0):
        return False
    return any(_is_process_of_run(pid, run.pk) for pid in group_members(run.pid))


def _is_process_of_run(pid: int, run_id: int) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read().split(b"\0")
    except OSError:
        return False  # gone already (or not ours to read)
    return f"RPA_RUN_ID={run_id}".encode() in environ
