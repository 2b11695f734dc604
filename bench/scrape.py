"""Cost of a /metrics scrape: O(series), not O(history).

Two scratch databases built from one migrated template, both with 200 workflows,
20 chains, 5 running runs (2 of them stale) and a scheduler tick: "small" with
1,000 historical workflow runs, "large" with 1,000,000. Each also holds one log
entry per run and one chain run per ten runs, and the counter tables /metrics
reads (WorkflowRunCount, WorkflowDurationBucket, WorkflowDurationSum, RunMinute,
ChainRunCount, LogCount, TriggerFireCount), accumulated while the history rows
are generated, exactly as record_finished_run would have, and checked against
GROUP BY aggregates of the history before timing. Rows go in with raw sqlite3
executemany (the ORM would take many minutes for a million runs).

Timed: a whole GET /metrics through Django's test Client (middleware,
django-prometheus, our collector, the text rendering). Each database has its own
open connection, swapped in as Django's default between scrapes. Each round: 3
untimed warm-up scrapes per database, then 20 timed scrapes of each, alternating
small/large scrape by scrape (ABBA order); median of all timed scrapes per
database (default --repeats 5 rounds, so 100 scrapes each).

Targets: scrape(1,000,000 runs) <= 1.2x scrape(1,000 runs), and < 50 ms.

Run from the project root:  .venv/bin/python bench/scrape.py
Uses its own scratch SQLite databases in a temp directory, removed at the end.
"""

from __future__ import annotations

import bisect
import random
import shutil
import sqlite3
import statistics
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _django import parse_args, profile, rounds, scratch_dir, setup_django

WORKFLOWS = 200
CHAINS = 20
SMALL = 1_000
LARGE = 1_000_000
RUNNING, STALE = 5, 2
RUN_SPACING_S = 31.5  # about two runs a minute: a million runs is a year of history
TARGET_RATIO = 1.2
TARGET_MS = 50.0
WARMUP = 3
STATUSES = ["success", "failure", "timeout", "cancelled", "abandoned"]
FAILED = {"failure", "timeout", "abandoned"}
LEVEL_OF = {
    "success": "INFO",
    "failure": "ERROR",
    "timeout": "ERROR",
    "cancelled": "WARNING",
    "abandoned": "CRITICAL",
}
COMPONENTS = ["bot", "runner", "scheduler"]
LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
BATCH = 50_000


def sqlite_time(moment: datetime) -> str:
    """Django's SQLite datetime storage: naive UTC text."""
    return str(moment.astimezone(UTC).replace(tzinfo=None))


class Scratch:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.template = directory / "template.sqlite3"
        self.small = directory / "small.sqlite3"
        self.large = directory / "large.sqlite3"


def make_template() -> tuple[list[int], list[str], list[int], datetime]:
    """Workflows, chains, a scheduler tick (through the ORM); returns ids, slugs, chain ids, now."""
    from django.db import connection
    from django.utils import timezone

    from chains.models import Chain, Workflow
    from triggers.models import SchedulerTick

    now = timezone.now()
    Workflow.objects.bulk_create(
        Workflow(slug=f"bot-{i:03d}", name=f"Bot {i}", command=["true"]) for i in range(WORKFLOWS)
    )
    Chain.objects.bulk_create(Chain(slug=f"chain-{i:02d}", name=f"Chain {i}") for i in range(CHAINS))
    SchedulerTick.objects.create(host="bench-host", pid=1, last_tick_at=now)
    workflows = list(Workflow.objects.order_by("id").values_list("id", "slug"))
    chains = list(Chain.objects.order_by("id").values_list("id", flat=True))
    connection.close()
    return [pk for pk, _ in workflows], [slug for _, slug in workflows], chains, now


def build(
    path: Path, template: Path, runs: int, ids: list[int], slugs: list[str], chains: list[int], now: datetime
) -> dict[str, int]:
    """Copy the template to `path` and fill it with `runs` runs of history plus consistent counters."""
    from chains.models import DURATION_BUCKETS

    shutil.copyfile(template, path)
    rng = random.Random(runs)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript("PRAGMA journal_mode=WAL;PRAGMA synchronous=OFF;")
    conn.execute("BEGIN")
    run_counts: Counter[tuple[int, str]] = Counter()
    bucket_counts: Counter[tuple[int, int]] = Counter()
    sums: dict[int, list[float]] = defaultdict(lambda: [0, 0.0])
    minutes: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    log_counts: Counter[tuple[str, str]] = Counter()
    run_rows: list[tuple[Any, ...]] = []
    log_rows: list[tuple[Any, ...]] = []
    first_id = 1
    for i in range(runs):
        w = i % WORKFLOWS
        nth = i // WORKFLOWS
        # Every workflow's first runs cover every final status (the same series in both databases).
        if nth < len(STATUSES):
            status = STATUSES[(nth + w) % len(STATUSES)]
        else:
            status = rng.choices(STATUSES, (85, 8, 3, 2, 2))[0]
        seconds = round(min(rng.expovariate(1 / 40), 20_000), 6)
        finished = now - timedelta(seconds=(runs - i) * RUN_SPACING_S)
        started = finished - timedelta(seconds=seconds)
        workflow_id = ids[w]
        run_rows.append(
            (
                status,
                1,
                sqlite_time(started),
                sqlite_time(started),
                sqlite_time(finished),
                sqlite_time(finished),
                0 if status == "success" else 1,
                "",
                "bench-host",
                "{}",
                workflow_id,
            )
        )
        # What record_finished_run does when the run finishes.
        run_counts[workflow_id, status] += 1
        bucket_counts[workflow_id, bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        sums[workflow_id][0] += 1
        sums[workflow_id][1] += seconds
        if status != "cancelled":
            minute = minutes[sqlite_time(finished.replace(second=0, microsecond=0))]
            minute[0] += 1
            minute[1] += status in FAILED
        # One log line per run; the first 15 cover every (level, component) pair.
        level, component = (
            (LEVELS[i % 5], COMPONENTS[i // 5]) if i < 15 else (LEVEL_OF[status], COMPONENTS[i % 3])
        )
        log_rows.append(
            (sqlite_time(finished), level, component, f"{slugs[w]} {status}", slugs[w], "", first_id + i)
        )
        log_counts[level, component] += 1
        if len(run_rows) >= BATCH:
            flush_rows(conn, run_rows, log_rows)
    flush_rows(conn, run_rows, log_rows)
    chain_counts = insert_chain_runs(conn, runs // 10, chains, now)
    insert_running(conn, ids, now)
    conn.executemany(
        'INSERT INTO "chains_workflowruncount" (workflow_id, status, count) VALUES (?, ?, ?)',
        [(w, s, n) for (w, s), n in run_counts.items()],
    )
    conn.executemany(
        'INSERT INTO "chains_workflowdurationbucket" (workflow_id, bucket, count) VALUES (?, ?, ?)',
        [(w, b, n) for (w, b), n in bucket_counts.items()],
    )
    conn.executemany(
        'INSERT INTO "chains_workflowdurationsum" (workflow_id, count, sum) VALUES (?, ?, ?)',
        [(w, int(c), s) for w, (c, s) in sums.items()],
    )
    conn.executemany(
        'INSERT INTO "chains_runminute" (minute, finished, failed) VALUES (?, ?, ?)',
        [(m, f, x) for m, (f, x) in minutes.items()],
    )
    conn.executemany(
        'INSERT INTO "chains_chainruncount" (chain_id, status, count) VALUES (?, ?, ?)',
        [(c, s, n) for (c, s), n in chain_counts.items()],
    )
    conn.executemany(
        'INSERT INTO "logs_logcount" (level, component, count) VALUES (?, ?, ?)',
        [(lv, c, n) for (lv, c), n in log_counts.items()],
    )
    # Fires that started runs (the scrape reads only this table, not the fire history).
    conn.executemany(
        'INSERT INTO "triggers_triggerfirecount" (trigger_type, workflow_id, count) VALUES (?, ?, ?)',
        [("schedule", slug, max(1, runs // WORKFLOWS // 2)) for slug in slugs],
    )
    conn.execute("COMMIT")
    check_consistent(conn)
    sizes = {
        table: conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]
        for table in [
            "chains_workflowrun",
            "logs_logentry",
            "chains_chainrun",
            "chains_runminute",
            "chains_workflowdurationbucket",
        ]
    }
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return sizes


def flush_rows(
    conn: sqlite3.Connection, run_rows: list[tuple[Any, ...]], log_rows: list[tuple[Any, ...]]
) -> None:
    conn.executemany(
        'INSERT INTO "chains_workflowrun" (status, attempt, created_at, started_at, finished_at, '
        "heartbeat_at, exit_code, error, host, params, workflow_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        run_rows,
    )
    conn.executemany(
        'INSERT INTO "logs_logentry" (timestamp, level, component, message, workflow_id, node_id, run_id, '
        "metadata) VALUES (?, ?, ?, ?, ?, ?, ?, '{}')",
        log_rows,
    )
    run_rows.clear()
    log_rows.clear()


def insert_chain_runs(
    conn: sqlite3.Connection, n: int, chains: list[int], now: datetime
) -> Counter[tuple[int, str]]:
    counts: Counter[tuple[int, str]] = Counter()
    rows = []
    for i in range(n):
        chain_id = chains[i % len(chains)]
        status = "failure" if i % 17 == 0 else "success"
        finished = sqlite_time(now - timedelta(seconds=(n - i) * RUN_SPACING_S * 10))
        rows.append((status, finished, finished, finished, 1, "", "{}", chain_id, 1))
        counts[chain_id, status] += 1
    conn.executemany(
        'INSERT INTO "chains_chainrun" (status, created_at, started_at, finished_at, total_steps, error, '
        "params, chain_id, start_position) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    return counts


def insert_running(conn: sqlite3.Connection, ids: list[int], now: datetime) -> None:
    rows = []
    for i in range(RUNNING):
        heartbeat = now - timedelta(hours=1) if i < STALE else now
        rows.append(
            (
                "running",
                1,
                sqlite_time(now),
                sqlite_time(now),
                sqlite_time(heartbeat),
                "",
                "elsewhere",
                "{}",
                ids[i],
            )
        )
    conn.executemany(
        'INSERT INTO "chains_workflowrun" (status, attempt, created_at, started_at, heartbeat_at, error, '
        "host, params, workflow_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def check_consistent(conn: sqlite3.Connection) -> None:
    """The counter tables agree with GROUP BY aggregates of the history (what a live system keeps)."""
    checks = {
        "WorkflowRunCount": (
            'SELECT workflow_id, status, count FROM "chains_workflowruncount"',
            "SELECT workflow_id, status, COUNT(*) FROM \"chains_workflowrun\" WHERE status != 'running' "
            "GROUP BY 1, 2",
        ),
        "WorkflowDurationSum": (
            'SELECT workflow_id, count FROM "chains_workflowdurationsum"',
            "SELECT workflow_id, COUNT(*) FROM \"chains_workflowrun\" WHERE status != 'running' GROUP BY 1",
        ),
        "LogCount": (
            'SELECT level, component, count FROM "logs_logcount"',
            'SELECT level, component, COUNT(*) FROM "logs_logentry" GROUP BY 1, 2',
        ),
        "ChainRunCount": (
            'SELECT chain_id, status, count FROM "chains_chainruncount"',
            'SELECT chain_id, status, COUNT(*) FROM "chains_chainrun" GROUP BY 1, 2',
        ),
        "RunMinute": (
            'SELECT SUM(finished), SUM(failed) FROM "chains_runminute"',
            "SELECT COUNT(*), SUM(status IN ('failure', 'timeout', 'abandoned')) FROM \"chains_workflowrun\" "
            "WHERE status NOT IN ('running', 'cancelled')",
        ),
        "WorkflowDurationBucket": (
            'SELECT SUM(count) FROM "chains_workflowdurationbucket"',
            "SELECT COUNT(*) FROM \"chains_workflowrun\" WHERE status != 'running'",
        ),
    }
    for name, (counters, history) in checks.items():
        if sorted(conn.execute(counters).fetchall()) != sorted(conn.execute(history).fetchall()):
            raise SystemExit(f"{name} disagrees with the history it counts")


class Databases:
    """One open connection per database, swapped in as Django's default connection between
    scrapes, so the two alternate scrape by scrape and both stay warm."""

    def __init__(self, paths: dict[str, Path]) -> None:
        from django.db import connections

        base = connections.settings["default"]
        wrapper_class = type(connections["default"])
        self.wrappers = {
            name: wrapper_class({**base, "NAME": str(path)}, "default") for name, path in paths.items()
        }

    def use(self, name: str) -> None:
        from django.db import connections

        connections["default"] = self.wrappers[name]

    def close(self) -> None:
        for wrapper in self.wrappers.values():
            wrapper.close()


def scrape_once(client: Any) -> tuple[float, bytes]:
    start = time.perf_counter()
    response = client.get("/metrics")
    elapsed = time.perf_counter() - start
    if response.status_code != 200:
        raise SystemExit(f"/metrics answered {response.status_code}")
    return elapsed, response.content


def timed_round(client: Any, databases: Databases, scrapes: int) -> dict[str, list[float]]:
    """Warm both up, then alternate small/large scrape by scrape (ABBA: neither always goes first)."""
    names = list(databases.wrappers)
    for name in names:
        databases.use(name)
        for _ in range(WARMUP):
            scrape_once(client)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(scrapes):
        for name in names if i % 2 == 0 else names[::-1]:
            databases.use(name)
            times[name].append(scrape_once(client)[0])
    return times


def describe(body: bytes) -> tuple[int, float, float]:
    """(sample lines, workflow_executions_total sum, error_rate) of a scrape."""
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    samples = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
    executions = sum(s.value for s in families["workflow_executions"].samples)
    return samples, executions, families["error_rate"].samples[0].value


def main() -> int:
    args = parse_args(
        __doc__,
        repeats=5,
        repeats_help="interleaved rounds of small/large (median of all timed scrapes)",
        profile_help="also cProfile 20 scrapes of the large database",
    )
    scrapes = 20
    with scratch_dir("scrape") as directory:
        scratch = Scratch(directory)
        setup_django(scratch.dir, scratch.template)
        from django.test import Client
        from django.test.utils import setup_test_environment

        setup_test_environment()  # ALLOWED_HOSTS gets "testserver"
        ids, slugs, chains, now = make_template()
        started = time.perf_counter()
        small_sizes = build(scratch.small, scratch.template, SMALL, ids, slugs, chains, now)
        large_sizes = build(scratch.large, scratch.template, LARGE, ids, slugs, chains, now)
        build_s = time.perf_counter() - started

        client = Client()
        databases = Databases({"small": scratch.small, "large": scratch.large})
        small: list[float] = []
        large: list[float] = []
        try:
            for _ in range(args.repeats):
                times = timed_round(client, databases, scrapes)
                small += times["small"]
                large += times["large"]
            databases.use("small")
            small_body = scrape_once(client)[1]
            databases.use("large")
            large_body = scrape_once(client)[1]
            ok = report(small, large, scrapes, small_sizes, large_sizes, small_body, large_body, build_s)
            if args.profile:
                profile(
                    "20 scrapes of the large database", lambda: [scrape_once(client) for _ in range(20)], 30
                )
        finally:
            databases.close()
        return 0 if ok else 1


def report(
    small: list[float],
    large: list[float],
    scrapes: int,
    small_sizes: dict[str, int],
    large_sizes: dict[str, int],
    small_body: bytes,
    large_body: bytes,
    build_s: float,
) -> bool:
    small_ms, large_ms = statistics.median(small) * 1000, statistics.median(large) * 1000
    ratio = large_ms / small_ms
    print(
        f"/metrics scrape: {WORKFLOWS} workflows, {SMALL:,} vs {LARGE:,} historical runs "
        f"(databases built in {build_s:.0f} s)"
    )
    for name, sizes, body in [("small", small_sizes, small_body), ("large", large_sizes, large_body)]:
        samples, executions, error_rate = describe(body)
        print(
            f"  {name}: {sizes['chains_workflowrun']:,} runs, {sizes['logs_logentry']:,} log entries, "
            f"{sizes['chains_chainrun']:,} chain runs, {sizes['chains_runminute']:,} run-minutes, "
            f"{sizes['chains_workflowdurationbucket']:,} bucket rows; scrape: {len(body):,} bytes, "
            f"{samples:,} samples, executions {executions:,.0f}, error_rate {error_rate:.1f}%"
        )
    per_round = [
        (statistics.median(small[i : i + scrapes]), statistics.median(large[i : i + scrapes]))
        for i in range(0, len(small), scrapes)
    ]
    by_round = rounds([a for a, _ in per_round], [b for _, b in per_round], 1000, 2)
    print(f"  round medians small/large ms:  {by_round}")
    print(f"  scrape, 1,000 runs:      {small_ms:6.2f} ms  (median of {len(small)})")
    print(f"  scrape, 1,000,000 runs:  {large_ms:6.2f} ms  (median of {len(large)})")
    print(f"  ratio large/small: {ratio:.2f}x")
    ratio_ok, abs_ok = ratio <= TARGET_RATIO, large_ms < TARGET_MS
    print(f"  target ratio <= {TARGET_RATIO}x: {'PASS' if ratio_ok else 'FAIL'}")
    print(f"  target scrape < {TARGET_MS:.0f} ms (1,000,000 runs): {'PASS' if abs_ok else 'FAIL'}")
    return ratio_ok and abs_ok


if __name__ == "__main__":
    sys.exit(main())
