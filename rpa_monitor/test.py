"""Shared test helpers: run manage.py in a real subprocess against the test database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

MANAGE = str(Path(settings.BASE_DIR) / "manage.py")


def database_env() -> dict[str, str]:
    """Environment that points a child process at the database this test uses.

    It is this process's environment, so the child also shares this test process's RPA_DATA_DIR
    (one per pytest-xdist worker, see rpa_monitor/pytest_plugin.py)."""
    env = dict(os.environ)
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        env.pop("DATABASE_URL", None)
        env["RPA_SQLITE_PATH"] = str(db["NAME"])
    else:
        user = db.get("USER") or ""
        password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
        auth = f"{user}{password}@" if user else ""
        env["DATABASE_URL"] = (
            f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"
        )
    env["DJANGO_SETTINGS_MODULE"] = "rpa_monitor.settings"
    # The child hashes and checks passwords as this process does (settings.py: test databases only).
    env["RPA_TEST_FAST_HASHER"] = "1"
    return env


def manage(*args: str, timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run `manage.py *args` as a real process; returns the completed process (never raises on exit code)."""
    return subprocess.run(
        [sys.executable, MANAGE, *args],
        env=database_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )


def start_manage(*args: str) -> subprocess.Popen[bytes]:
    """Start `manage.py *args` in the background against the test database."""
    return subprocess.Popen(
        [sys.executable, MANAGE, *args], env=database_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def stop_process(process: subprocess.Popen[Any], grace: float = 15) -> None:
    """SIGTERM a process a test started, SIGKILL it after `grace` seconds, and reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_running_run(workflow_slug: str, seconds: float = 10.0) -> Any:
    """The workflow's run once it is `running` (its bot started); AssertionError after `seconds`."""
    from chains.models import RunStatus, WorkflowRun

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run = WorkflowRun.objects.filter(workflow__slug=workflow_slug, status=RunStatus.RUNNING).first()
        if run is not None:
            return run
        time.sleep(0.05)
    raise AssertionError(f"no running run of {workflow_slug} within {seconds}s")
