"""Daily per-workflow aggregates (`WorkflowDay`): the rollup, its upkeep in the scheduler tick,
percentiles over several days, and the "slower than usual" flag.

A day is a local calendar day in settings.TIME_ZONE (23 or 25 hours long on DST
days); a run belongs to the day it *finished* on, found as a half-open UTC range
of the `finished_at` index.

Percentiles of one day are exact, with numpy's default definition ("linear"):
for n sorted durations x[0..n-1] and a quantile q, the rank h = q·(n-1) and the
value x[⌊h⌋] + (h-⌊h⌋)·(x[⌊h⌋+1] - x[⌊h⌋]).

Percentiles over several days come from the merged histograms (`DAY_BUCKETS`,
bounds a factor 1.25 apart): the same rank definition, each order statistic
placed evenly inside its bucket. An order statistic x in the bucket (lo, hi] is
estimated inside that bucket, so it is off by less than hi - lo = 0.25·lo < 0.25·x
(by less than 0.01 s in the first bucket, [0, 0.01]); the interpolation between
two of them keeps the bound, so a merged percentile p̂ of an exact p obeys
|p̂ - p| ≤ 0.25·p + 0.01 s (durations up to DAY_BUCKETS[-1], about 16 days;
beyond that the estimate is that last bound). Usually it is much closer.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Field, Min, Q
from django.utils import timezone

from chains.models import DAY_BUCKETS, FAILED_STATUSES, FINISHED_STATUSES, RunStatus, WorkflowDay, WorkflowRun

QUANTILES = (0.5, 0.95, 0.99)
# A day becomes final this long after its local midnight: a run finishing at 23:59:59.9
# commits a moment later, and hosts' clocks differ a little.
FINALIZE_GRACE = timedelta(minutes=10)
# How far back every tick looks for days to finalize (days missed while the scheduler was
# down). Older ones are rolled up by the purge before their runs go, and by reports.
CATCHUP_DAYS = 7
# "Slower than usual": the median of the last WEEK_DAYS days (today included) against the
# median of the BEFORE_DAYS days before them, each side needing MIN_RUNS measured runs.
WEEK_DAYS = 7
BEFORE_DAYS = 28
SLOW_RATIO = 1.5
MIN_RUNS = 3
UPDATED_COLUMNS = (
    "runs",
    "successes",
    "failures",
    "cancelled",
    "duration_count",
    "duration_sum",
    "p50",
    "p95",
    "p99",
    "histogram",
    "final",
    "updated_at",
)


# -- days --------------------------------------------------------------------------------


def zone() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def local_day(moment: datetime) -> date:
    return moment.astimezone(zone()).date()


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """[start, end) of a local calendar day in UTC: 24 hours long, or 23/25 on DST days."""
    tz = zone()
    start = datetime.combine(day, time.min, tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def is_closed(day: date, now: datetime) -> bool:
    """Has the day ended (plus the grace), so that its rows can be final?"""
    return now >= day_bounds(day)[1] + FINALIZE_GRACE


# -- one day's numbers ---------------------------------------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """Exact percentile of sorted values, linear interpolation (numpy's default)."""
    if not ordered:
        return None
    rank = q * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def histogram(durations: Iterable[float]) -> list[int]:
    """Counts per DAY_BUCKETS bound (first bound >= the duration); the last one: above them all."""
    counts = [0] * (len(DAY_BUCKETS) + 1)
    for seconds in durations:
        counts[bisect.bisect_left(DAY_BUCKETS, seconds)] += 1
    return counts


@dataclass
class DayStats:
    """One workflow's finished runs on one day, accumulated run by run."""

    runs: int = 0
    successes: int = 0
    failures: int = 0
    cancelled: int = 0
    durations: list[float] = field(default_factory=list)

    def add(self, status: str, started_at: datetime | None, finished_at: datetime | None) -> None:
        self.runs += 1
        if status == RunStatus.SUCCESS:
            self.successes += 1
        elif status in FAILED_STATUSES:
            self.failures += 1
        elif status == RunStatus.CANCELLED:
            self.cancelled += 1
        if started_at is not None and finished_at is not None:
            # A run cancelled while queued has no start: no duration to measure.
            self.durations.append(max(0.0, (finished_at - started_at).total_seconds()))

    def columns(self) -> dict[str, Any]:
        ordered = sorted(self.durations)
        p50, p95, p99 = (percentile(ordered, q) for q in QUANTILES)
        return {
            "runs": self.runs,
            "successes": self.successes,
            "failures": self.failures,
            "cancelled": self.cancelled,
            "duration_count": len(ordered),
            "duration_sum": math.fsum(ordered),
            "p50": p50,
            "p95": p95,
            "p99": p99,
            "histogram": histogram(ordered),
        }


def day_stats(day: date) -> dict[int, DayStats]:
    """{workflow id: stats} of the runs that finished on `day`: one pass over the finished_at index."""
    start, end = day_bounds(day)
    runs = (
        WorkflowRun.objects.filter(finished_at__gte=start, finished_at__lt=end, status__in=FINISHED_STATUSES)
        .order_by()
        .values_list("workflow_id", "status", "started_at", "finished_at")
    )
    stats: dict[int, DayStats] = defaultdict(DayStats)
    for workflow_id, status, started_at, finished_at in runs.iterator(chunk_size=5000):
        stats[workflow_id].add(status, started_at, finished_at)
    return stats


# -- the rollup --------------------------------------------------------------------------


def rollup_day(day: date, now: datetime | None = None) -> int:
    """Recompute the WorkflowDay rows of every workflow with runs that finished on `day`.

    Final rows are never touched (their runs may be purged since); the rows are
    final once the day has ended (see is_closed). Non-final rows of workflows left
    without runs that day are deleted. Returns the number of rows written.
    """
    now = now or timezone.now()
    stats = day_stats(day)
    final = is_closed(day, now)
    with transaction.atomic():
        done = set(WorkflowDay.objects.filter(day=day, final=True).values_list("workflow_id", flat=True))
        rows = {wf: s.columns() for wf, s in stats.items() if wf not in done}
        for columns in rows.values():
            columns.update(final=final, updated_at=now)
        _upsert(day, rows)
        WorkflowDay.objects.filter(day=day, final=False).exclude(workflow_id__in=list(stats)).delete()
    return len(rows)


def _upsert(day: date, rows: Mapping[int, dict[str, Any]]) -> None:
    """INSERT ... ON CONFLICT (workflow, day) DO UPDATE ... WHERE NOT final, one statement per row.

    Concurrent rollups (ticks on two hosts, a report) compute the same numbers from
    the same runs: the unique constraint makes them update one row, the WHERE keeps
    final rows as they are, and sorted keys lock rows in one order (no deadlock).
    """
    if not rows:
        return
    quote = connection.ops.quote_name
    table = quote(WorkflowDay._meta.db_table)
    fields = [cast(Field, WorkflowDay._meta.get_field(n)) for n in ("workflow", "day", *UPDATED_COLUMNS)]
    columns = [quote(f.column) for f in fields]
    updates = ", ".join(f"{column} = excluded.{column}" for column in columns[2:])
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(fields))}) "
        f"ON CONFLICT ({columns[0]}, {columns[1]}) DO UPDATE SET {updates} "
        f"WHERE NOT {table}.{quote('final')}"
    )
    params = []
    for workflow_id, values in sorted(rows.items()):
        raw = {"workflow": workflow_id, "day": day, **values}
        params.append([f.get_db_prep_save(raw[f.name], connection) for f in fields])
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


@dataclass(frozen=True)
class DayState:
    open: int  # non-final rows
    closed: int  # final rows
    oldest_open: datetime | None  # updated_at of the stalest non-final row


def day_states(first: date, last: date) -> dict[date, DayState]:
    """What rows each day in [first, last] has: one grouped query over the `day` index."""
    rows = (
        WorkflowDay.objects.filter(day__gte=first, day__lte=last)
        .order_by()
        .values("day")
        .annotate(
            open=Count("id", filter=Q(final=False)),
            closed=Count("id", filter=Q(final=True)),
            oldest_open=Min("updated_at", filter=Q(final=False)),
        )
    )
    return {row["day"]: DayState(row["open"], row["closed"], row["oldest_open"]) for row in rows}


def has_runs(day: date) -> bool:
    start, end = day_bounds(day)
    runs = WorkflowRun.objects.filter(finished_at__gte=start, finished_at__lt=end)
    return runs.filter(status__in=FINISHED_STATUSES).exists()


def oldest_kept_day(today: date) -> date:
    """Rows of days before this one are deleted (older than RPA_AGGREGATE_DAYS)."""
    return today - timedelta(days=settings.RPA_AGGREGATE_DAYS)


def rollup_days(first: date, last: date, now: datetime | None = None) -> int:
    """Roll up every day in [first, last] that is not final yet; rows written.

    Days already final are skipped without reading their runs, and so are days
    older than the retention (their rows would be deleted at the next tick).
    """
    now = now or timezone.now()
    first = max(first, oldest_kept_day(local_day(now)))
    states = day_states(first, last)
    written = 0
    day = first
    while day <= last:
        state = states.get(day)
        if not (state and state.closed and not state.open):
            written += rollup_day(day, now)
        day += timedelta(days=1)
    return written


def rollup_due(now: datetime | None = None) -> int:
    """The scheduler tick's share: rows written or deleted (0, cheaply, when nothing is due).

    - past days (up to CATCHUP_DAYS back) that ended and are not final: rolled up and
      finalized; days without rows are looked at only when they have runs;
    - today (and yesterday during the grace after midnight): refreshed when its rows
      are older than RPA_ROLLUP_SECONDS, or missing while there are runs;
    - rows older than RPA_AGGREGATE_DAYS are deleted.
    Any number of ticks may do this at once (see _upsert).
    """
    now = now or timezone.now()
    today = local_day(now)
    first = today - timedelta(days=CATCHUP_DAYS)
    states = day_states(first, today)
    stale_before = now - timedelta(seconds=settings.RPA_ROLLUP_SECONDS)
    changed = 0
    for offset in range(CATCHUP_DAYS, -1, -1):
        day = today - timedelta(days=offset)
        state = states.get(day)
        if state is None:
            due = has_runs(day)
        elif is_closed(day, now):
            due = state.open > 0
        else:
            due = state.oldest_open is not None and state.oldest_open <= stale_before
        if due:
            changed += rollup_day(day, now)
    deleted, _ = WorkflowDay.objects.filter(day__lt=oldest_kept_day(today)).delete()
    return changed + deleted


@dataclass(frozen=True)
class RollupTick:
    changed: int

    def summary(self) -> str:
        return f"daily aggregates: {self.changed} row(s) written or deleted"


def rollup_tick(now: datetime) -> RollupTick:
    """rollup_due as a scheduler step (triggers.scheduler.AFTER_FIRES wants a summary())."""
    return RollupTick(rollup_due(now))


def rollup_finished_between(first: datetime, last: datetime, now: datetime | None = None) -> int:
    """Roll up (and, once ended, finalize) the days of runs that finished in [first, last].

    Retention calls this before deleting runs, so no aggregate loses them. A run
    that finished today is counted in today's row, but today is not final yet:
    the next refresh recomputes it from the runs still there.
    """
    return rollup_days(local_day(first), local_day(last), now)


# -- several days ----------------------------------------------------------------------


def merge_histograms(rows: Iterable[Any]) -> list[int]:
    """Sum of the rows' histograms (rows: WorkflowDay or anything with a `histogram` list)."""
    merged = [0] * (len(DAY_BUCKETS) + 1)
    for row in rows:
        for index, count in enumerate((row.histogram or [])[: len(merged)]):
            merged[index] += int(count)
    return merged


def merged_percentiles(
    rows: Iterable[Any], quantiles: Sequence[float] = QUANTILES
) -> tuple[float | None, ...]:
    """Percentiles of the durations of several days, from their merged histograms.

    Same rank definition as the exact ones; within |p̂ - p| ≤ 0.25·p + 0.01 s of them
    (see the module docstring). None when no run was measured.
    """
    counts = merge_histograms(rows)
    cumulative = []
    total = 0
    for count in counts:
        total += count
        cumulative.append(total)
    if not total:
        return tuple(None for _ in quantiles)
    return tuple(_histogram_quantile(counts, cumulative, q) for q in quantiles)


def _histogram_quantile(counts: list[int], cumulative: list[int], q: float) -> float:
    rank = q * (cumulative[-1] - 1)
    low = math.floor(rank)
    value = _order_statistic(counts, cumulative, low)
    if rank == low:
        return value
    return value + (_order_statistic(counts, cumulative, low + 1) - value) * (rank - low)


def _order_statistic(counts: list[int], cumulative: list[int], k: int) -> float:
    """The k-th smallest duration (0-based), the bucket's values taken as evenly spread."""
    index = bisect.bisect_right(cumulative, k)  # first bucket holding more than k values
    lower = DAY_BUCKETS[index - 1] if index > 0 else 0.0
    if index == len(DAY_BUCKETS):
        return lower  # above every bound: all we know is that it is at least this
    before = cumulative[index - 1] if index > 0 else 0
    return lower + (DAY_BUCKETS[index] - lower) * (k - before + 0.5) / counts[index]


# -- slower than usual ---------------------------------------------------------------------


@dataclass(frozen=True)
class SlowFlag:
    median_week: float  # seconds, the last WEEK_DAYS days
    median_before: float  # seconds, the BEFORE_DAYS days before them
    ratio: float


def slower_than_usual(now: datetime | None = None) -> dict[int, SlowFlag]:
    """{workflow id: flag} for workflows whose median duration over the last 7 days (today
    included) exceeds SLOW_RATIO times their median over the 4 weeks before.

    Both medians come from WorkflowDay histograms (one query: O(workflows x 35) rows);
    each side needs MIN_RUNS measured runs, so a lone slow run is no trend.
    """
    now = now or timezone.now()
    today = local_day(now)
    week_start = today - timedelta(days=WEEK_DAYS - 1)
    first = week_start - timedelta(days=BEFORE_DAYS)
    sides: dict[int, tuple[list[WorkflowDay], list[WorkflowDay]]] = defaultdict(lambda: ([], []))
    rows = WorkflowDay.objects.filter(day__gte=first, day__lte=today, duration_count__gt=0).only(
        "workflow", "day", "duration_count", "histogram"
    )
    for row in rows:
        sides[row.workflow_id][0 if row.day >= week_start else 1].append(row)
    flags = {}
    for workflow_id, (week, before) in sides.items():
        flag = _slow_flag(week, before)
        if flag is not None:
            flags[workflow_id] = flag
    return flags


def _slow_flag(week: list[WorkflowDay], before: list[WorkflowDay]) -> SlowFlag | None:
    if min(sum(r.duration_count for r in side) for side in (week, before)) < MIN_RUNS:
        return None
    (median_week,), (median_before,) = merged_percentiles(week, (0.5,)), merged_percentiles(before, (0.5,))
    if median_week is None or not median_before or median_week <= SLOW_RATIO * median_before:
        return None
    return SlowFlag(median_week, median_before, median_week / median_before)
