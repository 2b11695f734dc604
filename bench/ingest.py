"""End-to-end log ingest rate of a bot's stdout, against raw sqlite3 and the ORM.

A real bot subprocess prints 200,000 JSON lines; `chains.runner.run_workflow`
reads the pipe and stores them via `LogEntry.objects.ingest`. Beside it, in the
same run, on fresh copies of the same migrated database (same table, same
indexes): (a) raw `sqlite3` executemany of the same rows in one transaction,
(b) per-row Django `Model.save()` on a smaller N, scaled to rows/s, and
(c) Django `bulk_create`. Ours and raw are interleaved, median of --repeats.

Target: ours >= 0.3x the raw executemany rate.

Run from the project root:  .venv/bin/python bench/ingest.py
Uses its own scratch SQLite databases in a temp directory, removed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _django import flush_rpa_logging, parse_args, profile, rounds, scratch_dir, setup_django

LINES = 200_000
SAVE_N = 5_000
TARGET_RATIO = 0.3
WORKFLOW_SLUG = "bench-ingest-bot"

# The bot prints one JSON object per line, with print(), as bots do.
BOT_SOURCE = """\
import sys
n = int(sys.argv[1])
for i in range(n):
    print('{"level":"INFO","message":"row %d processed","node_id":"step-%d","row":%d}' % (i, i % 10, i))
"""

# Same columns and statement shape as LogEntry.objects.ingest on SQLite.
RAW_INSERT = (
    'INSERT INTO "logs_logentry" (timestamp, level, component, message, workflow_id, '
    "node_id, run_id, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


class Scratch:
    """A temp directory: the live scratch database plus a pristine migrated template."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.db = self.dir / "bench.sqlite3"
        self.template = self.dir / "template.sqlite3"
        self.bot = self.dir / "bot.py"
        self.bot.write_text(BOT_SOURCE)

    def fresh_copy(self, name: str) -> Path:
        """A fresh copy of the template at `name` (stale -wal/-shm files removed)."""
        path = self.dir / name
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        tmp = self.dir / f"{name}.tmp"
        shutil.copyfile(self.template, tmp)
        os.replace(tmp, path)
        return path

    def reset_django_db(self) -> None:
        """Swap Django's database for a fresh copy of the template."""
        from django.db import connections

        flush_rpa_logging()
        connections.close_all()
        self.fresh_copy(self.db.name)


def make_template(scratch: Scratch) -> tuple[int, int]:
    """Create the bot workflow and one reference run, then snapshot the database."""
    from django.db import connection

    from chains.models import RunStatus, Workflow, WorkflowRun

    workflow = Workflow.objects.create(
        slug=WORKFLOW_SLUG,
        name="ingest bot",
        command=["python", str(scratch.bot), str(LINES)],
        timeout_seconds=600,
    )
    ref_run = WorkflowRun.objects.create(workflow=workflow, status=RunStatus.SUCCESS)
    connection.close()
    with sqlite3.connect(scratch.db) as src, sqlite3.connect(scratch.template) as dst:
        src.backup(dst)
    src.close()
    dst.close()
    return workflow.pk, ref_run.pk


def bot_row(i: int) -> tuple[str, str, str, dict[str, Any]]:
    """(level, message, node_id, metadata) of the bot's line i, as the runner parses it."""
    return "INFO", f"row {i} processed", f"step-{i % 10}", {"row": i}


def run_ours(scratch: Scratch, workflow_id: int) -> tuple[float, int]:
    from chains.models import RunStatus, Workflow
    from chains.runner import run_workflow
    from logs.models import LogEntry

    scratch.reset_django_db()
    workflow = Workflow.objects.get(pk=workflow_id)
    start = time.perf_counter()
    run = run_workflow(workflow)
    elapsed = time.perf_counter() - start
    flush_rpa_logging()
    stored = LogEntry.objects.filter(run=run, component="bot").count()
    if run.status != RunStatus.SUCCESS:
        raise SystemExit(f"bot run {run.pk} ended {run.status}: {run.error}")
    return elapsed, stored


def raw_params(run_id: int) -> list[tuple[Any, ...]]:
    now = str(datetime.now(UTC).replace(tzinfo=None))
    params = []
    for i in range(LINES):
        level, message, node_id, metadata = bot_row(i)
        params.append((now, level, "bot", message, WORKFLOW_SLUG, node_id, run_id, json.dumps(metadata)))
    return params


def run_raw(scratch: Scratch, params: list[tuple[Any, ...]]) -> float:
    """Raw sqlite3 executemany, one transaction, the project's pragmas, fresh database."""
    path = scratch.fresh_copy("raw.sqlite3")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.executescript("PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;PRAGMA foreign_keys=ON;")
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(RAW_INSERT, params)
        conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        (count,) = conn.execute('SELECT COUNT(*) FROM "logs_logentry"').fetchone()
    finally:
        conn.close()
    if count != LINES:
        raise SystemExit(f"raw executemany stored {count} rows, expected {LINES}")
    return elapsed


def entries(run_id: int, n: int) -> list[Any]:
    from logs.models import LogEntry

    now = datetime.now(UTC)
    result = []
    for i in range(n):
        level, message, node_id, metadata = bot_row(i)
        result.append(
            LogEntry(
                timestamp=now,
                level=level,
                component="bot",
                message=message,
                workflow_id=WORKFLOW_SLUG,
                node_id=node_id,
                run_id=run_id,
                metadata=metadata,
            )
        )
    return result


def run_orm(scratch: Scratch, run_id: int, n: int, store: Callable[[list[Any]], None]) -> float:
    """Time `store` of n model instances (built beforehand), on a fresh database."""
    from logs.models import LogEntry

    scratch.reset_django_db()
    objs = entries(run_id, n)
    start = time.perf_counter()
    store(objs)
    elapsed = time.perf_counter() - start
    if LogEntry.objects.count() != n:
        raise SystemExit(f"ORM path stored {LogEntry.objects.count()} rows, expected {n}")
    return elapsed


def save_each(objs: list[Any]) -> None:
    for obj in objs:
        obj.save()


def bulk_create(objs: list[Any]) -> None:
    from logs.models import LogEntry

    LogEntry.objects.bulk_create(objs)


def time_bot_alone(scratch: Scratch) -> float:
    """The bot's own time, printing into a pipe drained as fast as possible."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")  # the runner gives bots unbuffered stdout
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, str(scratch.bot), str(LINES)], stdout=subprocess.PIPE, env=env, check=True
    )
    return time.perf_counter() - start


def main() -> int:
    args = parse_args(
        __doc__,
        repeats=3,
        repeats_help="interleaved rounds of ours/raw (median)",
        profile_help="also cProfile one extra run of ours",
    )

    with scratch_dir("ingest") as directory:
        scratch = Scratch(directory)
        setup_django(scratch.dir, scratch.db)
        workflow_id, ref_run_id = make_template(scratch)
        params = raw_params(ref_run_id)
        ours: list[float] = []
        raw: list[float] = []
        stored_counts: list[int] = []
        for _ in range(args.repeats):
            elapsed, stored = run_ours(scratch, workflow_id)
            ours.append(elapsed)
            stored_counts.append(stored)
            raw.append(run_raw(scratch, params))
        save_s = run_orm(scratch, ref_run_id, SAVE_N, save_each)
        bulk_s = run_orm(scratch, ref_run_id, LINES, bulk_create)
        bot_s = time_bot_alone(scratch)
        ok = report(ours, raw, save_s, bulk_s, bot_s, stored_counts)
        if args.profile:
            label = f"one run_workflow ingest of {LINES:,} lines"
            profile(label, lambda: run_ours(scratch, workflow_id), 35)
        return 0 if ok else 1


def report(
    ours: list[float], raw: list[float], save_s: float, bulk_s: float, bot_s: float, stored: list[int]
) -> bool:
    ours_rate = LINES / statistics.median(ours)
    raw_rate = LINES / statistics.median(raw)
    ratio = ours_rate / raw_rate
    print(f"log ingest: {LINES:,} bot JSON lines, {len(ours)} interleaved rounds of ours/raw (median)")
    print(f"  rounds ours/raw s:             {rounds(ours, raw)}")
    print("  ours is end to end (bot start, pipe, parse, store); the others time storage of prebuilt rows")
    print(f"  ours (run_workflow, end to end): {ours_rate:>10,.0f} rows/s  ({statistics.median(ours):.3f} s)")
    print(f"  (a) raw sqlite3 executemany:     {raw_rate:>10,.0f} rows/s  ({statistics.median(raw):.3f} s)")
    print(
        f"  (b) per-row Model.save():        {SAVE_N / save_s:>10,.0f} rows/s  "
        f"({SAVE_N:,} rows in {save_s:.3f} s, scaled to rows/s)"
    )
    print(f"  (c) Django bulk_create:          {LINES / bulk_s:>10,.0f} rows/s  ({bulk_s:.3f} s)")
    print(f"  bot alone (into a pipe):         {LINES / bot_s:>10,.0f} lines/s ({bot_s:.3f} s)")
    print(f"  ratio ours/raw: {ratio:.2f}x   ours/bulk_create: {ours_rate * bulk_s / LINES:.1f}x")
    verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
    print(f"  target ours >= {TARGET_RATIO}x raw executemany: {verdict}")
    complete = all(n == LINES for n in stored)
    counts = ", ".join(f"{n:,}" for n in stored)
    print(f"  bot rows stored per run: {counts} ({'OK' if complete else 'WRONG'}, expected {LINES:,})")
    return ratio >= TARGET_RATIO and complete


if __name__ == "__main__":
    sys.exit(main())
