"""The log export (DESIGN §6): a ZIP of execution_logs.json, error_logs.json and metrics.json.

Streamed in constant memory, however many entries the range holds:

- the database renders each entry as a JSON object text (timestamps as ISO
  8601 UTC, metadata spliced as stored), so Python never decodes and
  re-encodes rows, only joins texts a chunk at a time;
- the ZIP is written with `zipfile` onto a non-seekable sink (data descriptors,
  zip64 sizes) whose bytes are handed on as soon as the compressor emits them;
- error_logs.json is the ERROR/CRITICAL subset of the same single pass: a ZIP
  stream holds one open member at a time, so those rows wait in a spooled temp
  file (on disk beyond 1 MiB) until execution_logs.json is closed. One pass
  also means the two files always agree, even while bots keep logging.

`stream_zip` feeds StreamingHttpResponse (admin, API); `write_zip` the command.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
import time
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from django.db import DatabaseError, NotSupportedError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Count, DurationField, ExpressionWrapper, F, Func, TextField, Window
from django.db.models.sql.compiler import SQLCompiler
from django.utils import timezone

from chains.models import FINISHED_STATUSES, RunStatus, Workflow, WorkflowRun, success_rate
from logs.models import ERROR_LEVELS, Level, LogEntry, LogEntryQuerySet
from rpa_monitor.errors import InvalidDateRangeError, LogExportError, RPAMonitorError
from rpa_monitor.lib.dates import DateRange

EXECUTION_LOGS = "execution_logs.json"
ERROR_LOGS = "error_logs.json"
METRICS = "metrics.json"
FILES = (EXECUTION_LOGS, ERROR_LOGS, METRICS)
FIELDS = ("id", "timestamp", "level", "component", "message", "workflow_id", "node_id", "run_id", "metadata")
PERCENTILES = (50, 95, 99)

# Rows per database round trip and per compressor call: big enough that per-call
# overhead vanishes, small enough (~0.5 MB of text) to keep memory flat.
CHUNK_ROWS = 2000
# Error rows wait in memory up to this size, then on disk.
SPOOL_BYTES = 1 << 20
COPY_BYTES = 1 << 16
# Level 1 deflates JSON logs to ~1/6 at several times the speed of the default 6;
# the export is CPU-bound, the download rarely is.
COMPRESSLEVEL = 1
_ERROR_SET = frozenset(ERROR_LEVELS)
# Anything that goes wrong while producing the export, as opposed to in its input.
_FAILURES = (DatabaseError, OSError, ValueError, TypeError, zlib.error, zipfile.LargeZipFile)


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    entries: int
    errors: int
    bytes: int

    def __str__(self) -> str:
        counts = f"{self.entries:,} entries ({self.errors:,} errors)"
        return f"exported {counts}, {self.bytes:,} bytes, to {self.path}"


def stream_zip(date_range: DateRange, entries: LogEntryQuerySet | None = None) -> Iterator[bytes]:
    """The ZIP of `entries` (default: all) inside `date_range`, as chunks of bytes.

    Bad input raises here, before any byte is produced (InvalidDateRangeError,
    LogExportError); the query has already run by the time this returns, so a
    database failure raises here too rather than in the middle of a download.
    """
    export = _Export(date_range, entries)
    chunks = export.chunks()
    first = next(chunks)  # runs the query: its failures surface before the response starts
    return itertools.chain([first], chunks)


def write_zip(
    path: str | os.PathLike[str], date_range: DateRange, entries: LogEntryQuerySet | None = None
) -> ExportSummary:
    """Write the ZIP to `path` atomically: a temp file beside it, renamed when complete.

    On any failure the temp file is removed and an existing file at `path` is
    left as it was.
    """
    target = Path(path)
    export = _Export(date_range, entries)
    if target.is_dir():
        raise LogExportError(f"{target} is a directory", field="output")
    try:
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    except OSError as exc:
        raise LogExportError(f"cannot write {target}: {exc.strerror}", field="output") from None
    tmp = Path(tmp_name)
    try:
        size = 0
        with os.fdopen(fd, "wb") as out:
            for chunk in export.chunks():
                out.write(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise LogExportError(f"cannot write {target}: {exc}", field="output") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return ExportSummary(target, export.count, export.errors, size)


def filename(date_range: DateRange) -> str:
    """A download name saying what the ZIP covers, e.g. rpa-logs-20260310T0000-20260311T0000.zip."""

    def stamp(moment: datetime | None, open_side: str) -> str:
        return f"{timezone.localtime(moment):%Y%m%dT%H%M}" if moment else open_side

    return f"rpa-logs-{stamp(date_range.start, 'beginning')}-{stamp(date_range.end, 'now')}.zip"


def iso_utc(moment: datetime) -> str:
    """The export's timestamp format (the same as the database renders for entries)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class EntryJSON(Func):
    """A log entry as JSON object text, rendered by the database.

    Decoding each row's timestamp and metadata into Python objects and encoding
    them back costs several times the rest of the export; here the stored
    metadata text is spliced in as is and strings are quoted by the database's
    own JSON functions.
    """

    output_field = TextField()

    def __init__(self) -> None:
        super().__init__(*(F(name) for name in FIELDS))

    def as_sql(  # type: ignore[override]
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, *args: Any, **extra: Any
    ) -> Any:
        raise NotSupportedError(f"the log export supports SQLite and PostgreSQL, not {connection.vendor}")

    def _columns(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> tuple[list[str], list[Any]]:
        sqls: list[str] = []
        params: list[Any] = []
        for expression in self.get_source_expressions():
            sql, sql_params = compiler.compile(expression)
            sqls.append(sql)
            params.extend(sql_params)
        return sqls, params

    def as_sqlite(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any) -> Any:
        pk, ts, level, component, message, workflow_id, node_id, run_id, metadata = (
            cols := self._columns(compiler, connection)
        )[0]
        # Django stores SQLite datetimes as naive UTC text, with microseconds only
        # when non-zero: pad to a fixed width, then make it ISO 8601 UTC.
        sql = (
            f"""'{{"id":' || {pk}"""
            f""" || ',"timestamp":"' || replace(substr({ts} || '.000000', 1, 26), ' ', 'T') || 'Z"'"""
            f""" || ',"level":' || json_quote({level}) || ',"component":' || json_quote({component})"""
            f""" || ',"message":' || json_quote({message})"""
            f""" || ',"workflow_id":' || json_quote({workflow_id})"""
            f""" || ',"node_id":' || json_quote({node_id}) || ',"run_id":' || coalesce({run_id}, 'null')"""
            f""" || ',"metadata":' || coalesce({metadata}, 'null') || '}}'"""
        )
        return sql, cols[1]

    def as_postgresql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any) -> Any:
        pk, ts, level, component, message, workflow_id, node_id, run_id, metadata = (
            cols := self._columns(compiler, connection)
        )[0]
        sql = (
            f"""'{{"id":' || {pk}::text || ',"timestamp":"' """
            f"""|| to_char({ts} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
            f""" || '","level":' || to_json({level})::text || ',"component":' || to_json({component})::text"""
            f""" || ',"message":' || to_json({message})::text"""
            f""" || ',"workflow_id":' || to_json({workflow_id})::text"""
            f""" || ',"node_id":' || to_json({node_id})::text"""
            f""" || ',"run_id":' || coalesce({run_id}::text, 'null')"""
            f""" || ',"metadata":' || coalesce({metadata}::text, 'null') || '}}'"""
        )
        return sql, cols[1]


def _member(name: str) -> zipfile.ZipInfo:
    # zipfile dates members opened for writing by name 1980-01-01; unzip shows this date.
    info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info._compresslevel = COMPRESSLEVEL  # type: ignore[attr-defined]  # what open() by name sets
    info.external_attr = 0o100644 << 16  # a regular file, -rw-r--r-- when extracted
    return info


class _Sink:
    """A write-only, non-seekable file: zipfile then streams (data descriptors after each member)."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


class _Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


class _JSONArray:
    """Writes a JSON array element by element, a chunk of already-encoded elements at a time."""

    def __init__(self, out: _Writable) -> None:
        self.out = out
        self.empty = True
        out.write(b"[")

    def extend(self, elements: list[str]) -> None:
        if not elements:
            return
        self.out.write(("\n" if self.empty else ",\n").encode() + ",\n".join(elements).encode())
        self.empty = False

    def close(self) -> None:
        self.out.write(b"]\n" if self.empty else b"\n]\n")


class _Export:
    def __init__(self, date_range: DateRange, entries: LogEntryQuerySet | None) -> None:
        start, end = date_range.start, date_range.end
        if start is not None and end is not None and start > end:
            raise InvalidDateRangeError(f"start ({start.isoformat()}) is after end ({end.isoformat()})")
        if entries is not None and entries.model is not LogEntry:
            raise LogExportError(
                f"cannot export {entries.model.__name__} rows as log entries", field="entries"
            )
        self.date_range = date_range
        base = LogEntry.objects.all() if entries is None else entries
        self.entries = base.in_range(start, end)
        self.count = 0
        self.errors = 0
        self.levels: Counter[str] = Counter()

    def chunks(self) -> Iterator[bytes]:
        try:
            yield from self._chunks()
        except RPAMonitorError:
            raise
        except _FAILURES as exc:
            raise LogExportError(f"the log export failed: {exc}") from exc

    def _chunks(self) -> Iterator[bytes]:
        sink = _Sink()
        with (
            tempfile.SpooledTemporaryFile(SPOOL_BYTES) as spool,
            zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED, compresslevel=COMPRESSLEVEL) as zf,
        ):
            with zf.open(_member(EXECUTION_LOGS), "w", force_zip64=True) as member:
                entries, errors = _JSONArray(member), _JSONArray(spool)
                for batch in self._batches():
                    entries.extend([doc for _, doc in batch])
                    errors.extend([doc for level, doc in batch if level in _ERROR_SET])
                    self.levels.update([level for level, _ in batch])
                    self.count += len(batch)
                    if data := sink.take():
                        yield data
                entries.close()
                errors.close()
            self.errors = self.levels["ERROR"] + self.levels["CRITICAL"]
            with zf.open(_member(ERROR_LOGS), "w", force_zip64=True) as member:
                spool.seek(0)
                while block := spool.read(COPY_BYTES):
                    member.write(block)
                    if data := sink.take():
                        yield data
            zf.writestr(_member(METRICS), json.dumps(self.metrics(), indent=2) + "\n")
        yield sink.take()

    def _batches(self) -> Iterator[list[tuple[str, str]]]:
        rows: Iterator[tuple[str, str]] = (
            self.entries.order_by("timestamp", "id")
            .annotate(entry_json=EntryJSON())
            .values_list("level", "entry_json")
            .iterator(chunk_size=CHUNK_ROWS)
        )
        while batch := list(itertools.islice(rows, CHUNK_ROWS)):
            yield batch

    def metrics(self) -> dict[str, Any]:
        start, end = self.date_range.start, self.date_range.end
        return {
            "generated_at": iso_utc(timezone.now()),
            "range": {
                "start": iso_utc(start) if start else None,
                "end": iso_utc(end) if end else None,
            },
            "entries": {"total": self.count, "errors": self.errors},
            "levels": {level: self.levels[level] for level in Level.values},
            "workflows": workflow_metrics(start, end),
        }


def workflow_metrics(start: datetime | None, end: datetime | None) -> dict[str, dict[str, Any]]:
    """Per workflow, over its runs created in [start, end): executions by status,
    success rate (percent of finished runs, cancelled ones aside) and duration
    percentiles of its finished runs, in seconds."""
    runs = WorkflowRun.objects.order_by()
    if start is not None:
        runs = runs.filter(created_at__gte=start)
    if end is not None:
        runs = runs.filter(created_at__lt=end)
    by_workflow: dict[int, dict[str, int]] = {}
    for workflow_id, status, n in runs.values_list("workflow_id", "status").annotate(n=Count("id")):
        by_workflow.setdefault(workflow_id, {})[status] = n
    slugs = dict(Workflow.objects.filter(pk__in=by_workflow).values_list("pk", "slug"))
    durations = _duration_percentiles(runs)
    result = {}
    for workflow_id, counts in sorted(by_workflow.items(), key=lambda item: slugs[item[0]]):
        finished = {status: n for status, n in counts.items() if status in FINISHED_STATUSES}
        result[slugs[workflow_id]] = {
            "executions": {status: counts.get(status, 0) for status in RunStatus.values},
            "total": sum(counts.values()),
            "success_rate": success_rate(finished),
            "duration_seconds": durations.get(workflow_id, {"count": 0, **dict.fromkeys(_KEYS)}),
        }
    return result


_KEYS = tuple(f"p{p}" for p in PERCENTILES)


def _duration_percentiles(runs: Any) -> dict[int, dict[str, Any]]:
    """{workflow pk: {"count", "p50", "p95", "p99"}} in one ordered pass, never holding the durations."""
    ordered = (
        runs.filter(status__in=FINISHED_STATUSES, started_at__isnull=False, finished_at__isnull=False)
        .annotate(
            duration=ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField()),
            # Each row carries its workflow's count, from the same query (a separate
            # COUNT could disagree with the rows when a run finishes in between).
            n=Window(Count("id"), partition_by=[F("workflow_id")]),
        )
        .order_by("workflow_id", "duration")
        .values_list("workflow_id", "n", "duration")
        .iterator(chunk_size=CHUNK_ROWS)
    )
    result = {}
    for workflow_id, group in itertools.groupby(ordered, key=lambda row: row[0]):
        picked: dict[int, float] = {}
        n = 0
        wanted: set[int] = set()
        for index, (_, n, duration) in enumerate(group):
            if not index:
                wanted = _ranks(n)
            if index in wanted:
                picked[index] = max(0.0, duration.total_seconds())  # clock steps: never negative
        result[workflow_id] = {"count": n, **_percentiles(picked, n)}
    return result


def _ranks(n: int) -> set[int]:
    """The indexes (into n sorted values) that the percentiles interpolate between."""
    ranks = [p / 100 * (n - 1) for p in PERCENTILES]
    return {int(r) for r in ranks} | {min(int(r) + 1, n - 1) for r in ranks}


def _percentiles(picked: dict[int, float], n: int) -> dict[str, float]:
    """Linear interpolation between closest ranks (numpy's default; statistics.quantiles
    with method="inclusive"), from the values at the indexes `_ranks(n)` named."""
    result = {}
    for p in PERCENTILES:
        rank = p / 100 * (n - 1)
        low, high = int(rank), min(int(rank) + 1, n - 1)
        result[f"p{p}"] = round(picked[low] + (picked[high] - picked[low]) * (rank - low), 6)
    return result
