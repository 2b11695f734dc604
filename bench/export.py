"""Log export speed and memory: 1,000,000 entries through `logs.export.write_zip`.

Two scratch SQLite databases from one migrated template (200 workflows with 5
runs each, for metrics.json): 100,000 and 1,000,000 log entries, written with
raw sqlite3 executemany (a realistic mix: 75% INFO, 10% DEBUG, 10% WARNING,
4% ERROR, 1% CRITICAL; ~45-character messages; small metadata objects).
Each export of the whole table runs in a fresh subprocess, so its peak RSS
(`ru_maxrss`) is its own; the two sizes alternate, median of --repeats rounds.
Beside it, the floor: raw sqlite3 reading the same 1,000,000 rows in the same
order (no JSON, no ZIP); and, on the 100,000 database, the naive way (ORM
`.iterator()` plus `json.dumps` per entry, into a ZIP of execution_logs.json only).

Targets: 1,000,000 entries at >= 100,000 entries/s; peak RSS of the 1,000,000
export within 20 MB of the 100,000 one (constant memory). The 1,000,000 ZIP is
checked: testzip, the three files, one line per entry, counts in metrics.json.

Run from the project root:  .venv/bin/python bench/export.py
Uses its own scratch SQLite databases in a temp directory, removed at the end.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
import zipfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from _django import ROOT, parse_args, profile, quiet_console, rounds, scratch_dir, setup_django

SMALL, LARGE = 100_000, 1_000_000
TARGET_RATE = 100_000
TARGET_MB = 20.0
WORKFLOWS, RUNS_PER_WORKFLOW = 200, 5
LEVEL_MIX = ["INFO"] * 75 + ["DEBUG"] * 10 + ["WARNING"] * 10 + ["ERROR"] * 4 + ["CRITICAL"]
START = datetime(2026, 1, 1)

# Same columns as LogEntry.objects.ingest on SQLite.
RAW_INSERT = (
    'INSERT INTO "logs_logentry" (timestamp, level, component, message, workflow_id, '
    "node_id, run_id, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
RAW_SELECT = (
    "SELECT id, timestamp, level, component, message, workflow_id, node_id, run_id, metadata "
    'FROM "logs_logentry" ORDER BY timestamp, id'
)


def make_template(directory: Path) -> Path:
    """A migrated database with the workflows and runs metrics.json summarises."""
    from django.db import connection
    from django.utils import timezone

    from chains.models import RunStatus, Workflow, WorkflowRun

    workflows = Workflow.objects.bulk_create(
        Workflow(slug=f"bot-{i:03d}", name=f"bot {i}", command=["true"]) for i in range(WORKFLOWS)
    )
    now = timezone.now()
    statuses = [RunStatus.SUCCESS, RunStatus.SUCCESS, RunStatus.SUCCESS, RunStatus.FAILURE, RunStatus.TIMEOUT]
    WorkflowRun.objects.bulk_create(
        WorkflowRun(
            workflow=workflow,
            status=statuses[j],
            created_at=now,
            started_at=now,
            finished_at=now + timedelta(seconds=1 + j * 7 + i % 13),
        )
        for i, workflow in enumerate(workflows)
        for j in range(RUNS_PER_WORKFLOW)
    )
    connection.close()
    template = directory / "template.sqlite3"
    with sqlite3.connect(directory / "bench.sqlite3") as src, sqlite3.connect(template) as dst:
        src.backup(dst)
    src.close()
    dst.close()
    return template


def rows(first: int, count: int) -> Any:
    runs = WORKFLOWS * RUNS_PER_WORKFLOW
    for i in range(first, first + count):
        # One entry every 2.5 s; every other one on a whole second (stored without microseconds).
        moment = START + timedelta(microseconds=i * 2_500_000)
        yield (
            str(moment),
            LEVEL_MIX[i % 100],
            ("bot", "runner", "scheduler")[i % 3],
            f"row {i} processed by step-{i % 10}: status ok",
            f"bot-{i % WORKFLOWS:03d}",
            f"step-{i % 10}",
            1 + i % runs,
            json.dumps({"row": i, "step": i % 10, "ok": True}),
        )


def fill(path: Path, first: int, count: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.executescript("PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;")
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(RAW_INSERT, rows(first, count))
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return time.perf_counter() - start
    finally:
        conn.close()


def build(directory: Path, template: Path) -> tuple[Path, Path]:
    small, large = directory / "small.sqlite3", directory / "large.sqlite3"
    shutil.copyfile(template, small)
    seconds = fill(small, 0, SMALL)
    shutil.copyfile(small, large)
    seconds += fill(large, SMALL, LARGE - SMALL)
    print(f"built {SMALL:,} + {LARGE:,} entry databases in {seconds:.1f} s (raw executemany)")
    return small, large


def export_in_child(db: Path, output: Path, naive: bool = False, profile_it: bool = False) -> dict[str, Any]:
    """One export in a fresh interpreter; its measurements as a dict."""
    args = [sys.executable, __file__, "--child", str(db), str(output)]
    args += ["--naive"] if naive else []
    args += ["--profile"] if profile_it else []
    done = subprocess.run(args, capture_output=True, text=True, check=False, cwd=Path(__file__).parent.parent)
    if done.returncode:
        raise SystemExit(f"export of {db.name} failed:\n{done.stderr}")
    *profile_lines, result = done.stdout.strip().splitlines()
    if profile_it:
        print("\n".join(profile_lines))
    return dict(json.loads(result))


def child(db: Path, output: Path, naive: bool, profile_it: bool) -> None:
    """Runs in the subprocess: set Django up on `db`, export it all, print one JSON line."""
    setup_django_without_migrate(db)
    from logs.export import write_zip
    from rpa_monitor.lib.dates import DateRange

    def run() -> Any:
        return naive_export(output) if naive else write_zip(output, DateRange())

    if profile_it:
        profile(f"one export of {db.name}", run, 25)
        output.unlink()
    gc.collect()
    before_kb = current_rss_kb()
    start = time.perf_counter()
    summary = run()
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    counts = {"entries": summary.entries, "errors": summary.errors, "bytes": summary.bytes}
    print(json.dumps({"seconds": seconds, **counts, "before_kb": before_kb, "peak_kb": peak_kb}))


def setup_django_without_migrate(db: Path) -> None:
    """_django.setup_django minus `migrate` (the database is migrated already): loading the
    migration graph raises the process's RSS high-water mark above what an export needs,
    which would hide the export's own peak."""
    os.environ.pop("DATABASE_URL", None)
    os.environ["RPA_SQLITE_PATH"] = str(db)
    os.environ["RPA_DATA_DIR"] = str(db.parent)
    os.environ["RPA_LOG_DIR"] = str(db.parent / "logs")
    os.environ["DJANGO_SETTINGS_MODULE"] = "rpa_monitor.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    quiet_console()


def current_rss_kb() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def naive_export(output: Path) -> Any:
    """The obvious way: ORM rows decoded into Python objects, json.dumps per entry (execution_logs only)."""
    from logs.export import FIELDS, ExportSummary
    from logs.models import LogEntry

    count = errors = 0
    with (
        zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf,
        zf.open("execution_logs.json", "w", force_zip64=True) as member,
    ):
        member.write(b"[")
        for values in LogEntry.objects.order_by("timestamp", "id").values_list(*FIELDS).iterator(2000):
            item = dict(zip(FIELDS, values, strict=True))
            item["timestamp"] = item["timestamp"].isoformat()
            member.write((",\n" if count else "\n").encode() + json.dumps(item).encode())
            count += 1
            errors += item["level"] in ("ERROR", "CRITICAL")
        member.write(b"\n]\n")
    return ExportSummary(output, count, errors, output.stat().st_size)


def raw_read(db: Path) -> float:
    """The floor: sqlite3 stepping through the same rows in the same order, nothing else."""
    conn = sqlite3.connect(db)
    try:
        start = time.perf_counter()
        cursor = conn.execute(RAW_SELECT)
        n = 0
        while batch := cursor.fetchmany(2000):
            n += len(batch)
        elapsed = time.perf_counter() - start
    finally:
        conn.close()
    if n != LARGE:
        raise SystemExit(f"raw read saw {n:,} rows, expected {LARGE:,}")
    return elapsed


def check(path: Path) -> str:
    """The 1,000,000 ZIP is complete and well-formed (streamed through, never loaded whole)."""
    expected_errors = sum(1 for i in range(LARGE) if LEVEL_MIX[i % 100] in ("ERROR", "CRITICAL"))
    problems = []
    with zipfile.ZipFile(path) as zf:
        if zf.testzip() is not None:
            problems.append("testzip found a bad member")
        if sorted(zf.namelist()) != ["error_logs.json", "execution_logs.json", "metrics.json"]:
            problems.append(f"members {zf.namelist()}")
        lines = 0
        with zf.open("execution_logs.json") as member:
            for line in member:
                lines += line.startswith(b"{")
        errors = json.loads(zf.read("error_logs.json"))
        metrics = json.loads(zf.read("metrics.json"))
    if lines != LARGE:
        problems.append(f"{lines:,} entry lines")
    if len(errors) != expected_errors or any(e["level"] not in ("ERROR", "CRITICAL") for e in errors):
        problems.append(f"{len(errors):,} error entries, expected {expected_errors:,}")
    if metrics["entries"] != {"total": LARGE, "errors": expected_errors}:
        problems.append(f"metrics entries {metrics['entries']}")
    if len(metrics["workflows"]) != WORKFLOWS:
        problems.append(f"{len(metrics['workflows'])} workflows in metrics")
    return "; ".join(problems) or "OK"


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        child(Path(sys.argv[2]), Path(sys.argv[3]), "--naive" in sys.argv, "--profile" in sys.argv)
        return 0
    args = parse_args(
        __doc__,
        repeats=3,
        repeats_help="interleaved rounds of 100k/1M exports (median)",
        profile_help="also cProfile one extra 1,000,000 export (in its subprocess)",
    )
    with scratch_dir("export") as directory:
        setup_django(directory, directory / "bench.sqlite3")
        small, large = build(directory, make_template(directory))
        out_small, out_large = directory / "small.zip", directory / "large.zip"
        results: dict[int, list[dict[str, Any]]] = {SMALL: [], LARGE: []}
        raw: list[float] = []
        for _ in range(args.repeats):
            results[SMALL].append(export_in_child(small, out_small))
            results[LARGE].append(export_in_child(large, out_large))
            raw.append(raw_read(large))
        naive = export_in_child(small, directory / "naive.zip", naive=True)
        verdict = check(out_large)
        ok = report(results, raw, naive, verdict)
        if args.profile:
            export_in_child(large, out_large, profile_it=True)
        return 0 if ok else 1


def report(
    results: dict[int, list[dict[str, Any]]], raw: list[float], naive: dict[str, Any], verdict: str
) -> bool:
    small, large = results[SMALL], results[LARGE]
    for n, runs in results.items():
        if any(r["entries"] != n for r in runs):
            raise SystemExit(f"an export of {n:,} exported {[r['entries'] for r in runs]}")
    seconds = statistics.median(r["seconds"] for r in large)
    rate = LARGE / seconds
    raw_rate = LARGE / statistics.median(raw)
    naive_rate = SMALL / naive["seconds"]
    peak = {n: statistics.median(r["peak_kb"] for r in runs) / 1024 for n, runs in results.items()}
    before = {n: statistics.median(r["before_kb"] for r in runs) / 1024 for n, runs in results.items()}
    growth = peak[LARGE] - peak[SMALL]
    small_rate = SMALL / statistics.median(r["seconds"] for r in small)
    rounds_s = rounds([r["seconds"] for r in small], [r["seconds"] for r in large], digits=2)
    print(f"log export: write_zip of the whole table, {len(large)} interleaved rounds of 100k/1M (median)")
    print(f"  rounds 100k/1M s:              {rounds_s}")
    size = large[0]["bytes"]
    print(f"  ours, {LARGE:>9,} entries:     {rate:>10,.0f} entries/s  ({seconds:.2f} s, {size:,} B)")
    print(f"  ours, {SMALL:>9,} entries:     {small_rate:>10,.0f} entries/s")
    print(
        f"  floor, raw sqlite3 read of 1M: {raw_rate:>10,.0f} rows/s     (same rows and order, no JSON/ZIP)"
    )
    print(f"  naive ORM + json.dumps, 100k:  {naive_rate:>10,.0f} entries/s  (ours {rate / naive_rate:.1f}x)")
    print("  peak RSS of each export's subprocess (ru_maxrss), and its RSS once Django was set up:")
    print(f"    {SMALL:>9,} entries: {peak[SMALL]:7.1f} MB  (before the export {before[SMALL]:.1f} MB)")
    print(f"    {LARGE:>9,} entries: {peak[LARGE]:7.1f} MB  (before the export {before[LARGE]:.1f} MB)")
    print(f"    1M - 100k: {growth:+.1f} MB")
    print(f"  1M ZIP check: {verdict}")
    rate_ok, memory_ok = rate >= TARGET_RATE, growth <= TARGET_MB
    print(f"  target >= {TARGET_RATE:,} entries/s: {'PASS' if rate_ok else 'FAIL'}")
    print(f"  target peak(1M) - peak(100k) <= {TARGET_MB:.0f} MB: {'PASS' if memory_ok else 'FAIL'}")
    return rate_ok and memory_ok and verdict == "OK"


if __name__ == "__main__":
    sys.exit(main())
