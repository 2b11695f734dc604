"""The web server as `./scripts/serve` and `deploy/` run it (uvicorn serving `rpa_monitor.asgi`).

Real processes on 127.0.0.1 against this test's database:
- 1,000 requests leave the server's open file descriptors and, on PostgreSQL, its database
  connections flat (runserver with persistent connections kept one per request thread);
- the admin's static files are served by the production server itself (WhiteNoise);
- with DEBUG off and no SECRET_KEY the web application refuses to start, naming SECRET_KEY,
  while a management command warns once and runs;
- `./scripts/serve` starts the web server, the worker and the scheduler, and Ctrl-C stops all.
"""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.http import StreamingHttpResponse

from rpa_monitor.test import MANAGE, database_env, stop_process

BASE_DIR = Path(settings.BASE_DIR)
# The web server exactly as ./scripts/serve and deploy/rpa-monitor-web.service start it.
WEB = [sys.executable, "-m", "uvicorn", "rpa_monitor.asgi:application", "--lifespan", "off",
       "--timeout-graceful-shutdown", "10"]  # fmt: skip
PATHS = ["/metrics", "/health", "/admin/login/", "/api/openapi.json"]
REQUESTS = 1_000
WARM_UP = 100
CLIENTS = 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    """Poll `condition` until it holds or `seconds` pass; its last answer."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def get(self, path: str) -> tuple[int, bytes]:
        # A new connection per request, as scrapers and browsers open them.
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path, headers={"Connection": "close"})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def wait_listening(self, seconds: float = 60.0) -> None:
        def listening() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"the web server exited with {self.process.returncode}\n{self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                return False
            return True

        assert wait_for(listening, seconds), f"not listening on {self.port}\n{self.output()}"

    def stop(self) -> None:
        stop_process(self.process)


def start_server(argv: list[str], env: dict[str, str], log: Path) -> Server:
    port = free_port()
    with log.open("wb") as out:  # a file, not a pipe: a full pipe would block the server
        process = subprocess.Popen(
            [*argv, "--host", "127.0.0.1", "--port", str(port)],
            cwd=BASE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Server(process, port, log)


@pytest.fixture
def server_env() -> dict[str, str]:
    """This test's database; DEBUG off, as in production. PGAPPNAME tags the server's connections."""
    return {**database_env(), "DEBUG": "0", "PGAPPNAME": f"rpa-web-{uuid.uuid4().hex[:12]}"}


@pytest.fixture
def web(transactional_db: None, server_env: dict[str, str], tmp_path: Path) -> Iterator[Server]:
    server = start_server(WEB, server_env, tmp_path / "web.log")
    try:
        server.wait_listening()
        yield server
    finally:
        server.stop()


def database_connections(application_name: str) -> int:
    """The server's open connections (PostgreSQL); 0 on SQLite, where fds tell instead."""
    if connection.vendor != "postgresql":
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [application_name]
        )
        return int(cursor.fetchone()[0])


def hammer(server: Server, count: int, offset: int = 0) -> Counter[tuple[str, int]]:
    """`count` GETs over the mix of PATHS from CLIENTS threads; (path, status) counts."""
    paths = [PATHS[(offset + n) % len(PATHS)] for n in range(count)]
    with ThreadPoolExecutor(CLIENTS) as pool:
        statuses = list(pool.map(lambda path: server.get(path)[0], paths))
    return Counter(zip(paths, statuses, strict=True))


def test_it_keeps_open_files_and_database_connections_flat_over_1000_requests(
    web: Server, server_env: dict[str, str]
) -> None:
    name = server_env["PGAPPNAME"]
    answered = hammer(web, WARM_UP)
    assert wait_for(lambda: database_connections(name) == 0, 10)
    warm_fds = web.open_fds()
    answered += hammer(web, REQUESTS - WARM_UP, offset=WARM_UP)
    assert answered == {(path, 200): REQUESTS // len(PATHS) for path in PATHS}, web.output()
    # Connections close when each request finishes; give the last ones a moment to do so.
    wait_for(lambda: database_connections(name) == 0 and web.open_fds() <= warm_fds + 2, 10)
    connections, fds = database_connections(name), web.open_fds()
    print(
        f"after {REQUESTS} requests: {fds} open fds (after {WARM_UP}: {warm_fds}), {connections} connections"
    )
    assert connections == 0
    assert fds <= warm_fds + 2  # runserver: 38 after 100 requests, 53 after 1,000


# --- SECRET_KEY: the web application refuses the public development key, commands warn -----------


def without_secret_key() -> dict[str, str]:
    env = {k: v for k, v in database_env().items() if k != "SECRET_KEY"}
    return {**env, "DEBUG": "0"}


@pytest.mark.parametrize("module", ["rpa_monitor.asgi", "rpa_monitor.wsgi"])
def test_it_refuses_to_import_the_web_application_without_a_secret_key(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=BASE_DIR,
        env=without_secret_key(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("django.core.exceptions.ImproperlyConfigured: SECRET_KEY is not set"), done.stderr


def test_it_refuses_to_start_the_web_server_without_a_secret_key(tmp_path: Path) -> None:
    server = start_server(WEB, without_secret_key(), tmp_path / "web.log")
    try:
        server.process.wait(60)
    finally:
        server.stop()
    assert server.process.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY is not set" in server.output()
    assert "Uvicorn running" not in server.output()


def test_it_starts_the_web_application_with_debug_on_and_no_secret_key() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import rpa_monitor.asgi"],
        cwd=BASE_DIR,
        env={**without_secret_key(), "DEBUG": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")


def test_it_warns_once_but_runs_a_management_command_without_a_secret_key() -> None:
    done = subprocess.run(
        [sys.executable, MANAGE, "check"],
        env=without_secret_key(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "no issues" in done.stdout
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("warning: SECRET_KEY is not set"), done.stderr


# --- Streaming responses stream under ASGI ---------------------------------------------------------


def test_it_sends_each_chunk_of_a_streamed_response_as_it_is_produced() -> None:
    from rpa_monitor.asgi import StreamingASGIHandler

    produced: list[int] = []

    def chunks() -> Iterator[bytes]:
        for n in range(3):
            produced.append(n)
            yield b"chunk %d" % n

    sent: list[tuple[bytes, int]] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            sent.append((message["body"], len(produced)))

    response = StreamingHttpResponse(chunks())
    asyncio.run(StreamingASGIHandler().send_response(response, send))
    # Django's own handler collects the whole iterator first: [(b"chunk 0", 3), (b"chunk 1", 3), ...].
    assert sent == [(b"chunk 0", 1), (b"chunk 1", 2), (b"chunk 2", 3)]


def test_it_serves_the_log_export_through_the_real_server(web: Server) -> None:
    from django.contrib.auth.models import User

    from api.models import ApiToken
    from logs.models import LogEntry

    LogEntry.objects.bulk_create(
        LogEntry(message=f"line {n}", component="bot", level="ERROR" if n % 10 == 0 else "INFO")
        for n in range(5_000)
    )
    _, key = ApiToken.objects.issue(User.objects.create_superuser("exporter"), "export")
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=60)
    conn.request("GET", "/api/logs/download", headers={"Authorization": f"Bearer {key}"})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    assert response.status == 200, body[:500]
    archive = zipfile.ZipFile(io.BytesIO(body))
    assert len(json.loads(archive.read("execution_logs.json"))) == 5_000
    assert len(json.loads(archive.read("error_logs.json"))) == 500
    assert "Traceback" not in web.output()


# --- ./scripts/serve ---------------------------------------------------------------------------------


def children_of(pid: int) -> set[int]:
    """Every live descendant of `pid` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def processes(group: int) -> str:
    """`ps` of a process group: what is still running, and where it waits."""
    listed = ["ps", "-ww", "-o", "pid,ppid,stat,wchan:20,etime,args", "-g", str(group)]
    return subprocess.run(listed, capture_output=True, text=True, timeout=30, check=False).stdout


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_scripts_serve_starts_everything_and_ctrl_c_stops_it_all(tmp_path: Path) -> None:
    if connection.vendor != "sqlite":
        pytest.skip("./scripts/serve runs on its own SQLite file: the SQLite run covers it")
    port = free_port()
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RPA_", "DATABASE_URL", "DEBUG", "STATIC_ROOT", "SECRET_KEY"))
        },
        "RPA_DATA_DIR": str(tmp_path / "var"),  # a fresh machine: no database yet
        "RPA_PORT": str(port),
        "RPA_DEMO_SPEED": "0.05",
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        script = subprocess.Popen(
            [str(BASE_DIR / "scripts" / "serve")], env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal's foreground job
        )  # fmt: skip
    server = Server(script, port, log)
    try:
        assert wait_for(lambda: "RPA Monitor is running" in server.output() or script.poll() is not None, 300)
        server.wait_listening()
        for url in ("/admin/", "/admin/dashboard/", "/metrics"):
            assert f"http://127.0.0.1:{port}{url}" in log.read_text()
        status, page = server.get("/admin/login/")
        assert status == 200
        stylesheet = re.search(rb'href="(/static/admin/css/[\w.]+\.css)"', page)
        assert stylesheet, page[:500]
        assert server.get(stylesheet.group(1).decode())[0] == 200
        assert server.get("/metrics")[0] == 200
        assert server.get("/health")[0] == 200
        started = children_of(script.pid)
        commands = processes(script.pid)
        assert all(name in commands for name in ("uvicorn", "db_worker", "run_scheduler")), commands
        os.killpg(script.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group gets SIGINT
        stopped = wait_for(lambda: script.poll() is not None and not any(map(alive, started)), 60)
        assert stopped, f"still running after Ctrl-C:\n{processes(script.pid)}\n{server.output()}"
    finally:
        if script.poll() is None:
            os.killpg(script.pid, signal.SIGKILL)
            script.wait()
