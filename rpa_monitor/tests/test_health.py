"""/health (DESIGN §8): database reachable, age of the last scheduler tick, stale runs; 200 or 503."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from chains.models import Workflow, WorkflowRun
from triggers.models import SchedulerTick
from triggers.scheduler import tick

pytestmark = pytest.mark.django_db

BASE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def health() -> tuple[int, dict[str, Any]]:
    response = Client().get("/health")
    assert response["Content-Type"] == "application/json"
    return response.status_code, json.loads(response.content)


def running_run(heartbeat_age: float) -> WorkflowRun:
    flow, _ = Workflow.objects.get_or_create(slug="bot", defaults={"name": "bot", "command": ["true"]})
    run = WorkflowRun.objects.create(workflow=flow)
    assert run.start(host="elsewhere", pid=None, worker_pid=None)
    old = timezone.now() - timedelta(seconds=heartbeat_age)
    WorkflowRun.objects.filter(pk=run.pk).update(heartbeat_at=old)
    return run


def test_it_is_ok_with_a_recent_tick_and_no_stale_runs() -> None:
    with time_machine.travel(BASE, tick=False):
        tick()
    with time_machine.travel(BASE + timedelta(seconds=30), tick=False):
        status, body = health()
    assert status == 200
    assert body == {
        "status": "ok",
        "checks": {
            "database": {"status": "ok"},
            "scheduler": {
                "status": "ok",
                "last_tick": BASE.isoformat(),
                "age_seconds": 30.0,
                "max_age_seconds": django_settings.RPA_SCHEDULER_MAX_AGE_SECONDS,
            },
            "stale_runs": {"status": "ok", "count": 0},
        },
    }


def test_it_is_degraded_when_the_scheduler_never_ticked() -> None:
    status, body = health()
    assert status == 200
    assert body["status"] == "degraded"
    assert body["checks"]["database"] == {"status": "ok"}
    assert body["checks"]["scheduler"]["status"] == "degraded"
    assert body["checks"]["scheduler"]["last_tick"] is None
    assert "never" in body["checks"]["scheduler"]["error"]
    assert body["checks"]["stale_runs"] == {"status": "ok", "count": 0}


def test_it_is_degraded_when_the_last_tick_is_too_old(settings: Settings) -> None:
    settings.RPA_SCHEDULER_MAX_AGE_SECONDS = 180
    with time_machine.travel(BASE, tick=False):
        tick()
    for later, expected in [(179, "ok"), (180, "ok"), (181, "degraded"), (86400, "degraded")]:
        with time_machine.travel(BASE + timedelta(seconds=later), tick=False):
            status, body = health()
        assert status == 200
        assert (body["status"], body["checks"]["scheduler"]["status"]) == (expected, expected), later
        assert body["checks"]["scheduler"]["age_seconds"] == later


def test_the_newest_tick_of_any_host_counts() -> None:
    now = timezone.now()
    SchedulerTick.objects.create(host="old-host", pid=1, last_tick_at=now - timedelta(days=2))
    SchedulerTick.objects.create(host="live-host", pid=2, last_tick_at=now - timedelta(seconds=5))
    status, body = health()
    assert (status, body["status"]) == (200, "ok")
    assert body["checks"]["scheduler"]["last_tick"] == (now - timedelta(seconds=5)).isoformat()


def test_it_is_degraded_with_a_stale_running_run(settings: Settings) -> None:
    settings.RPA_RUN_LEASE_SECONDS = 60
    tick()
    running_run(heartbeat_age=5)  # alive
    status, body = health()
    assert (status, body["status"], body["checks"]["stale_runs"]) == (200, "ok", {"status": "ok", "count": 0})
    running_run(heartbeat_age=120)
    running_run(heartbeat_age=3600)
    status, body = health()
    assert status == 200
    assert body["status"] == "degraded"
    assert body["checks"]["stale_runs"] == {"status": "degraded", "count": 2}
    assert body["checks"]["scheduler"]["status"] == "ok"
    tick()  # the reaper takes them
    status, body = health()
    assert (body["status"], body["checks"]["stale_runs"]["count"]) == ("ok", 0)


def test_only_get_is_allowed() -> None:
    assert Client().post("/health").status_code == 405


def test_it_is_down_with_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    """A real process whose database cannot be opened (SQLite in a directory that does not exist)."""
    code = (
        "import django, json\n"
        "django.setup()\n"
        "from django.test.utils import setup_test_environment\n"
        "setup_test_environment()\n"
        "from django.test import Client\n"
        "response = Client().get('/health')\n"
        "print(json.dumps({'code': response.status_code, 'body': json.loads(response.content)}))\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env.update(
        DJANGO_SETTINGS_MODULE="rpa_monitor.settings",
        RPA_SQLITE_PATH=str(tmp_path / "missing" / "db.sqlite3"),
        RPA_DATA_DIR=str(tmp_path),
        RPA_LOG_DIR=str(tmp_path / "logs"),
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=django_settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] == 503
    assert result["body"]["status"] == "down"
    assert result["body"]["checks"]["database"]["status"] == "down"
    assert result["body"]["checks"]["database"]["error"]
