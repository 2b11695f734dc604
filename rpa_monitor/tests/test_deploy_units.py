"""deploy/'s systemd units: valid for systemd, and the web unit's commands really serve.

The web unit's ExecStartPre (collectstatic) and ExecStart (uvicorn) are run from this checkout
instead of /srv/rpa-monitor, on a free port, against this test's database with DEBUG off: the
admin's CSS comes from the production server itself, /metrics and /health answer.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from rpa_monitor.test import database_env
from rpa_monitor.tests.test_server import WEB, Server, free_port

BASE_DIR = Path(settings.BASE_DIR)
DEPLOY = BASE_DIR / "deploy"
UNITS = ["rpa-monitor-web.service", "rpa-monitor-worker.service", "rpa-monitor-scheduler.service"]
INSTALLED_AT = "/srv/rpa-monitor"


def directives(unit: str, key: str) -> list[str]:
    lines = (DEPLOY / unit).read_text().splitlines()
    return [line.partition("=")[2] for line in lines if line.startswith(f"{key}=")]


def here(command: str, port: int | None = None) -> list[str]:
    """A unit's command line as run from this checkout (and on `port` instead of 8000)."""
    argv = shlex.split(command.replace(f"{INSTALLED_AT}/.venv/bin/python", sys.executable))
    if port is not None:
        argv[argv.index("--port") + 1] = str(port)
    return argv


def test_systemd_accepts_every_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    for unit in UNITS:  # as installed, with this checkout standing in for /srv/rpa-monitor
        (tmp_path / unit).write_text((DEPLOY / unit).read_text().replace(INSTALLED_AT, str(BASE_DIR)))
    checked = subprocess.run(
        [analyze, "verify", *(str(tmp_path / unit) for unit in UNITS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")


def test_the_web_unit_runs_the_server_scripts_serve_runs() -> None:
    (start,) = directives("rpa-monitor-web.service", "ExecStart")
    assert here(start)[: len(WEB)] == WEB
    serve = (BASE_DIR / "scripts" / "serve").read_text().replace("\\\n", " ")
    assert " ".join(["python", *WEB[1:]]) in " ".join(serve.split())


@pytest.mark.django_db(transaction=True)
def test_the_web_unit_serves_static_files_metrics_and_health_with_debug_off(tmp_path: Path) -> None:
    env = {**database_env(), "DEBUG": "0", "STATIC_ROOT": str(tmp_path / "static")}
    (collect,) = directives("rpa-monitor-web.service", "ExecStartPre")
    collected = subprocess.run(
        here(collect), cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert collected.returncode == 0, collected.stderr
    (start,) = directives("rpa-monitor-web.service", "ExecStart")
    port = free_port()
    with (tmp_path / "web.log").open("wb") as out:
        process = subprocess.Popen(
            here(start, port), cwd=BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    server = Server(process, port, tmp_path / "web.log")
    try:
        server.wait_listening()
        status, css = server.get("/static/admin/css/base.css")
        assert status == 200
        assert css == (tmp_path / "static" / "admin" / "css" / "base.css").read_bytes()
        assert server.get("/metrics")[0] == 200
        assert server.get("/health")[0] == 200
    finally:
        server.stop()
    assert "Traceback" not in server.output()
