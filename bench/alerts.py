"""Cost of evaluating the alert rules: O(recent activity), not O(history).

Two scratch databases built from one migrated template, both with 200 workflows,
20 chains, 5 hourly schedule triggers, one email channel and the same 8 enabled
alert rules, one of each kind, last evaluated one minute before `now`:
"small" with 1,000 historical finished workflow runs, "large" with 1,000,000
(about 90 days, ~10% failed), each with one chain run per ten runs and one
trigger fire per hundred. The history goes in with raw sqlite3 executemany. Both
then get the same recent activity in the last minute: 20 finished runs (one
failed, one abandoned, one that took two hours), 1 running run, 2 chain runs (one
failed) and 1 late trigger fire; so both evaluations open the same 11 alerts.

Timed: one `alerts.rules.evaluate_rules(now)` per database per round, after
an untimed one (warm caches); alerts and deliveries are deleted and the rules'
evaluated_at reset before each, so every evaluation does the same work. Rounds
alternate which database goes first; median of --repeats rounds. Also printed:
each rule kind's own median, the number of queries per evaluation (must be equal),
and SQLite's EXPLAIN QUERY PLAN of every distinct query an evaluation runs (captured
from a real evaluation), with the SQLite VM steps each takes on small and large:
a SCAN of chains_workflowrun, chains_chainrun or triggers_triggerfire, or a query
whose steps grow with the history, is flagged.

Target: evaluate_rules(1,000,000 runs) <= 1.5x evaluate_rules(1,000 runs).

Run from the project root:  .venv/bin/python bench/alerts.py
Uses its own scratch SQLite databases in a temp directory, removed at the end.
"""

from __future__ import annotations

import random
import re
import shutil
import sqlite3
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _django import flush_rpa_logging, parse_args, profile, rounds, scratch_dir, setup_django

WORKFLOWS = 200
CHAINS = 20
SMALL = 1_000
LARGE = 1_000_000
DAYS = 90
DEAD = 3  # the last workflows ran nothing for two days: no_success_within holds for them
TAIL = 3  # every other workflow's last runs, spread over the last 12 hours (same in both)
TAIL_HOURS = 12
TRIGGERS = 5
OVERDUE_TRIGGER = 4  # its slot passed ten minutes ago without a fire
LATE_TRIGGER = 1  # fired two minutes late within the last minute
RECENT = 20
FAILED_RECENT, ABANDONED_RECENT, SLOW_RECENT = 3, 11, 5  # workflow indexes of the special recent runs
RUNNING_WORKFLOW = 20
TARGET_RATIO = 1.5
HISTORY_TABLES = ("chains_workflowrun", "chains_chainrun", "triggers_triggerfire")
STEP = 100  # the progress handler counts SQLite VM steps in units of this
GROWTH_FLAG = 4.0  # a query taking this many times the steps on large (and >= 20,000) is flagged
BATCH = 50_000
STATUSES = ["success", "failure", "timeout", "abandoned", "cancelled"]
WEIGHTS = [88.5, 7.0, 1.5, 1.5, 1.5]  # ~10% failed (failure, timeout, abandoned)
RUN_COLUMNS = (
    "status, attempt, created_at, started_at, finished_at, heartbeat_at, exit_code, error, host, pid, "
    "params, workflow_id"
)
RULES: list[tuple[str, dict[str, Any]]] = [
    ("workflow_failed", {}),
    ("chain_failed", {}),
    ("consecutive_failures", {"count": 3}),
    ("error_rate_above", {"percent": 20, "window_seconds": 3600}),
    ("no_success_within", {"seconds": 86400}),
    ("duration_above", {"seconds": 3600}),
    ("missed_schedule", {"seconds": 60}),
    ("stale_runs", {}),
]


def sqlite_time(moment: datetime) -> str:
    """Django's SQLite datetime storage: naive UTC text."""
    return str(moment.astimezone(UTC).replace(tzinfo=None))


def slug(w: int) -> str:
    return f"bot-{w:03d}"


class Scratch:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.template = directory / "template.sqlite3"
        self.paths = {"small": directory / "small.sqlite3", "large": directory / "large.sqlite3"}


# -- the databases -----------------------------------------------------------------


def make_template(now: datetime) -> tuple[list[int], list[int], list[int]]:
    """Workflows, chains, triggers, a channel and the 8 rules (ORM); returns the ids."""
    from django.db import connection

    from alerts.models import AlertRule, NotificationChannel
    from chains.models import Chain, Workflow
    from triggers.models import Trigger

    old = now - timedelta(days=DAYS + 10)  # watched long enough for no_success_within
    Workflow.objects.bulk_create(
        Workflow(slug=slug(i), name=f"Bot {i}", command=["true"], created_at=old) for i in range(WORKFLOWS)
    )
    Chain.objects.bulk_create(
        Chain(slug=f"chain-{i:02d}", name=f"Chain {i}", created_at=old) for i in range(CHAINS)
    )
    workflows = list(Workflow.objects.order_by("id").values_list("id", flat=True))
    chains = list(Chain.objects.order_by("id").values_list("id", flat=True))
    next_slot = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    triggers = []
    for i in range(TRIGGERS):
        trigger = Trigger(
            name=f"hourly-{i}",
            trigger_type="schedule",
            workflow_id=workflows[i],
            config={"interval_seconds": 3600},
            created_at=old,
        )
        trigger.save()
        due = now - timedelta(minutes=10) if i == OVERDUE_TRIGGER else next_slot
        Trigger.objects.filter(pk=trigger.pk).update(next_fire_at=due)  # save() computes from the clock
        triggers.append(trigger.pk)
    channel = NotificationChannel.objects.create(name="ops mail", kind="email", target="ops@example.com")
    for kind, params in RULES:
        rule = AlertRule(name=f"bench {kind}", kind=kind, params=params, created_at=now - timedelta(days=30))
        rule.full_clean()
        rule.save()
        rule.channels.set([channel])
    connection.close()
    return workflows, chains, triggers


def build(
    path: Path, template: Path, runs: int, ids: tuple[list[int], list[int], list[int]], now: datetime
) -> None:
    """Copy the template to `path`; add `runs` runs of history, then the recent activity."""
    workflows, chains, triggers = ids
    shutil.copyfile(template, path)
    rng = random.Random(runs)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript("PRAGMA journal_mode=WAL;PRAGMA synchronous=OFF;")
    conn.execute("BEGIN")
    insert_history_runs(conn, rng, runs, workflows, now)
    insert_chain_runs(conn, rng, runs // 10, chains, now)
    insert_fires(conn, runs // 100, triggers, now)
    insert_recent(conn, workflows, chains, triggers, now)
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def run_row(status: str, finished: datetime, seconds: float, workflow_id: int) -> tuple[Any, ...]:
    started = finished - timedelta(seconds=seconds)
    error = "" if status in ("success", "cancelled") else f"bench {status}"
    exit_code = None if status in ("abandoned", "cancelled") else (0 if status == "success" else 1)
    return (
        status,
        1,
        sqlite_time(started),
        sqlite_time(started),
        sqlite_time(finished),
        sqlite_time(finished),
        exit_code,
        error,
        "bench-host",
        4242,
        "{}",
        workflow_id,
    )


def insert_runs(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    conn.executemany(
        f'INSERT INTO "chains_workflowrun" ({RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)', rows
    )
    rows.clear()


def insert_history_runs(
    conn: sqlite3.Connection, rng: random.Random, runs: int, workflows: list[int], now: datetime
) -> None:
    """Bulk history evenly over DAYS, then each live workflow's last TAIL runs (the same in both).

    The dead workflows get nothing in the last two days. The tail gives every live
    workflow a success in the last day even in the small database, so both evaluate
    no_success_within to the same alerts; workflow 3's tail ends in two failures, so
    its recent failure is the third in a row.
    """
    live = WORKFLOWS - DEAD
    bulk = runs - TAIL * live
    start, end, dead_after = now - timedelta(days=DAYS), now - timedelta(minutes=10), now - timedelta(days=2)
    spacing = (end - start) / bulk
    rows: list[tuple[Any, ...]] = []
    for i in range(bulk):
        finished = start + spacing * i
        w = i % WORKFLOWS
        if w >= live and finished > dead_after:
            w -= WORKFLOWS // 2
        status = rng.choices(STATUSES, WEIGHTS)[0]
        rows.append(run_row(status, finished, round(rng.expovariate(1 / 60), 3), workflows[w]))
        if len(rows) >= BATCH:
            insert_runs(conn, rows)
    tail_start = now - timedelta(hours=TAIL_HOURS)
    tail_spacing = (end - tail_start) / (TAIL * live)
    for k in range(TAIL):
        for w in range(live):
            status = "success"
            if (w == FAILED_RECENT and k > 0) or (w % 40 == 17 and k == 1):
                status = "failure"
            finished = tail_start + tail_spacing * (k * live + w)
            rows.append(run_row(status, finished, 45.0, workflows[w]))
    insert_runs(conn, rows)


def insert_chain_runs(
    conn: sqlite3.Connection, rng: random.Random, n: int, chains: list[int], now: datetime
) -> None:
    start, end = now - timedelta(days=DAYS), now - timedelta(minutes=10)
    spacing = (end - start) / n
    rows = []
    for i in range(n):
        failed = rng.random() < 0.1
        finished = start + spacing * i
        rows.append(chain_row("failure" if failed else "success", finished, chains[i % CHAINS]))
    conn.executemany(CHAIN_INSERT, rows)


CHAIN_INSERT = (
    'INSERT INTO "chains_chainrun" (status, created_at, started_at, finished_at, total_steps, failed_step, '
    "error, params, chain_id, start_position) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def chain_row(status: str, finished: datetime, chain_id: int) -> tuple[Any, ...]:
    started = sqlite_time(finished - timedelta(minutes=3))
    failed_step, error = (2, "step 2 failed") if status == "failure" else (None, "")
    return (status, started, started, sqlite_time(finished), 3, failed_step, error, "{}", chain_id, 1)


FIRE_INSERT = (
    'INSERT INTO "triggers_triggerfire" (trigger_id, due_at, fired_at, outcome, detail, lateness_seconds, '
    "missed_slots, host) VALUES (?, ?, ?, ?, '', ?, 0, 'bench-host')"
)


def insert_fires(conn: sqlite3.Connection, n: int, triggers: list[int], now: datetime) -> None:
    """n on-time fires of the hourly slots before the current one, round robin over the triggers."""
    last_slot = now.replace(minute=0, second=0, microsecond=0)
    rows = []
    for i in range(n):
        due = last_slot - timedelta(hours=1 + i // TRIGGERS)
        fired = due + timedelta(seconds=0.4)
        rows.append((triggers[i % TRIGGERS], sqlite_time(due), sqlite_time(fired), "started", 0.4))
    conn.executemany(FIRE_INSERT, rows)


def insert_recent(
    conn: sqlite3.Connection, workflows: list[int], chains: list[int], triggers: list[int], now: datetime
) -> None:
    """The same activity in the last minute in both databases (after the history: the newest ids)."""
    rows = []
    for j in range(RECENT):
        status = {FAILED_RECENT: "failure", ABANDONED_RECENT: "abandoned"}.get(j, "success")
        seconds = 7200.0 if j == SLOW_RECENT else 30.0
        rows.append(run_row(status, now - timedelta(seconds=58 - 2 * j), seconds, workflows[j]))
    insert_runs(conn, rows)
    running = sqlite_time(now - timedelta(seconds=30))
    conn.execute(
        'INSERT INTO "chains_workflowrun" (status, attempt, created_at, started_at, heartbeat_at, error, '
        "host, pid, params, workflow_id) VALUES ('running', 1, ?, ?, ?, '', 'bench-host', 4243, '{}', ?)",
        (running, running, sqlite_time(now - timedelta(seconds=5)), workflows[RUNNING_WORKFLOW]),
    )
    conn.executemany(
        CHAIN_INSERT,
        [
            chain_row("failure", now - timedelta(seconds=40), chains[0]),
            chain_row("success", now - timedelta(seconds=30), chains[1]),
        ],
    )
    due = now - timedelta(seconds=140)
    conn.execute(
        FIRE_INSERT,
        (triggers[LATE_TRIGGER], sqlite_time(due), sqlite_time(now - timedelta(seconds=20)), "started", 120),
    )


def expected_alerts(triggers: list[int]) -> set[tuple[str, str]]:
    """(kind, subject) of the alerts the recent activity must open, in both databases."""
    dead = {("no_success_within", slug(w)) for w in range(WORKFLOWS - DEAD, WORKFLOWS)}
    return dead | {
        ("workflow_failed", slug(FAILED_RECENT)),
        ("workflow_failed", slug(ABANDONED_RECENT)),
        ("chain_failed", "chain-00"),
        ("consecutive_failures", slug(FAILED_RECENT)),
        ("duration_above", slug(SLOW_RECENT)),
        ("missed_schedule", f"trigger #{triggers[LATE_TRIGGER]} hourly-{LATE_TRIGGER}"),
        ("missed_schedule", f"trigger #{triggers[OVERDUE_TRIGGER]} hourly-{OVERDUE_TRIGGER}"),
        ("stale_runs", slug(ABANDONED_RECENT)),
    }


def table_sizes() -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        sizes = {}
        for table in HISTORY_TABLES:
            cursor.execute(f'SELECT COUNT(*) FROM "{table}"')
            sizes[table] = cursor.fetchone()[0]
    return sizes


# -- evaluating ----------------------------------------------------------------------


class Databases:
    """One open connection per database, swapped in as Django's default (both stay warm)."""

    def __init__(self, paths: dict[str, Path]) -> None:
        from django.db import connections

        base = connections.settings["default"]
        wrapper_class = type(connections["default"])
        self.wrappers = {
            name: wrapper_class({**base, "NAME": str(path)}, "default") for name, path in paths.items()
        }

    def use(self, name: str) -> None:
        from django.db import connections

        flush_rpa_logging()
        connections["default"] = self.wrappers[name]

    def close(self) -> None:
        for wrapper in self.wrappers.values():
            wrapper.close()


def reset(now: datetime) -> None:
    """Back to the state before the evaluation: no alerts, rules last evaluated a minute ago."""
    from alerts.models import Alert, AlertRule, Delivery

    Delivery.objects.all().delete()
    Alert.objects.all().delete()
    AlertRule.objects.update(evaluated_at=now - timedelta(minutes=1))


def time_evaluation(now: datetime) -> float:
    from alerts.rules import evaluate_rules

    reset(now)
    start = time.perf_counter()
    report = evaluate_rules(now)
    elapsed = time.perf_counter() - start
    if report.errors:
        raise SystemExit(f"rule(s) failed: {report.errors}")
    return elapsed


def time_each_rule(now: datetime) -> dict[str, float]:
    """Each rule's evaluate_rule on its own (the same work evaluate_rules does for it)."""
    from alerts.models import AlertRule
    from alerts.rules import EvaluationReport, evaluate_rule

    reset(now)
    times = {}
    for rule in AlertRule.objects.filter(enabled=True).select_related("workflow", "chain"):
        start = time.perf_counter()
        evaluate_rule(rule, now, EvaluationReport())
        times[rule.kind] = time.perf_counter() - start
    return times


@dataclass
class Timings:
    total: list[float] = field(default_factory=list)
    by_kind: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


def timed_rounds(databases: Databases, now: datetime, repeats: int) -> dict[str, Timings]:
    timings = {name: Timings() for name in databases.wrappers}
    names = list(databases.wrappers)
    for i in range(repeats):
        for name in names if i % 2 == 0 else names[::-1]:
            databases.use(name)
            time_evaluation(now)  # warm-up, untimed
            timings[name].total.append(time_evaluation(now))
            for kind, seconds in time_each_rule(now).items():
                timings[name].by_kind[kind].append(seconds)
    return timings


@dataclass
class Captured:
    """One evaluate_rules' statements, each labelled with the rule kind that ran it."""

    statements: list[tuple[str, str]]
    alerts: set[tuple[str, str]]
    summary: str


def capture(now: datetime) -> Captured:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from alerts.models import Alert, AlertRule
    from alerts.rules import evaluate_rules

    reset(now)
    kinds = list(AlertRule.objects.filter(enabled=True).order_by("name").values_list("kind", flat=True))
    with CaptureQueriesContext(connection) as captured:
        report = evaluate_rules(now)
    alerts = set(Alert.objects.open().values_list("rule__kind", "subject"))
    statements = label_statements([q["sql"] for q in captured.captured_queries], kinds)
    return Captured(statements, alerts, report.summary())


def label_statements(sqls: list[str], kinds: list[str]) -> list[tuple[str, str]]:
    """Each rule's statements end with the UPDATE of its evaluated_at (rules run in name order)."""
    labelled: list[tuple[str, str]] = []
    rule = 0
    for sql in sqls:
        if not labelled and sql.startswith("SELECT") and 'FROM "alerts_alertrule"' in sql:
            labelled.append(("evaluate_rules", sql))
            continue
        label = kinds[rule] if rule < len(kinds) else "resolve orphans"
        labelled.append((label, sql))
        if sql.startswith('UPDATE "alerts_alertrule" SET "evaluated_at"'):
            rule += 1
    return labelled


def normalize(sql: str) -> str:
    """The statement with its literals replaced by ?, lists of them collapsed."""
    text = re.sub(r"'(?:[^']|'')*'", "?", sql)
    text = re.sub(r"(?<![\w\"])-?\d+(?:\.\d+)?\b", "?", text)
    return re.sub(r"\?(?:, \?)+", "?, ...", text)


def vm_steps(sql: str) -> int:
    """SQLite VM steps (in units of STEP) to run `sql` to the last row on the current database."""
    from django.db import connection

    connection.ensure_connection()
    raw = connection.connection
    counter = [0]

    def count() -> int:
        counter[0] += 1
        return 0

    raw.set_progress_handler(count, STEP)
    try:
        raw.execute(sql).fetchall()
    finally:
        raw.set_progress_handler(None, STEP)
    return counter[0] * STEP


def query_plan(sql: str) -> list[str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
        return [row[-1] for row in cursor.fetchall()]


@dataclass
class Query:
    label: str
    normalized: str
    example: str
    count: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    steps: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    plan: list[str] = field(default_factory=list)


def measure_queries(databases: Databases, captured: dict[str, Captured]) -> list[Query]:
    """Distinct SELECTs of both evaluations: instances and total VM steps per database, plan on large."""
    queries: dict[tuple[str, str], Query] = {}
    for name, capt in captured.items():
        databases.use(name)
        for label, sql in capt.statements:
            if not sql.startswith("SELECT"):
                continue
            key = (label, normalize(sql))
            query = queries.setdefault(key, Query(label, key[1], sql))
            query.count[name] += 1
            query.steps[name] += vm_steps(sql)
            if name == "large" and not query.plan:
                query.plan = query_plan(sql)
    return list(queries.values())


SCAN_RE = re.compile(r"\bSCAN (?:TABLE )?(" + "|".join(HISTORY_TABLES) + r")\b(.*)")


def flags(query: Query) -> list[str]:
    found = []
    for line in query.plan:
        match = SCAN_RE.search(line)
        if match and "INDEX" in match.group(2):
            found.append(f"full index scan of {match.group(1)}")
        elif match:
            found.append(f"SCAN of {match.group(1)} without an index")
    small, large = query.steps["small"], query.steps["large"]
    if large >= 20_000 and large > GROWTH_FLAG * max(small, STEP):
        found.append(f"VM steps grow with history ({large / max(small, STEP):,.0f}x)")
    return found


# -- main -------------------------------------------------------------------------


def main() -> int:
    args = parse_args(
        __doc__,
        repeats=7,
        repeats_help="interleaved rounds small/large (median)",
        profile_help="also cProfile one evaluation on the large database",
    )
    with scratch_dir("alerts") as directory:
        scratch = Scratch(directory)
        # Log records (one warning per alert) stay buffered: no batch write lands inside a timing.
        setup_django(
            scratch.dir,
            scratch.template,
            RPA_LOG_HANDLER_BATCH="1000000",
            RPA_LOG_HANDLER_FLUSH_SECONDS="1000000",
        )
        from django.utils import timezone

        now = timezone.now()
        started = time.perf_counter()
        ids = make_template(now)
        for name, runs in (("small", SMALL), ("large", LARGE)):
            build(scratch.paths[name], scratch.template, runs, ids, now)
        build_s = time.perf_counter() - started

        databases = Databases(scratch.paths)
        try:
            sizes, captured = {}, {}
            for name in databases.wrappers:
                databases.use(name)
                sizes[name] = table_sizes()
                captured[name] = capture(now)
            timings = timed_rounds(databases, now, args.repeats)
            queries = measure_queries(databases, captured)
            ok = report(build_s, sizes, timings, captured, expected_alerts(ids[2]))
            ok = print_plans(queries) and ok
            if args.profile:
                databases.use("large")
                reset(now)
                from alerts.rules import evaluate_rules

                profile("one evaluate_rules on the large database", lambda: evaluate_rules(now), 30)
        finally:
            databases.close()
        return 0 if ok else 1


def report(
    build_s: float,
    sizes: dict[str, dict[str, int]],
    timings: dict[str, Timings],
    captured: dict[str, Captured],
    expected: set[tuple[str, str]],
) -> bool:
    small, large = timings["small"], timings["large"]
    small_ms, large_ms = statistics.median(small.total) * 1000, statistics.median(large.total) * 1000
    ratio = large_ms / small_ms
    print(f"alert rule evaluation: 8 rules (one per kind), {SMALL:,} vs {LARGE:,} historical runs")
    print(f"  (databases built in {build_s:.0f} s; {len(small.total)} interleaved rounds, median)")
    for name in ("small", "large"):
        print(f"  {name}: " + ", ".join(f"{table} {n:,}" for table, n in sizes[name].items()))
    print(f"  rounds small/large ms:  {rounds(small.total, large.total, scale=1000, digits=2)}")
    print(f"  evaluate_rules, {SMALL:>9,} runs: {small_ms:7.2f} ms")
    print(f"  evaluate_rules, {LARGE:>9,} runs: {large_ms:7.2f} ms")
    print(f"  ratio large/small: {ratio:.2f}x")
    ratio_ok = ratio <= TARGET_RATIO
    print(f"  target ratio <= {TARGET_RATIO}x: {'PASS' if ratio_ok else 'FAIL'}")
    print()
    print("  each rule on its own (evaluate_rule), median ms small / large / ratio:")
    for kind, _ in RULES:
        a, b = statistics.median(small.by_kind[kind]) * 1000, statistics.median(large.by_kind[kind]) * 1000
        print(f"    {kind:<22}{a:8.2f} {b:9.2f} {b / a:8.2f}x")
    print()
    counts = {name: len(c.statements) for name, c in captured.items()}
    same_count = counts["small"] == counts["large"]
    print(
        f"  queries per evaluation: small {counts['small']}, large {counts['large']}: "
        f"{'equal, PASS' if same_count else 'DIFFERENT, FAIL'}"
    )
    for name, capt in captured.items():
        print(f"  {name}: {capt.summary}")
    same_alerts = captured["small"].alerts == captured["large"].alerts == expected
    print(f"  alerts opened ({len(expected)} expected, same in both): {'PASS' if same_alerts else 'FAIL'}")
    for kind, subject in sorted(captured["large"].alerts):
        print(f"    {kind}: {subject}")
    for name, capt in captured.items():
        if capt.alerts != expected:
            missing, extra = sorted(expected - capt.alerts), sorted(capt.alerts - expected)
            print(f"    {name}: missing {missing}, extra {extra}")
    return ratio_ok and same_count and same_alerts


def print_plans(queries: list[Query]) -> bool:
    """Every distinct SELECT: instances, VM steps on small and large, plan on large, flags.

    Those reading a history table get their statement and plan in full; the rest
    (alerts, channels, workflows, chains, triggers: small tables) one line each.
    """
    print()
    print(
        "distinct SELECTs of one evaluation (literals shown as ?): instances per evaluation, SQLite VM "
        f"steps small -> large, EXPLAIN QUERY PLAN on the {LARGE:,}-run database"
    )
    flagged = []
    for query in queries:
        found = flags(query)
        small, large = query.steps["small"], query.steps["large"]
        head = f"  [{query.label}] x{query.count['large']}: steps {small:,} -> {large:,}"
        if not any(f'FROM "{table}"' in query.normalized for table in HISTORY_TABLES):
            table = re.search(r'FROM ("\w+")', query.normalized)
            print(f"{head}  {table.group(1) if table else '?'}: {'; '.join(query.plan)}")
            continue
        print(head + (f"   <-- {'; '.join(found)}" if found else ""))
        print(f"    {shorten(query.normalized)}")
        for line in query.plan:
            print(f"      {line}")
        if found:
            flagged.append((query, found))
    print()
    print("flagged queries:" if flagged else "flagged queries: none")
    for query, found in flagged:
        print(f"  [{query.label}] {'; '.join(found)}")
        print(f"    {collapse_lists(query.example)}")
        print(f"    plan: {'; '.join(query.plan)}")
    unindexed = any("without an index" in f for _, found in flagged for f in found)
    print(f"no SCAN of {', '.join(HISTORY_TABLES)} without an index: {'FAIL' if unindexed else 'PASS'}")
    return not unindexed


def collapse_lists(sql: str) -> str:
    """`IN (1, 2, ..., 200)` as `IN (1, 2, 3, ... 200 values)`."""

    def short(match: re.Match[str]) -> str:
        items = match.group(1).split(", ")
        return f"IN ({', '.join(items[:3])}, ... {len(items)} values)" if len(items) > 5 else match.group(0)

    return re.sub(r"IN \(([^()]*)\)", short, sql)


def shorten(sql: str) -> str:
    """The statement without its long column list."""
    return re.sub(r"^SELECT (.{60}).*? FROM ", r"SELECT \1... FROM ", sql)


if __name__ == "__main__":
    sys.exit(main())
