"""Cost of a scheduler tick: O(due), not O(all triggers); and the firing rate.

Two scratch databases built from one migrated template: "small" with 100
enabled schedule triggers, "large" with 100,000, none of them due (plus one
file trigger on an empty directory in each, so the file scan runs too). The
real `triggers.scheduler.tick(now)` (reap stale runs, fire due schedules, scan
file triggers, record the tick) is timed on each, interleaved, median of
--repeats rounds. Then, on the large database, 1,000 of the triggers are made
due and one tick fires them (runs are only enqueued in the database task
queue, never executed): triggers fired per second, exactly 1,000 `started`
fires, and a second tick right after fires nothing. Also printed: SQLite's
query plan of the tick's queries (the due query must use `trigger_due_idx`).

Target: tick(100,000 triggers, none due) <= 1.5x tick(100 triggers, none due).

Run from the project root:  .venv/bin/python bench/tick.py
Uses its own scratch SQLite databases in a temp directory, removed at the end.
"""

from __future__ import annotations

import sqlite3
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from _django import flush_rpa_logging, parse_args, profile, rounds, scratch_dir, setup_django

SMALL = 100
LARGE = 100_000
DUE = 1_000
INTERVAL = 3600
TARGET_RATIO = 1.5


class Scratch:
    """A temp directory: a migrated template and the two databases made from it."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.template = self.dir / "template.sqlite3"
        self.small = self.dir / "small.sqlite3"
        self.large = self.dir / "large.sqlite3"
        self.inbox = self.dir / "inbox"  # the file trigger's (empty) directory
        self.inbox.mkdir()


def use_database(path: Path) -> None:
    """Point the default connection at `path` (reconnects on the next query)."""
    from django.db import connection

    flush_rpa_logging()
    connection.close()
    connection.settings_dict["NAME"] = str(path)


def slot_after(moment: datetime) -> datetime:
    from triggers.schedule import Schedule

    slot = Schedule.from_config({"interval_seconds": INTERVAL}).next_after(moment)
    assert slot is not None
    return slot


def build(scratch: Scratch, now: datetime) -> None:
    """The template (a `true` workflow, one file trigger), then small and large from it."""
    from django.db import connection

    from chains.models import Workflow
    from triggers.models import Trigger

    workflow = Workflow.objects.create(slug="bench-true", name="true", command=["true"])
    Trigger.objects.create(
        name="bench-file", trigger_type="file", workflow=workflow, config={"path": str(scratch.inbox)}
    )
    connection.close()
    for path in (scratch.small, scratch.large):
        with sqlite3.connect(scratch.template) as src, sqlite3.connect(path) as dst:
            src.backup(dst)
        src.close()
        dst.close()
    next_slot = slot_after(now)
    for path, count in ((scratch.small, SMALL), (scratch.large, LARGE)):
        use_database(path)
        # bulk_create bypasses Trigger.save(): next_fire_at is set here, to the next slot.
        Trigger.objects.bulk_create(
            (
                Trigger(
                    name=f"bench-schedule-{i:06d}",
                    trigger_type="schedule",
                    workflow=workflow,
                    config={"interval_seconds": INTERVAL},
                    next_fire_at=next_slot,
                )
                for i in range(count)
            ),
            batch_size=2000,
        )
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def time_tick(now: datetime) -> tuple[float, int]:
    from triggers.scheduler import tick

    start = time.perf_counter()
    report = tick(now)
    return time.perf_counter() - start, len(report.fires)


def time_idle(path: Path, now: datetime) -> float:
    """One untimed tick (reconnect, warm caches), then one timed tick; nothing may fire."""
    use_database(path)
    time_tick(now)
    elapsed, fired = time_tick(now)
    if fired:
        raise SystemExit(f"{path.name}: {fired} fire(s) in a tick where nothing is due")
    return elapsed


def make_due(now: datetime, offset: int) -> list[int]:
    """Move DUE schedule triggers, spread over the table, back to the previous slot (<= now)."""
    from triggers.models import Trigger

    schedule_ids = Trigger.objects.filter(trigger_type="schedule").order_by("id").values_list("id", flat=True)
    ids = list(schedule_ids)[offset :: LARGE // DUE][:DUE]
    previous_slot = slot_after(now) - timedelta(seconds=INTERVAL)
    assert previous_slot <= now
    Trigger.objects.filter(id__in=ids).update(next_fire_at=previous_slot)
    return ids


def fire_due(now: datetime, offset: int) -> tuple[float, dict[str, int]]:
    """Make DUE triggers due, time one tick; check the fires, then that a second tick fires nothing."""
    from chains.models import WorkflowRun
    from triggers.models import TriggerFire

    ids = make_due(now, offset)
    elapsed, fired = time_tick(now)
    fires = TriggerFire.objects.filter(trigger_id__in=ids, due_at__lte=now)
    checks = {
        "fires reported by the tick": fired,
        "TriggerFire rows, outcome started": fires.started().count(),
        "TriggerFire rows, other outcomes": fires.exclude(outcome="started").count(),
        "queued WorkflowRun rows": WorkflowRun.objects.filter(trigger_id__in=ids, status="queued").count(),
        "fires by a second tick right after": time_tick(now)[1],
    }
    return elapsed, checks


def idle_tick_selects(now: datetime) -> list[str]:
    """The SELECT statements an idle tick runs, as executed (SQLite inlines the parameters)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        time_tick(now)
    return [q["sql"] for q in captured.captured_queries if q["sql"].lstrip().upper().startswith("SELECT")]


def label_of(sql: str) -> str:
    if '"next_fire_at" <=' in sql:
        return "due schedules (fire_due_schedules)"
    if "'file'" in sql:
        return "file triggers (scan_file_triggers)"
    if '"heartbeat_at" <' in sql:
        return "stale runs (reap_stale_runs)"
    if '"triggers_seenfile"' in sql:
        return "a file trigger's seen files (scan_directory)"
    return sql[:80]


def print_plans(now: datetime) -> bool:
    """The plan of every SELECT an idle tick runs; True when the due query uses trigger_due_idx.

    The statements are captured from a real tick, not rebuilt here, so the plans
    follow whatever the scheduler's code does now.
    """
    from django.db import connection

    print(f"query plans of an idle tick's SELECTs (EXPLAIN QUERY PLAN, {LARGE:,}-trigger database):")
    due_plans: list[str] = []
    for sql in idle_tick_selects(now):
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
            plan = [row[-1] for row in cursor.fetchall()]
        label = label_of(sql)
        print(f"  {label}:")
        for line in plan:
            print(f"    {line}")
        if label.startswith("due schedules"):
            due_plans += plan
    uses_index = any("trigger_due_idx" in line for line in due_plans)
    print(f"  due query uses trigger_due_idx: {'yes' if uses_index else 'NO'}")
    return uses_index


def main() -> int:
    args = parse_args(
        __doc__,
        repeats=15,
        repeats_help="interleaved rounds small/large (median)",
        profile_help="also cProfile an idle and a due tick",
    )

    with scratch_dir("tick") as directory:
        scratch = Scratch(directory)
        # Fired runs go into the database task queue; nothing here executes them.
        setup_django(scratch.dir, scratch.template, RPA_TASKS_BACKEND="django_tasks_db.DatabaseBackend")
        from django.utils import timezone

        # A fixed `now` for every tick: nothing becomes due by the clock while we measure.
        now = timezone.now()
        build_start = time.perf_counter()
        build(scratch, now)
        build_s = time.perf_counter() - build_start
        small_times: list[float] = []
        large_times: list[float] = []
        for _ in range(args.repeats):
            small_times.append(time_idle(scratch.small, now))
            large_times.append(time_idle(scratch.large, now))
        use_database(scratch.large)
        fire_s, checks = fire_due(now, offset=0)
        ok = report(build_s, small_times, large_times, fire_s, checks)
        print()
        ok = print_plans(now) and ok
        if args.profile:
            profile(f"an idle tick ({LARGE:,} triggers)", lambda: time_tick(now), 30)
            profile(f"a tick firing {DUE:,} triggers", lambda: fire_due(now, offset=1), 30)
        return 0 if ok else 1


def report(
    build_s: float, small: list[float], large: list[float], fire_s: float, checks: dict[str, int]
) -> bool:
    small_s, large_s = statistics.median(small), statistics.median(large)
    ratio = large_s / small_s
    print(f"scheduler tick: {SMALL:,} vs {LARGE:,} enabled schedule triggers, none due")
    print(f"  (built in {build_s:.1f} s; {len(small)} interleaved rounds, median)")
    print(f"  rounds small/large ms:    {rounds(small, large, scale=1000, digits=2)}")
    print(f"  tick, {SMALL:>7,} triggers:    {small_s * 1000:.2f} ms")
    print(f"  tick, {LARGE:>7,} triggers:    {large_s * 1000:.2f} ms")
    print(f"  ratio large/small:        {ratio:.2f}x")
    verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
    print(f"  target ratio <= {TARGET_RATIO}x: {verdict}")
    print()
    print(f"due tick: {DUE:,} of {LARGE:,} triggers due, one tick (runs enqueued, not executed)")
    print(f"  tick time:                {fire_s:.3f} s  ({fire_s / DUE * 1000:.2f} ms/trigger)")
    print(f"  triggers fired per second: {DUE / fire_s:,.0f}")
    expected = {
        "fires reported by the tick": DUE,
        "TriggerFire rows, outcome started": DUE,
        "TriggerFire rows, other outcomes": 0,
        "queued WorkflowRun rows": DUE,
        "fires by a second tick right after": 0,
    }
    correct = True
    for name, value in checks.items():
        good = value == expected[name]
        correct = correct and good
        print(f"  {name + ':':<36}{value:>6,}  (expected {expected[name]:,}) {'ok' if good else 'WRONG'}")
    print(f"  exactly {DUE:,} started fires, none on the second tick: {'PASS' if correct else 'FAIL'}")
    return ratio <= TARGET_RATIO and correct


if __name__ == "__main__":
    sys.exit(main())
