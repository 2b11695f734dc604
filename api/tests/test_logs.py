"""/api/logs (filtered, newest first, paged by cursor) and /api/logs/download (the streamed ZIP)."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client

from api.tests.helpers import errors_of
from logs.models import LogEntry, LogRow

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def add(
    minutes: float, level: str = "INFO", component: str = "runner", message: str = "m", **fields: Any
) -> None:
    LogEntry.objects.ingest([LogRow(T0 + timedelta(minutes=minutes), level, component, message, **fields)])


@pytest.fixture
def entries() -> None:
    add(0, "INFO", "runner", "started login", workflow_id="login", node_id="n1")
    add(1, "ERROR", "runner", "login FAILED", workflow_id="login", metadata={"exit_code": 2})
    add(2, "WARNING", "scheduler", "tick slow")
    add(3, "DEBUG", "bot", "submit detail", workflow_id="submit")
    add(60 * 24, "CRITICAL", "bot", "next day", workflow_id="submit")


def messages(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [item["message"] for item in response.json()["items"]]


def test_it_lists_entries_newest_first_with_every_field(api: Client, entries: None) -> None:
    response = api.get("/api/logs")
    assert messages(response) == ["next day", "submit detail", "tick slow", "login FAILED", "started login"]
    assert response.json()["next_cursor"] is None
    failed = response.json()["items"][3]
    assert failed == {
        "id": failed["id"],
        "timestamp": "2026-03-01T12:01:00Z",
        "level": "ERROR",
        "component": "runner",
        "message": "login FAILED",
        "workflow_id": "login",
        "node_id": "",
        "run_id": None,
        "metadata": {"exit_code": 2},
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("level=ERROR", ["login FAILED"]),
        ("level=warning", ["tick slow"]),
        ("level=", ["next day", "submit detail", "tick slow", "login FAILED", "started login"]),
        ("component=bot", ["next day", "submit detail"]),
        ("workflow_id=login", ["login FAILED", "started login"]),
        ("workflow_id=login&level=INFO", ["started login"]),
        ("q=login", ["login FAILED", "started login"]),
        ("q=failed", ["login FAILED"]),
        ("start=2026-03-01T12:01&end=2026-03-01T12:03", ["tick slow", "login FAILED"]),
        ("start=2026-03-02", ["next day"]),
        ("end=2026-03-01", ["submit detail", "tick slow", "login FAILED", "started login"]),
        ("start=2026-03-01&end=2026-03-01", ["submit detail", "tick slow", "login FAILED", "started login"]),
        ("component=nobody", []),
    ],
)
def test_it_filters(api: Client, entries: None, query: str, expected: list[str]) -> None:
    assert messages(api.get(f"/api/logs?{query}")) == expected


def test_it_pages_with_a_cursor_without_gaps_or_repeats(api: Client) -> None:
    for n in range(25):
        add(n // 3, message=f"m{n}")  # three entries share each timestamp: the id breaks the tie
    seen: list[str] = []
    url = "/api/logs?limit=7&component=runner"
    while url:
        body = api.get(url).json()
        assert len(body["items"]) <= 7
        seen += [item["message"] for item in body["items"]]
        url = (
            f"/api/logs?limit=7&component=runner&cursor={body['next_cursor']}" if body["next_cursor"] else ""
        )
    assert seen == [f"m{n}" for n in reversed(range(25))]


def test_the_limit_defaults_to_100(api: Client) -> None:
    LogEntry.objects.ingest([LogRow(T0, "INFO", "c", f"m{n}") for n in range(150)])
    body = api.get("/api/logs").json()
    assert len(body["items"]) == 100
    assert body["next_cursor"]
    assert len(api.get("/api/logs?limit=1000").json()["items"]) == 150


@pytest.mark.parametrize(
    ("query", "field", "words"),
    [
        ("level=LOUD", "level", "DEBUG"),
        ("level=WARN", "level", ""),
        ("start=yesterday", "start", "not an ISO date"),
        ("end=2026-02-30", "end", ""),
        ("start=2026-03-02&end=2026-03-01T00:00", "start", "after end"),
        ("start=0001-01-01T00:00%2B05:00", "start", ""),
        ("limit=0", "limit", ""),
        ("limit=1001", "limit", "1000"),
        ("limit=ten", "limit", ""),
        ("run_id=abc", "run_id", ""),
        ("run_id=99999999999999999999", "run_id", ""),
        ("cursor=garbage", "cursor", ""),
        ("cursor=MjAyNi0wMy0wMVQxMjowMDowMHwx", "cursor", ""),  # a naive timestamp
        ("component=a%00b", "component", "NUL"),
        ("q=" + "x" * 501, "q", ""),
        ("levle=ERROR", "levle", ""),
    ],
)
def test_it_refuses_bad_filters_naming_the_field(
    api: Client, entries: None, query: str, field: str, words: str
) -> None:
    response = api.get(f"/api/logs?{query}")
    assert response.status_code == 400
    errors = errors_of(response)
    assert field in errors, errors
    assert words in errors[field]


def unzip(response: Any) -> dict[str, Any]:
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith("attachment; filename=")
    assert response.streaming
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert archive.testzip() is None
    return {name: json.loads(archive.read(name)) for name in archive.namelist()}


def test_download_is_a_streamed_zip_of_the_range(api: Client, entries: None) -> None:
    files = unzip(api.get("/api/logs/download?start=2026-03-01&end=2026-03-01"))
    assert {"execution_logs.json", "error_logs.json", "metrics.json"} <= set(files)
    assert sorted(e["message"] for e in files["execution_logs.json"]) == [
        "login FAILED",
        "started login",
        "submit detail",
        "tick slow",
    ]
    assert [e["message"] for e in files["error_logs.json"]] == ["login FAILED"]


def test_download_applies_the_filters(api: Client, entries: None) -> None:
    files = unzip(api.get("/api/logs/download?workflow_id=submit"))
    assert sorted(e["message"] for e in files["execution_logs.json"]) == ["next day", "submit detail"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("start=2026-03-02&end=2026-02-28", "start"),
        ("end=soon", "end"),
        ("level=LOUD", "level"),
        ("colour=red", "colour"),
    ],
)
def test_download_refuses_a_bad_range_with_json(api: Client, entries: None, query: str, field: str) -> None:
    response = api.get(f"/api/logs/download?{query}")
    assert response.status_code == 400
    assert field in errors_of(response)


def test_download_is_for_authenticated_staff_only(entries: None) -> None:
    response = Client().get("/api/logs/download")
    assert response.status_code == 401
    assert not response.streaming
