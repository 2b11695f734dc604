"""The log export (DESIGN §6): properties 13-15, error_logs.json, metrics.json, the
export_logs command and the admin's "Download ZIP". Constant memory is bench/export.py's job."""

from __future__ import annotations

import io
import json
import statistics
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Permission, User
from django.db import DatabaseError, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from chains.models import RunStatus, Workflow, WorkflowRun
from logs import export
from logs.export import stream_zip, write_zip
from logs.models import LogEntry, LogRow
from rpa_monitor.errors import InvalidDateRangeError, LogExportError
from rpa_monitor.lib.dates import DateRange
from rpa_monitor.test import manage

pytestmark = pytest.mark.django_db

FILES = ["error_logs.json", "execution_logs.json", "metrics.json"]
LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
ERRORS = {"ERROR", "CRITICAL"}
ZONE = "Europe/Berlin"  # not UTC, with DST: day bounds are local midnights
CHANGELIST = "admin:logs_logentry_changelist"
DOWNLOAD = "admin:logs_logentry_download"


@contextmanager
def rolled_back() -> Iterator[None]:
    """Each hypothesis example starts from the test's empty tables and leaves nothing behind."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def download(date_range: DateRange | None = None, entries: Any = None) -> bytes:
    return b"".join(stream_zip(date_range or DateRange(), entries))


def opened(data: bytes) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(data))


def read(data: bytes, name: str) -> Any:
    return json.loads(opened(data).read(name))


def ids(data: bytes, name: str = "execution_logs.json") -> list[int]:
    return [item["id"] for item in read(data, name)]


def entry(message: str, at: datetime | None = None, **fields: Any) -> LogEntry:
    fields.setdefault("component", "bot")
    return LogEntry.objects.create(message=message, timestamp=at or timezone.now(), **fields)


def as_exported(e: LogEntry) -> dict[str, Any]:
    """What the export must say about an entry, from the ORM's own reading of the row."""
    return {
        "id": e.pk,
        "timestamp": e.timestamp,
        "level": e.level,
        "component": e.component,
        "message": e.message,
        "workflow_id": e.workflow_id,
        "node_id": e.node_id,
        "run_id": e.run_id,
        "metadata": e.metadata,
    }


def parsed(item: dict[str, Any]) -> dict[str, Any]:
    timestamp = datetime.fromisoformat(item["timestamp"])
    assert timestamp.utcoffset() == timedelta(0), item["timestamp"]  # ISO 8601, UTC
    return {**item, "timestamp": timestamp}


# -- Properties 13 and 14: a valid ZIP holding exactly the three JSON files ---------

UNICODE = st.characters(exclude_categories=["Cs"])
CHARS = st.one_of(st.sampled_from("\x00\x01\n\r\t \\\"'%_{}[],:é✓🙂\u2028\x7f"), UNICODE)
TEXT = st.text(CHARS, max_size=40)
json_values = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), TEXT
    ),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=8,
)
log_rows = st.lists(
    st.builds(
        LogRow,
        timestamp=st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)),
        level=st.sampled_from(LEVELS),
        component=st.text(CHARS, min_size=1, max_size=20),
        message=TEXT,
        workflow_id=st.sampled_from(["", "login", "submit"]),
        node_id=TEXT,
        metadata=st.dictionaries(TEXT, json_values, max_size=4),
        run_id=st.none(),
    ),
    max_size=25,
)
# Small chunks and spool sizes put array commas and the error spool's disk spill under test.
chunk_rows = st.integers(1, 7)
spool_bytes = st.sampled_from([16, 1 << 20])


@contextmanager
def chunked(rows: int, spool: int) -> Iterator[None]:
    with mock.patch.object(export, "CHUNK_ROWS", rows), mock.patch.object(export, "SPOOL_BYTES", spool):
        yield


@given(rows=log_rows, chunk=chunk_rows, spool=spool_bytes)
def test_property_13_the_download_is_a_valid_zip(rows: list[LogRow], chunk: int, spool: int) -> None:
    with rolled_back(), chunked(chunk, spool):
        LogEntry.objects.ingest(rows)
        data = download()
        assert zipfile.is_zipfile(io.BytesIO(data))
        with opened(data) as zf:
            assert zf.testzip() is None
            for info in zf.infolist():
                assert info.compress_type == zipfile.ZIP_DEFLATED
                assert len(zf.read(info)) == info.file_size


@given(rows=log_rows, chunk=chunk_rows, spool=spool_bytes)
def test_property_14_it_holds_exactly_the_three_json_files(
    rows: list[LogRow], chunk: int, spool: int
) -> None:
    with rolled_back(), chunked(chunk, spool):
        LogEntry.objects.ingest(rows)
        data = download()
        zf = opened(data)
        assert sorted(zf.namelist()) == FILES
        documents = {name: json.loads(zf.read(name).decode("utf-8")) for name in FILES}

        stored = sorted(LogEntry.objects.all(), key=lambda e: (e.timestamp, e.pk))
        assert [parsed(item) for item in documents["execution_logs.json"]] == [as_exported(e) for e in stored]
        assert [parsed(item) for item in documents["error_logs.json"]] == [
            as_exported(e) for e in stored if e.level in ERRORS
        ]
        metrics = documents["metrics.json"]
        assert metrics["entries"] == {"total": len(rows), "errors": sum(r.level in ERRORS for r in rows)}
        assert metrics["levels"] == {level: sum(r.level == level for r in rows) for level in LEVELS}


# -- Property 15: every exported entry lies inside the range, none inside is missing --

DAY = date(2026, 3, 29)  # Berlin springs forward that night: days of 23, 24 and 25 hours around it
moments = st.builds(
    lambda days, seconds, micro: (
        datetime.combine(DAY + timedelta(days=days), time.min)
        + timedelta(seconds=seconds, microseconds=micro)
    ),
    st.integers(-2, 2),
    st.integers(0, 86399),
    st.sampled_from([0, 1, 999999]),
)
# A bound as typed by a user: a bare date, a naive datetime (TIME_ZONE) or one with an offset.
bounds = st.one_of(
    st.none(),
    st.builds(lambda m: ("date", m.date().isoformat()), moments),
    st.builds(lambda m: ("naive", m.isoformat(timespec="minutes")), moments),
    st.builds(lambda m: ("naive", m.isoformat()), moments),
    st.builds(
        lambda m, hours: (
            "aware",
            m.replace(tzinfo=UTC).astimezone(ZoneInfo(f"Etc/GMT{-hours:+d}")).isoformat(),
        ),
        moments,
        st.integers(-12, 12),
    ),
)
NEAR = [0, 1, -1, 1_000_000, -1_000_000, 3600 * 10**6, -3600 * 10**6, 86400 * 10**6, -86400 * 10**6]


def oracle(bound: tuple[str, str], *, end: bool) -> tuple[datetime, Any]:
    """The bound's moment, and a test saying whether an entry's timestamp is on the inside
    of it, computed without the code under test."""
    kind, text = bound
    zone = ZoneInfo(ZONE)
    if kind == "date":
        day = date.fromisoformat(text)
        if end:  # a bare end date includes that whole (local) day
            return datetime.combine(day + timedelta(days=1), time.min, zone), (
                lambda ts: ts.astimezone(zone).date() <= day
            )
        return datetime.combine(day, time.min, zone), lambda ts: ts.astimezone(zone).date() >= day
    moment = datetime.fromisoformat(text)
    if kind == "naive":
        moment = moment.replace(tzinfo=zone)
    return moment, (lambda ts: ts < moment) if end else (lambda ts: ts >= moment)


@given(
    start=bounds,
    end=bounds,
    anchors=st.lists(st.tuples(st.sampled_from(["start", "end", "any"]), st.sampled_from(NEAR)), max_size=25),
    others=st.lists(moments, max_size=5),
    levels=st.lists(st.sampled_from(LEVELS), min_size=30, max_size=30),
)
def test_property_15_every_exported_entry_lies_inside_the_range_and_none_is_missing(
    settings: Any,
    start: tuple[str, str] | None,
    end: tuple[str, str] | None,
    anchors: list[tuple[str, int]],
    others: list[datetime],
    levels: list[str],
) -> None:
    settings.TIME_ZONE = ZONE
    zone = ZoneInfo(ZONE)
    start_at, after_start = oracle(start, end=False) if start else (None, lambda ts: True)
    end_at, before_end = oracle(end, end=True) if end else (None, lambda ts: True)
    base = datetime.combine(DAY, time(12), zone)
    points = {"start": start_at or base, "end": end_at or base, "any": base}
    stamps = [points[name] + timedelta(microseconds=delta) for name, delta in anchors]
    stamps += [moment.replace(tzinfo=zone) for moment in others]
    with rolled_back():
        LogEntry.objects.ingest(
            [LogRow(ts, levels[i % 30], "bot", f"entry {i}") for i, ts in enumerate(stamps)]
        )
        end_is_day = end is not None and end[0] == "date"
        inverted = (
            start_at is not None
            and end_at is not None
            and (
                start_at > end_at or (end_is_day and start_at >= end_at)  # start on or after the end day
            )
        )
        if inverted:
            with pytest.raises(InvalidDateRangeError):
                DateRange.parse(start and start[1], end and end[1])
            return
        date_range = DateRange.parse(start and start[1], end and end[1])
        data = download(date_range)

        stored = sorted(LogEntry.objects.all(), key=lambda e: (e.timestamp, e.pk))
        inside = [e for e in stored if after_start(e.timestamp) and before_end(e.timestamp)]
        exported = read(data, "execution_logs.json")
        assert [e["id"] for e in exported] == [e.pk for e in inside]
        for item in exported:  # inside, by the exported timestamp itself
            stamp = datetime.fromisoformat(item["timestamp"])
            assert after_start(stamp)
            assert before_end(stamp)
        assert ids(data, "error_logs.json") == [e.pk for e in inside if e.level in ERRORS]
        assert read(data, "metrics.json")["entries"]["total"] == len(inside)


def test_it_includes_the_whole_day_of_a_bare_end_date(settings: Any) -> None:
    settings.TIME_ZONE = ZONE
    zone = ZoneInfo(ZONE)
    for stamp in [
        "2026-03-09T23:59:59.999999",
        "2026-03-10T00:00",
        "2026-03-10T23:59:59.999999",
        "2026-03-11",
    ]:
        entry(stamp, datetime.fromisoformat(stamp).replace(tzinfo=zone))
    data = download(DateRange.parse("2026-03-10", "2026-03-10"))
    assert [item["message"] for item in read(data, "execution_logs.json")] == [
        "2026-03-10T00:00",
        "2026-03-10T23:59:59.999999",
    ]
    assert read(data, "metrics.json")["range"] == {
        "start": "2026-03-09T23:00:00.000000Z",
        "end": "2026-03-10T23:00:00.000000Z",
    }


# -- error_logs.json and the selection ---------------------------------------------


def test_it_puts_exactly_the_error_and_critical_entries_of_the_selection_in_error_logs() -> None:
    for level in LEVELS:
        for component in ("bot", "runner"):
            entry(f"{level} {component}", level=level, component=component)
    data = download(entries=LogEntry.objects.matching(component="bot"))
    assert [item["message"] for item in read(data, "execution_logs.json")] == [f"{lv} bot" for lv in LEVELS]
    assert [item["message"] for item in read(data, "error_logs.json")] == ["ERROR bot", "CRITICAL bot"]


def test_it_exports_empty_arrays_when_nothing_matches() -> None:
    entry("too old", datetime(2020, 1, 1, tzinfo=UTC))
    data = download(DateRange.parse("2026-01-01", None))
    assert read(data, "execution_logs.json") == []
    assert read(data, "error_logs.json") == []
    assert read(data, "metrics.json")["entries"] == {"total": 0, "errors": 0}


def test_it_orders_entries_by_timestamp_then_id() -> None:
    now = timezone.now()
    later, first, second = entry("later", now), entry("a", now - timedelta(1)), entry("b", now - timedelta(1))
    assert ids(download()) == [first.pk, second.pk, later.pk]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, ["match", "info", "other component", "other workflow", "other run", "plain"]),
        ({"level": "ERROR"}, ["match", "other component", "other workflow", "other run", "plain"]),
        ({"component": "runner"}, ["other component"]),
        ({"workflow_id": "submit"}, ["other workflow"]),
        ({"q": "NEEDLE"}, ["match", "info", "other component", "other workflow", "other run"]),
        (
            {"level": "ERROR", "component": "bot", "workflow_id": "login", "q": "needle"},
            ["match", "other run"],
        ),
    ],
)
def test_it_narrows_by_each_filter_given(filters: dict[str, Any], expected: list[str]) -> None:
    login = Workflow.objects.create(slug="login", name="login", command=["true"])
    run, other = (WorkflowRun.objects.create(workflow=login) for _ in range(2))
    base: dict[str, Any] = {"level": "ERROR", "component": "bot", "workflow_id": "login", "run": run}
    rows: list[tuple[str, dict[str, Any]]] = [
        ("match", {}),
        ("info", {"level": "INFO"}),
        ("other component", {"component": "runner"}),
        ("other workflow", {"workflow_id": "submit"}),
        ("other run", {"run": other}),
    ]
    for message, changes in rows:
        entry(f"{message} (Needle)", **{**base, **changes})
    entry("plain", **base)
    matching = LogEntry.objects.matching(**filters)
    assert sorted(e.message.removesuffix(" (Needle)") for e in matching) == sorted(expected)
    assert [e.message for e in LogEntry.objects.matching(run_id=other.pk)] == ["other run (Needle)"]


# -- metrics.json -------------------------------------------------------------------


def runs(workflow: Workflow, created: datetime, *specs: tuple[str, float | None]) -> None:
    """One run per (status, duration in seconds or None for never started)."""
    for status, seconds in specs:
        started = None if seconds is None else created
        finished = (
            None
            if seconds is None or status in ("queued", "running")
            else created + timedelta(seconds=seconds)
        )
        WorkflowRun.objects.create(
            workflow=workflow, status=status, created_at=created, started_at=started, finished_at=finished
        )


def test_it_sums_up_levels_executions_success_rates_and_durations_in_metrics() -> None:
    inside, outside = datetime(2026, 3, 10, 12, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)
    login = Workflow.objects.create(slug="login", name="login", command=["true"])
    submit = Workflow.objects.create(slug="submit", name="submit", command=["true"])
    Workflow.objects.create(slug="idle", name="idle", command=["true"])
    runs(login, inside, *[("success", float(s)) for s in range(1, 9)], ("failure", 9.0), ("timeout", 10.0))
    runs(login, inside, ("cancelled", None), ("running", 0.0))
    runs(login, outside, ("failure", 1000.0))  # created before the range: not counted
    runs(submit, inside, ("queued", None))
    for level, n in [("INFO", 3), ("ERROR", 2), ("CRITICAL", 1)]:
        for i in range(n):
            entry(f"{level} {i}", inside, level=level)

    metrics = read(download(DateRange.parse("2026-03-10", "2026-03-10")), "metrics.json")

    assert metrics["range"] == {"start": "2026-03-10T00:00:00.000000Z", "end": "2026-03-11T00:00:00.000000Z"}
    assert metrics["entries"] == {"total": 6, "errors": 3}
    assert metrics["levels"] == {"DEBUG": 0, "INFO": 3, "WARNING": 0, "ERROR": 2, "CRITICAL": 1}
    assert list(metrics["workflows"]) == ["login", "submit"]
    login_metrics = metrics["workflows"]["login"]
    assert login_metrics["executions"] == {
        "queued": 0,
        "running": 1,
        "success": 8,
        "failure": 1,
        "timeout": 1,
        "cancelled": 1,
        "abandoned": 0,
    }
    assert login_metrics["total"] == 12
    assert login_metrics["success_rate"] == pytest.approx(
        80.0
    )  # 8 of 10 decided; cancelled and running aside
    # Durations 1..10 s: linear interpolation between closest ranks.
    assert login_metrics["duration_seconds"] == {"count": 10, "p50": 5.5, "p95": 9.55, "p99": 9.91}
    assert metrics["workflows"]["submit"] == {
        "executions": {**dict.fromkeys(RunStatus.values, 0), "queued": 1},
        "total": 1,
        "success_rate": None,
        "duration_seconds": {"count": 0, "p50": None, "p95": None, "p99": None},
    }


@given(milliseconds=st.lists(st.integers(0, 10**8), min_size=1, max_size=40))
def test_it_computes_duration_percentiles_as_statistics_quantiles_inclusive(milliseconds: list[int]) -> None:
    with rolled_back():
        workflow = Workflow.objects.create(slug="timed", name="timed", command=["true"])
        created = datetime(2026, 3, 10, tzinfo=UTC)
        runs(workflow, created, *[("success", ms / 1000) for ms in milliseconds])
        durations = read(download(), "metrics.json")["workflows"]["timed"]["duration_seconds"]
    seconds = [ms / 1000 for ms in milliseconds]
    cuts = statistics.quantiles(seconds, n=100, method="inclusive") if len(seconds) > 1 else [seconds[0]] * 99
    assert durations["count"] == len(seconds)
    for p in (50, 95, 99):
        assert durations[f"p{p}"] == pytest.approx(cuts[p - 1], abs=1e-6)


# -- errors -------------------------------------------------------------------------


def test_it_refuses_a_range_whose_start_is_after_its_end_before_any_byte() -> None:
    with pytest.raises(InvalidDateRangeError) as caught:
        stream_zip(DateRange(datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)))
    assert caught.value.field == "start"


def test_it_refuses_a_queryset_of_another_model() -> None:
    with pytest.raises(LogExportError):
        stream_zip(DateRange(), Workflow.objects.all())  # type: ignore[arg-type]


def test_it_raises_a_database_failure_as_log_export_error_before_the_download_starts() -> None:
    entry("x")
    with (
        mock.patch.object(export._Export, "_batches", side_effect=DatabaseError("disk I/O error")),
        pytest.raises(LogExportError, match="disk I/O error"),
    ):
        stream_zip(DateRange())


def test_it_writes_the_file_atomically_and_leaves_nothing_on_failure(tmp_path: Path) -> None:
    entry("x", level="ERROR")
    target = tmp_path / "out.zip"
    summary = write_zip(target, DateRange())
    assert (summary.entries, summary.errors, summary.bytes) == (1, 1, target.stat().st_size)
    assert opened(target.read_bytes()).testzip() is None
    before = target.read_bytes()

    def failing(self: Any) -> Iterator[list[tuple[str, str]]]:
        yield [("INFO", '{"id": 1}')]
        raise DatabaseError("connection lost")

    with mock.patch.object(export._Export, "_batches", failing), pytest.raises(LogExportError):
        write_zip(target, DateRange())
    assert [p.name for p in tmp_path.iterdir()] == ["out.zip"]
    assert target.read_bytes() == before  # the previous export is untouched


def test_it_refuses_an_output_in_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(LogExportError) as caught:
        write_zip(tmp_path / "missing" / "out.zip", DateRange())
    assert caught.value.field == "output"


# -- manage.py export_logs (real processes) -----------------------------------------


def test_it_exports_with_the_command(transactional_db: None, tmp_path: Path) -> None:
    entry("before", datetime(2026, 3, 9, 23, 59, tzinfo=UTC), level="ERROR")
    entry("first", datetime(2026, 3, 10, tzinfo=UTC), level="ERROR")
    entry("second", datetime(2026, 3, 10, 23, 59, tzinfo=UTC))
    entry("runner", datetime(2026, 3, 10, 12, tzinfo=UTC), component="runner")
    entry("after", datetime(2026, 3, 11, tzinfo=UTC))
    output = tmp_path / "logs.zip"
    result = manage("export_logs", "--start", "2026-03-10", "--end", "2026-03-10", "--output", str(output))
    assert result.returncode == 0, result.stderr
    size = output.stat().st_size
    assert result.stdout.strip() == f"exported 3 entries (1 errors), {size:,} bytes, to {output}"
    data = output.read_bytes()
    assert opened(data).testzip() is None
    assert [item["message"] for item in read(data, "execution_logs.json")] == ["first", "runner", "second"]
    assert [item["message"] for item in read(data, "error_logs.json")] == ["first"]

    result = manage("export_logs", "--component", "bot", "--level", "error", "--output", str(output))
    assert result.returncode == 0, result.stderr
    assert [item["message"] for item in read(output.read_bytes(), "execution_logs.json")] == [
        "before",
        "first",
    ]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--start", "2026-03-12", "--end", "2026-03-10"], "start"),
        (["--start", "2026-03-10T12:00", "--end", "2026-03-10T11:59"], "start"),
        (["--start", "yesterday", "--end", "2026-03-10"], "start"),
        (["--start", "2026-03-10", "--end", "2026-02-30"], "end"),
        (["--end", "2026-03-10T25:00"], "end"),
        (["--level", "LOUD"], "--level"),
    ],
)
def test_it_refuses_a_bad_range_in_one_line_naming_the_field_and_writes_no_file(
    transactional_db: None, tmp_path: Path, args: list[str], field: str
) -> None:
    entry("x", datetime(2026, 3, 10, tzinfo=UTC))
    result = manage("export_logs", *args, "--output", str(tmp_path / "logs.zip"))
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"CommandError: {field}")
    assert list(tmp_path.iterdir()) == []


def test_it_refuses_an_output_it_cannot_write(transactional_db: None, tmp_path: Path) -> None:
    result = manage("export_logs", "--output", str(tmp_path / "missing" / "logs.zip"))
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("CommandError: cannot write")
    assert list(tmp_path.iterdir()) == []


# -- the admin's "Download ZIP" ----------------------------------------------------


def admin_download(client: Client, **params: str) -> Any:
    return client.get(reverse(DOWNLOAD), params)


def zip_of(response: Any) -> bytes:
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith('attachment; filename="rpa-logs-')
    data = b"".join(response.streaming_content)
    assert opened(data).testzip() is None
    return data


def test_it_offers_the_download_of_the_current_filters_on_the_changelist(admin_client: Client) -> None:
    entry("x")
    page = admin_client.get(reverse(CHANGELIST), {"level__exact": "ERROR", "q": "x y"}).content.decode()
    assert f'href="{reverse(DOWNLOAD)}?level__exact=ERROR&amp;q=x+y"' in page
    assert "Download ZIP" in page


def test_it_downloads_what_the_changelist_shows(admin_client: Client) -> None:
    login = Workflow.objects.create(slug="login", name="login", command=["true"])
    run = WorkflowRun.objects.create(workflow=login)
    at = datetime(2026, 3, 10, 12, tzinfo=UTC)
    base = {"level": "ERROR", "component": "bot", "workflow_id": "login", "run": run}
    entry("the match", at, **base)
    entry("match by node", at, **base, node_id="the")  # the admin search also matches node ids exactly
    entry("wrong level", at, **{**base, "level": "INFO"})
    entry("wrong component", at, **{**base, "component": "runner"})
    entry("wrong workflow", at, **{**base, "workflow_id": "other"})
    entry("wrong run", at, **{**base, "run": None})
    entry("too late", at + timedelta(days=1), **base)
    entry("no search term", at, **base)
    params = {
        "level__exact": "ERROR",
        "component": "bot",
        "workflow_id": "login",
        "run": str(run.pk),
        "since": "2026-03-10",
        "until": "2026-03-10",
        "q": "the",
    }
    data = zip_of(admin_download(admin_client, **params))
    listed = admin_client.get(reverse(CHANGELIST), params).context["cl"].result_list
    exported = [item["message"] for item in read(data, "execution_logs.json")]
    assert sorted(exported) == sorted(e.message for e in listed) == ["match by node", "the match"]
    assert read(data, "metrics.json")["range"]["start"] == "2026-03-10T00:00:00.000000Z"


@pytest.mark.parametrize("params", [{"since": "yesterday"}, {"until": "2026-02-30"}, {"until": "9999-12-31"}])
def test_it_ignores_a_malformed_date_in_the_admin_download(
    admin_client: Client, params: dict[str, str]
) -> None:
    entry("x")
    assert len(read(zip_of(admin_download(admin_client, **params)), "execution_logs.json")) == 1


def test_it_sends_an_inverted_range_back_to_the_changelist_with_a_message(admin_client: Client) -> None:
    response = admin_download(admin_client, since="2026-03-12", until="2026-03-10")
    assert response.status_code == 302
    assert response["Location"].startswith(reverse(CHANGELIST) + "?")
    page = admin_client.get(response["Location"]).content.decode()
    assert "Cannot export: start" in page


def test_it_sends_unknown_filter_parameters_back_to_the_changelist(admin_client: Client) -> None:
    response = admin_download(admin_client, bogus="1")
    assert response.status_code == 302
    assert response["Location"] == reverse(CHANGELIST) + "?e=1"


@pytest.mark.parametrize("who", ["anonymous", "not staff"])
def test_it_sends_anonymous_and_non_staff_users_to_the_login_page(client: Client, who: str) -> None:
    entry("secret")
    if who == "not staff":
        client.force_login(User.objects.create_user("visitor", password="x"))
    response = admin_download(client)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_it_refuses_staff_without_the_view_permission(client: Client) -> None:
    entry("secret")
    staff = User.objects.create_user("clerk", password="x", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_workflow"))
    client.force_login(staff)
    assert admin_download(client).status_code == 403
