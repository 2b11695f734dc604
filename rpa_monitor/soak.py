"""The concurrency soak (issue 6, part 4): everything that writes, at once, on one database.

Started as real processes against the database the caller's Django uses (the
`env` given points the children at it): the web server (`runserver`), two task
workers (`db_worker`), the scheduler loop (`run_scheduler`) and a "firehose" bot
(`run_workflow firehose`) printing JSON log lines as fast as it can. Schedule
triggers every few seconds keep the workers busy with short bots and a chain,
and this process drives the web server over HTTP meanwhile (admin pages as a
logged-in superuser, /metrics, /health, the API with a token, chain executions).

Then everything is stopped with SIGTERM and checked: no "database is locked"
(or any OperationalError) in any process's output or in the JSON log files,
every line the firehose printed stored exactly once, every run finished, no
5xx. `bench/soak.py` runs it for a minute on a scratch database; the test
suite runs a short form (`rpa_monitor/tests/test_soak.py`).

Every child runs `manage.py` under `PROBE`, a few lines that report on stderr
any OperationalError a database query raises, even one the code catches and
retries silently (django-tasks-db's worker does so for "database is locked").
"""

from __future__ import annotations

import http.client
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import BigIntegerField, Count, Max, Min, Q, QuerySet, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django_tasks_db.models import DBTaskResult

from api.models import ApiToken
from chains.models import ACTIVE_STATUSES, Chain, ChainRun, RunStatus, Workflow, WorkflowRun
from logs.models import LogCount, LogEntry
from triggers.models import Trigger, TriggerFire

MANAGE = str(Path(settings.BASE_DIR) / "manage.py")
CHAIN = "soak-chain"
CHATTY_LINES = 50
USERNAME = "soak"
PASSWORD = "soak-password-1234"  # a throwaway superuser in a scratch database

# Prints JSON lines as fast as it can for argv[1] seconds, each with its sequence
# number, then writes how many it printed to argv[2] and prints a last line saying so.
FIREHOSE = r"""
import os, sys, time
seconds, total_file = float(sys.argv[1]), sys.argv[2]
out = sys.stdout.buffer
line = b'{"level":"INFO","message":"row %d processed","node_id":"firehose","seq":%d}\n'
deadline, seq = time.monotonic() + seconds, 0
while time.monotonic() < deadline:
    out.write(b"".join([line % (n, n) for n in range(seq, seq + 500)]))
    seq += 500
with open(total_file + ".tmp", "w") as f:
    f.write(str(seq))
os.replace(total_file + ".tmp", total_file)
out.write(b'{"level":"INFO","message":"firehose done","node_id":"firehose","printed":%d}\n' % seq)
out.flush()
"""

# A short bot: sleeps 0.2 s, then logs CHATTY_LINES lines.
CHATTY = (
    "import json, time\n"
    "time.sleep(0.2)\n"
    f"for n in range({CHATTY_LINES}):\n"
    "    print(json.dumps({'level': 'INFO', 'message': f'chatty line {n}', 'node_id': 'chatty', 'n': n}))\n"
)

# Runs manage.py (argv[1:]) after hooking every database connection: any
# OperationalError a query raises is printed to stderr before it propagates.
PROBE = r"""
import runpy, sys

def probe(execute, sql, params, many, context):
    try:
        return execute(sql, params, many, context)
    except Exception as exc:
        from django.db import OperationalError
        if isinstance(exc, OperationalError):
            print(f"soak-probe: OperationalError: {exc} in: {sql[:150]}", file=sys.stderr, flush=True)
        raise

def install(sender, connection, **kwargs):
    if probe not in connection.execute_wrappers:
        connection.execute_wrappers.append(probe)

from django.db.backends.signals import connection_created
connection_created.connect(install, weak=False)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""

# What counts as a database error in the outputs and log files.
LOCK_PATTERNS = {
    "database is locked": re.compile(r"database is locked", re.IGNORECASE),
    "OperationalError": re.compile(r"OperationalError"),
    "deadlock detected": re.compile(r"deadlock detected", re.IGNORECASE),
}

# The admin pages, in each round: changelists of the big tables, newest first.
ADMIN_PAGES = [
    "/admin/",
    "/admin/chains/workflowrun/",
    "/admin/chains/chainrun/",
    "/admin/logs/logentry/",
    "/admin/logs/logentry/?level__exact=WARNING",
    "/admin/triggers/triggerfire/",
    "/static/admin/css/base.css",
]

WORKER = ["db_worker", "--no-reload", "--no-startup-delay", "--interval", "0.2"]

Say = Callable[[str], None]


@dataclass
class Seeded:
    token: str
    total_file: Path


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    files: list[IO[bytes]]
    exited_early: bool = False

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, wait; SIGKILL (recorded in its stderr file) if it does not stop in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                self.files[1].write(f"soak: {self.name} ignored SIGTERM for {timeout:g}s; killed\n".encode())
        for f in self.files:
            f.close()


@dataclass
class Http:
    """A minimal HTTP client keeping cookies and counting every response by status."""

    port: int
    cookies: dict[str, str] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    seconds: dict[str, list[float]] = field(default_factory=dict)  # response times per path

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        all_headers = dict(headers or {})
        if self.cookies:
            all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        started = time.monotonic()
        try:
            conn.request(method, path, body, all_headers)
            response = conn.getresponse()
            data = response.read()
            self.seconds.setdefault(f"{method} {path.split('?')[0]}", []).append(time.monotonic() - started)
        except (OSError, http.client.HTTPException) as exc:
            self.statuses[0] += 1  # no answer at all
            self.problems.append(f"{method} {path}: {type(exc).__name__}: {exc}")
            return 0, b""
        finally:
            conn.close()
        for cookie in response.msg.get_all("Set-Cookie") or []:
            name, _, rest = cookie.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        self.statuses[response.status] += 1
        if response.status >= 400:
            self.problems.append(f"{method} {path}: {response.status} {data[:300]!r}")
        return response.status, data

    def wait_ready(self, server: Child, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"the web server exited with {server.process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"the web server did not listen on port {self.port} within {timeout:g}s")

    def login(self) -> bool:
        self.request("GET", "/admin/login/?next=/admin/")
        csrf = self.cookies.get("csrftoken", "")
        form = {"csrfmiddlewaretoken": csrf, "username": USERNAME, "password": PASSWORD, "next": "/admin/"}
        status, _ = self.request(
            "POST",
            "/admin/login/?next=/admin/",
            urllib.parse.urlencode(form).encode(),
            {"Content-Type": "application/x-www-form-urlencoded", "X-CSRFToken": csrf},
        )
        return status == 302 and bool(self.cookies.get("sessionid"))


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class SoakReport:
    database: str
    seconds: float
    lines: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    lock_errors: int = 0
    lost_rows: int = 0
    duplicated_rows: int = 0
    http_requests: int = 0
    http_5xx: int = 0
    rows_per_second: float = 0.0

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, ok, detail))

    def text(self) -> str:
        verdicts = [f"{'PASS' if c.ok else 'FAIL'} {c.name}: {c.detail}" for c in self.checks]
        return "\n".join([*self.lines, *verdicts, "PASS" if self.ok else "FAIL"])


# -- the scenario ----------------------------------------------------------------


def seed(workdir: Path, seconds: float) -> Seeded:
    """Workflows, a chain, schedule triggers every few seconds, a superuser and an API token."""
    total_file = workdir / "firehose.total"
    firehose = [sys.executable, "-c", FIREHOSE, f"{seconds:g}", str(total_file)]
    timeout = int(seconds) + 600
    Workflow.objects.create(slug="firehose", name="Firehose", command=firehose, timeout_seconds=timeout)
    quick = Workflow.objects.create(slug="quick", name="Quick", command=["true"], timeout_seconds=60)
    chatty = Workflow.objects.create(
        slug="chatty", name="Chatty", command=[sys.executable, "-c", CHATTY], timeout_seconds=60
    )
    steps = ["quick", "chatty", "quick"]
    chain = Chain.objects.create_with_steps(slug=CHAIN, name="Soak chain", workflows=steps)
    targets: list[tuple[str, dict[str, Any], int, str]] = [
        ("quick every 2s", {"workflow": quick}, 2, Trigger.Overlap.ALLOW),
        ("chatty every 3s", {"workflow": chatty}, 3, Trigger.Overlap.SKIP),
        ("chain every 5s", {"chain": chain}, 5, Trigger.Overlap.SKIP),
    ]
    for name, target, every, overlap in targets:
        config = {"interval_seconds": every}
        trigger = Trigger(
            name=name, trigger_type=Trigger.Type.SCHEDULE, config=config, overlap=overlap, **target
        )
        trigger.full_clean()
        trigger.save()
    user = User.objects.create_superuser(USERNAME, "soak@example.com", PASSWORD)
    _, key = ApiToken.objects.issue(user, "soak")
    return Seeded(token=key, total_file=total_file)


def start(name: str, args: list[str], env: dict[str, str], workdir: Path) -> Child:
    stdout, stderr = workdir / f"{name}.stdout", workdir / f"{name}.stderr"
    files: list[IO[bytes]] = [stdout.open("wb"), stderr.open("wb")]
    process = subprocess.Popen(
        [sys.executable, "-c", PROBE, MANAGE, *args],
        cwd=settings.BASE_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=files[0],
        stderr=files[1],
    )
    return Child(name, process, stdout, stderr, files)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_soak(
    *,
    database: str,
    workdir: Path,
    env: dict[str, str],
    log_dir: Path,
    seconds: float,
    drain_seconds: float = 30.0,
    execute_every: float = 3.0,
    say: Say = print,
) -> SoakReport:
    """Seed, run everything at once for `seconds`, stop it, check it.

    `env` points the children at the database this process uses; `log_dir` is
    their RPA_LOG_DIR (scanned for errors too).
    """
    seeded = seed(workdir, seconds)
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**env, "DJANGO_SETTINGS_MODULE": "rpa_monitor.settings", "DEBUG": "1", "PYTHONUNBUFFERED": "1"}
    port = free_port()
    children: list[Child] = []
    http = Http(port)
    started = time.monotonic()
    try:
        children += [
            start("web", ["runserver", "--noreload", f"127.0.0.1:{port}"], env, workdir),
            *(start(f"worker-{n}", WORKER, env, workdir) for n in (1, 2)),
            start("scheduler", ["run_scheduler", "--interval", "1"], env, workdir),
            start("firehose", ["run_workflow", "firehose"], env, workdir),
        ]
        web, workers, scheduler, firehose = children[0], children[1:3], children[3], children[4]
        say(f"soak on {database}: {seconds:g} s; web :{port}, 2 workers, scheduler, firehose bot ({workdir})")
        http.wait_ready(web)
        logged_in = http.login()
        drive(http, seeded.token, firehose, seconds, execute_every)
        firehose.process.wait()
        elapsed = time.monotonic() - started
        say(f"firehose finished after {elapsed:.1f} s; stopping the scheduler, draining the queue")
        for child in children:
            child.exited_early = child is not firehose and child.process.poll() is not None
        scheduler.stop()
        drained = drain(drain_seconds)
        for child in [*workers, web]:
            child.stop()
        stopped = time.monotonic() - started
        say(f"all stopped after {stopped:.1f} s (queue {'drained' if drained else 'NOT drained'})")
    finally:
        for child in children:
            child.stop(timeout=10)
    report = SoakReport(database, seconds)
    check_processes(report, children)
    check_errors(report, children, log_dir)
    check_firehose(report, seeded)
    check_runs(report)
    check_http(report, http, logged_in)
    check_handler(report, log_dir)
    check_rows(report, elapsed)
    return report


def drive(http: Http, token: str, firehose: Child, seconds: float, execute_every: float) -> None:
    """Rounds of requests until the firehose is done; bounded in count and time."""
    bearer = {"Authorization": f"Bearer {token}"}
    max_requests, max_executes = int(40 * seconds) + 50, int(seconds / execute_every) + 1
    deadline = time.monotonic() + seconds + 600
    executes, next_execute = 0, time.monotonic()
    while firehose.process.poll() is None and time.monotonic() < deadline:
        if http.requests < max_requests:
            for path in ADMIN_PAGES:
                http.request("GET", path)
            http.request("GET", "/metrics")
            http.request("GET", "/health")
            http.request("GET", "/api/logs?workflow_id=firehose&limit=50", headers=bearer)
            if executes < max_executes and time.monotonic() >= next_execute:
                http.request(
                    "POST",
                    f"/api/chains/{CHAIN}/execute",
                    b'{"params": {"from": "soak"}}',
                    {**bearer, "Content-Type": "application/json"},
                )
                executes, next_execute = executes + 1, time.monotonic() + execute_every
        time.sleep(0.1)


def drain(seconds: float) -> bool:
    """Wait (at most `seconds`) until the workers have run everything queued."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        busy = (
            WorkflowRun.objects.filter(status__in=ACTIVE_STATUSES).exists()
            or ChainRun.objects.filter(status__in=ACTIVE_STATUSES).exists()
            or DBTaskResult.objects.filter(status__in=["READY", "RUNNING"]).exists()
        )
        if not busy:
            return True
        time.sleep(0.2)
    return False


# -- the checks --------------------------------------------------------------------


def check_processes(report: SoakReport, children: list[Child]) -> None:
    codes = ", ".join(f"{c.name} {c.process.returncode}" for c in children)
    report.lines.append(f"  processes (exit codes after SIGTERM): {codes}")
    early = [c.name for c in children if c.exited_early]
    report.check(
        "processes", not early, f"exited early: {', '.join(early)}" if early else "all ran to the end"
    )
    code = children[-1].process.returncode
    report.check("firehose command", code == 0, f"run_workflow exit {code}")


def check_errors(report: SoakReport, children: list[Child], log_dir: Path) -> None:
    files = [path for child in children for path in (child.stdout, child.stderr)]
    files += sorted(path for path in log_dir.iterdir() if path.is_file())
    totals: Counter[str] = Counter()
    examples: list[str] = []
    for path in files:
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                hits = [name for name, pattern in LOCK_PATTERNS.items() if pattern.search(line)]
                if hits:
                    totals.update(hits)
                    report.lock_errors += 1  # lines, not patterns: one error may match several
                    if len(examples) < 5:
                        examples.append(f"{path.name}: {line.strip()[:300]}")
    counts = ", ".join(f'"{name}" {totals[name]}' for name in LOCK_PATTERNS)
    report.lines.append(f"  database errors in {len(files)} output/log files: {counts}")
    report.lines += [f"    {example}" for example in examples]
    ok = report.lock_errors == 0
    report.check('no "database is locked"/OperationalError', ok, f"{report.lock_errors} lines")


def check_firehose(report: SoakReport, seeded: Seeded) -> None:
    printed = int(seeded.total_file.read_text()) if seeded.total_file.exists() else None
    runs = list(WorkflowRun.objects.filter(workflow__slug="firehose"))
    run = runs[0] if len(runs) == 1 else None
    if printed is None or run is None:
        report.check("firehose", False, f"printed {printed}, {len(runs)} run(s) (expected 1)")
        return
    rows = LogEntry.objects.filter(run=run, component="bot")
    seq = Cast(KT("metadata__seq"), BigIntegerField())
    stats = rows.filter(metadata__has_key="seq").aggregate(
        stored=Count("id"), distinct=Count(KT("metadata__seq"), distinct=True), lo=Min(seq), hi=Max(seq)
    )
    last = rows.filter(message="firehose done").values_list("metadata", flat=True).first()
    other = rows.exclude(metadata__has_key="seq").exclude(message="firehose done").count()
    stored, distinct = stats["stored"], stats["distinct"]
    report.lost_rows = max(0, printed - distinct) + (0 if last else 1)
    report.duplicated_rows = stored - distinct
    complete = (
        stored == distinct == printed
        and (printed == 0 or (stats["lo"], stats["hi"]) == (0, printed - 1))
        and last is not None
        and last.get("printed") == printed
        and other == 0
    )
    seconds = run.duration.total_seconds() if run.duration else 0.0
    report.lines.append(
        f"  firehose: printed {printed:,}, stored {stored:,} (distinct seq {distinct:,}, "
        f"{stats['lo']}..{stats['hi']}), final line {'stored' if last else 'MISSING'}, "
        f"other rows {other}; run {run.status} in {seconds:.1f} s ({stored / max(seconds, 1e-9):,.0f} rows/s)"
    )
    report.check(
        "firehose: every printed line stored exactly once",
        complete,
        f"lost {report.lost_rows}, duplicated {report.duplicated_rows}",
    )
    report.check("firehose run", run.status == RunStatus.SUCCESS, f"{run.status} {run.error[:200]}".strip())


def check_runs(report: SoakReport) -> None:
    wf, ch = _by(WorkflowRun.objects.all(), "status"), _by(ChainRun.objects.all(), "status")
    tasks, fires = _by(DBTaskResult.objects.all(), "status"), _by(TriggerFire.objects.all(), "outcome")
    report.lines.append(f"  workflow runs: {_counts(wf)}; chain runs: {_counts(ch)}")
    report.lines.append(f"  tasks: {_counts(tasks)}; trigger fires: {_counts(fires)}")
    queued = wf[RunStatus.QUEUED] + ch[RunStatus.QUEUED]
    if queued:
        report.lines.append(f"  still queued when the workers stopped (not lost, reported): {queued}")
    bad = {s: n for s, n in (wf + ch).items() if s not in (RunStatus.SUCCESS, RunStatus.QUEUED)}
    done = f"success: {wf[RunStatus.SUCCESS]} workflow, {ch[RunStatus.SUCCESS]} chain runs"
    report.check(
        "runs: every run that started finished with success", not bad, _counts(Counter(bad)) if bad else done
    )
    bad_tasks = tasks["FAILED"] + tasks["RUNNING"]
    failed = DBTaskResult.objects.filter(status="FAILED")
    failures = list(failed.values_list("exception_class_path", flat=True)[:5])
    report.check("tasks: none failed or left running", not bad_tasks, f"{bad_tasks} {failures}")
    report.check("trigger fires: no errors", not fires["error"], f"{fires['error']} error fire(s)")
    # Short bots running alongside the firehose lose nothing either.
    counted = (
        WorkflowRun.objects.filter(workflow__slug="chatty", status=RunStatus.SUCCESS)
        .annotate(rows=Count("log_entries", filter=Q(log_entries__component="bot")))
        .values_list("rows", flat=True)
    )
    short = [rows for rows in counted if rows != CHATTY_LINES]
    report.check(
        f"chatty runs: {CHATTY_LINES} rows each",
        not short,
        f"{len(counted)} runs" + (f"; wrong counts: {short[:10]}" if short else ""),
    )
    report.lost_rows += sum(max(0, CHATTY_LINES - rows) for rows in short)
    # The runner's own line per attempt goes through the batched logging handler
    # (flushed by time, size and at exit): none may be lost when the workers stop.
    attempt_lines = Q(log_entries__component="runner", log_entries__message__contains=" attempt ")
    per_run = (
        WorkflowRun.objects.exclude(status=RunStatus.QUEUED)
        .annotate(lines=Count("log_entries", filter=attempt_lines))
        .values_list("lines", flat=True)
    )
    wrong = Counter(lines for lines in per_run if lines != 1)
    report.check(
        "runner: one stored 'attempt' line per run",
        not wrong,
        f"{len(per_run)} runs" + (f"; runs by lines stored: {dict(wrong)}" if wrong else ""),
    )
    report.lost_rows += wrong[0]


def check_http(report: SoakReport, http: Http, logged_in: bool) -> None:
    classes = Counter(f"{status // 100}xx" if status else "no answer" for status in http.statuses.elements())
    report.http_requests = http.requests
    report.http_5xx = classes["5xx"]
    bad = http.requests - classes["2xx"] - classes["3xx"]
    report.lines.append(f"  http: {http.requests} requests; {_counts(classes)}")
    slowest = sorted(http.seconds.items(), key=lambda item: -max(item[1]))[:4]
    report.lines.append(
        "    slowest: "
        + "; ".join(f"{path} median {_ms(statistics.median(t))}, max {_ms(max(t))}" for path, t in slowest)
    )
    report.lines += [f"    {problem}" for problem in http.problems[:5]]
    report.check("http: admin login", logged_in, "logged in" if logged_in else "login failed")
    report.check("http: no 5xx", report.http_5xx == 0, f"{report.http_5xx} 5xx")
    report.check("http: every request answered 2xx/3xx", bad == 0, f"{bad} other")


def check_handler(report: SoakReport, log_dir: Path) -> None:
    """Every record the components logged (the JSON file has each at once) is stored too:
    the batched database handler loses nothing, at SIGTERM included."""
    in_files = 0
    for path in log_dir.glob("rpa_monitor.jsonl*"):
        with path.open(encoding="utf-8", errors="replace") as f:
            in_files += sum(1 for line in f if '"logger": "rpa.' in line)
    stored = LogEntry.objects.exclude(component="bot").count()  # bot lines are not logged records
    report.lost_rows += max(0, in_files - stored)
    report.lines.append(f"  logged records: {in_files:,} in the JSON log file, {stored:,} stored")
    report.check("logged records: all stored", in_files == stored, f"{in_files:,} vs {stored:,}")


def check_rows(report: SoakReport, elapsed: float) -> None:
    rows = LogEntry.objects.count()
    counted = LogCount.objects.aggregate(total=Sum("count"))["total"] or 0
    report.rows_per_second = rows / max(elapsed, 1e-9)
    report.lines.append(
        f"  rows stored: {rows:,} log entries in {elapsed:.1f} s = {report.rows_per_second:,.0f} rows/s "
        f"(all processes); log_entries_total {counted:,}"
    )
    report.check("log_entries_total == stored rows", counted == rows, f"{counted:,} vs {rows:,}")


def _by(queryset: QuerySet[Any], column: str) -> Counter[str]:
    """{value: rows} of one column."""
    return Counter(dict(queryset.order_by().values_list(column).annotate(n=Count("id"))))


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{key} {n:,}" for key, n in sorted(counter.items())) or "none"
