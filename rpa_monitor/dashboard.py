"""The live dashboard: one JSON document of what runs, fails and waits now, and the admin page polling it.

`dashboard_data()` is the whole logic; the two views only serve it. Every part
is one bounded query, so a refresh costs the same however long the history:

* counts for today: active runs by status (the status index) and runs that
  finished since local midnight (a range of the `finished_at` index: today's
  rows only, never older ones);
* trailing-hour rates: at most 60 `RunMinute` rows;
* per-workflow p50/p95/p99: runs that finished in the last 24 hours (the
  `finished_at` index again);
* the 30-day chart: `WorkflowDay` rows of 29 past days (the `day` index) plus
  today's live counts;
* running runs (at most RUNNING_LIMIT) and, for their ETA, each one's
  workflow's latest ETA_LOOKBACK runs (the (workflow, -id) index), fetched for
  all those workflows in one UNION ALL query;
* open alerts (the (status, -triggered_at) index) and the latest scheduler tick.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from alerts.models import Alert
from chains import daily
from chains.daily import slower_than_usual
from chains.models import (
    ACTIVE_STATUSES,
    FAILED_STATUSES,
    ChainRun,
    RunMinute,
    RunStatus,
    Workflow,
    WorkflowDay,
    WorkflowRun,
)
from rpa_monitor.lib.admin import STATUS_COLOURS
from triggers.models import SchedulerTick

REFRESH_SECONDS = 5
CHART_DAYS = 30
DURATION_WINDOW = timedelta(hours=24)
PERCENTILES = (50, 95, 99)
RUNNING_LIMIT = 50
ALERT_LIMIT = 20
# A running run's ETA without progress: the median duration of its workflow's
# latest successful runs (up to ETA_SAMPLES) among its latest ETA_LOOKBACK runs.
# Looking at a fixed number of runs keeps the query bounded for a workflow that
# has failed for months (a search for 20 successes would walk its whole history).
ETA_LOOKBACK = 50
ETA_SAMPLES = 20
# The statuses Alert.objects.open() means, as an IN the (status, -triggered_at) index serves.
OPEN_ALERT_STATUSES = (Alert.Status.TRIGGERED, Alert.Status.ACKNOWLEDGED)


def dashboard_data(now: datetime | None = None) -> dict[str, Any]:
    """Everything the dashboard shows, JSON-serializable (times as ISO strings and local clock text)."""
    now = now or timezone.now()
    zone = ZoneInfo(settings.TIME_ZONE)
    today = now.astimezone(zone).date()
    day_start = datetime.combine(today, time.min, tzinfo=zone)
    counts = today_counts(day_start, now)
    return {
        "generated_at": now.isoformat(),
        "generated_clock": _clock(now),
        "time_zone": settings.TIME_ZONE,
        "refresh_seconds": REFRESH_SECONDS,
        "today": counts,
        "last_hour": last_hour_rates(now),
        "chain_runs": chain_counts(day_start, now),
        "durations": duration_percentiles(now),
        "days": daily_chart(today, counts),
        "running": running_runs(now),
        "alerts": open_alerts(now),
        "scheduler": scheduler_status(now),
        "slow": slow_workflows(now),
    }


def slow_workflows(now: datetime) -> list[dict[str, Any]]:
    """Workflows whose median duration this week exceeds 1.5x the four weeks before, slowest first.

    Read from the daily aggregates (workflows x 35 rows), never from the runs.
    """
    flags = slower_than_usual(now)
    slugs = dict(Workflow.objects.filter(pk__in=list(flags)).values_list("pk", "slug"))
    runs = reverse("admin:chains_workflowrun_changelist")
    return [
        {
            "workflow": slugs[pk],
            "url": f"{runs}?workflow__id__exact={pk}",
            "median_seconds": _round(flag.median_week),
            "baseline_seconds": _round(flag.median_before),
            "ratio": round(flag.ratio, 2),
        }
        for pk, flag in sorted(flags.items(), key=lambda item: -item[1].ratio)
        if pk in slugs
    ]


# -- counts and rates ------------------------------------------------------------------


def today_counts(day_start: datetime, now: datetime) -> dict[str, Any]:
    """Workflow runs active now, and those finished since local midnight by outcome."""
    active = _by_status(WorkflowRun.objects.filter(status__in=ACTIVE_STATUSES))
    finished = _by_status(WorkflowRun.objects.filter(finished_at__gte=day_start, finished_at__lte=now))
    return _counts(day_start, active, finished)


def chain_counts(day_start: datetime, now: datetime) -> dict[str, Any]:
    """The same for chain runs (a failing chain is one failed chain run, however many steps)."""
    active = _by_status(ChainRun.objects.filter(status__in=ACTIVE_STATUSES))
    finished = _by_status(ChainRun.objects.filter(finished_at__gte=day_start, finished_at__lte=now))
    return _counts(day_start, active, finished)


def _by_status(queryset: Any) -> dict[str, int]:
    rows = queryset.order_by().values_list("status").annotate(n=Count("id"))
    return {status: n for status, n in rows}


def _counts(day_start: datetime, active: dict[str, int], finished: dict[str, int]) -> dict[str, Any]:
    succeeded = finished.get(RunStatus.SUCCESS, 0)
    failed = sum(finished.get(status, 0) for status in FAILED_STATUSES)
    cancelled = finished.get(RunStatus.CANCELLED, 0)
    return {
        "date": day_start.date().isoformat(),
        "running": active.get(RunStatus.RUNNING, 0),
        "queued": active.get(RunStatus.QUEUED, 0),
        "succeeded": succeeded,
        "failed": failed,
        "cancelled": cancelled,
        "finished": succeeded + failed + cancelled,
        # Rates are over decided runs: a cancelled run neither succeeded nor failed.
        "success_rate": _percent(succeeded, succeeded + failed),
        "error_rate": _percent(failed, succeeded + failed),
    }


def last_hour_rates(now: datetime) -> dict[str, Any]:
    """Success and error rate of the workflow runs finished in the trailing hour (as /metrics' error_rate)."""
    finished, failed = RunMinute.totals(now - timedelta(hours=1), now)  # cancelled runs are not counted
    return {
        "finished": finished,
        "failed": failed,
        "success_rate": _percent(finished - failed, finished),
        "error_rate": _percent(failed, finished),
    }


def _percent(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


# -- durations -------------------------------------------------------------------------


def duration_percentiles(now: datetime) -> dict[str, Any]:
    """Per workflow: runs and failures that finished in the last 24 hours, and their durations' percentiles.

    Durations are of every run that finished in the window with a start time, whatever its
    outcome; percentiles interpolate linearly between closest ranks (numpy's default).
    """
    since = now - DURATION_WINDOW
    rows = WorkflowRun.objects.filter(finished_at__gt=since, finished_at__lte=now).values_list(
        "workflow_id", "workflow__slug", "status", "started_at", "finished_at"
    )
    slugs: dict[int, str] = {}
    stats: dict[int, daily.DayStats] = defaultdict(daily.DayStats)  # counted as the daily rollup counts
    for workflow_id, slug, status, started_at, finished_at in rows.iterator(chunk_size=2000):
        slugs[workflow_id] = slug
        stats[workflow_id].add(status, started_at, finished_at)
    changelist = reverse("admin:chains_workflowrun_changelist")
    workflows = []
    for workflow_id, slug in sorted(slugs.items(), key=lambda item: item[1]):
        values = sorted(stats[workflow_id].durations)
        workflows.append(
            {
                "workflow": slug,
                "url": f"{changelist}?workflow__id__exact={workflow_id}",
                "runs": stats[workflow_id].runs,
                "failures": stats[workflow_id].failures,
                **{f"p{p}": _round(percentile(values, p)) for p in PERCENTILES},
            }
        )
    return {"window_hours": int(DURATION_WINDOW.total_seconds() // 3600), "workflows": workflows}


def percentile(ordered: Sequence[float], p: float) -> float | None:
    """The p-th percentile (0-100) of sorted values, the daily aggregates' definition."""
    return daily.percentile(ordered, p / 100)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# -- the 30-day chart ------------------------------------------------------------------


def daily_chart(today: date, live: dict[str, Any]) -> list[dict[str, Any]]:
    """Run count and success rate per day, oldest first: past days from the daily aggregates
    (summed over workflows; days without rows ran nothing), today from the live counts."""
    first = today - timedelta(days=CHART_DAYS - 1)
    sums = {
        row["day"]: row
        for row in WorkflowDay.objects.filter(day__gte=first, day__lt=today)
        .order_by()
        .values("day")
        .annotate(runs=Sum("runs"), successes=Sum("successes"), failures=Sum("failures"))
    }
    days = []
    for offset in range(CHART_DAYS - 1):
        day = first + timedelta(days=offset)
        row = sums.get(day, {})
        days.append(_day(day, row.get("runs") or 0, row.get("successes") or 0, row.get("failures") or 0))
    days.append({**_day(today, live["finished"], live["succeeded"], live["failed"]), "live": True})
    return days


def _day(day: date, runs: int, successes: int, failures: int) -> dict[str, Any]:
    return {
        "day": day.isoformat(),
        "label": day.strftime("%d %b"),
        "runs": runs,
        "successes": successes,
        "failures": failures,
        "success_rate": _percent(successes, successes + failures),
        "live": False,
    }


# -- running runs and their ETA ------------------------------------------------------------


def running_runs(now: datetime) -> dict[str, Any]:
    """The running workflow runs (oldest first, at most RUNNING_LIMIT) with progress and an ETA."""
    running = list(
        WorkflowRun.objects.filter(status=RunStatus.RUNNING)
        .select_related("workflow", "chain_run__chain")
        .order_by("id")[:RUNNING_LIMIT]
    )
    typical = typical_durations({run.workflow_id for run in running})
    runs = [_running(run, now, typical.get(run.workflow_id)) for run in running]
    return {"limit": RUNNING_LIMIT, "runs": runs}


def _running(run: WorkflowRun, now: datetime, typical: tuple[float, int] | None) -> dict[str, Any]:
    elapsed = max(0.0, (now - run.started_at).total_seconds()) if run.started_at else 0.0
    remaining, basis = estimate_remaining(elapsed, run.progress_done, run.progress_total, typical)
    chain_run = run.chain_run
    chain_run_url = reverse("admin:chains_chainrun_change", args=[chain_run.pk]) if chain_run else None
    return {
        "id": run.pk,
        "url": reverse("admin:chains_workflowrun_change", args=[run.pk]),
        "workflow": run.workflow.slug,
        "attempt": run.attempt,
        "chain": chain_run.chain.slug if chain_run else None,
        "chain_run_id": run.chain_run_id,
        "chain_run_url": chain_run_url,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "started_clock": _clock(run.started_at),
        "elapsed_seconds": round(elapsed, 1),
        "progress_done": run.progress_done,
        "progress_total": run.progress_total,
        "progress_percent": None if run.progress_percent is None else round(run.progress_percent, 1),
        "typical_seconds": _round(typical[0]) if typical else None,
        "eta_seconds": None if remaining is None else round(remaining, 1),
        "eta_clock": None if remaining is None else _clock(now + timedelta(seconds=remaining)),
        "eta_basis": basis,
        # Past its usual duration with no progress to go by: the ETA is unknown, say so.
        "overdue": bool(typical and basis.startswith("median") and elapsed > typical[0]),
    }


def estimate_remaining(
    elapsed: float, done: int | None, total: int | None, typical: tuple[float, int] | None
) -> tuple[float | None, str]:
    """Seconds left and how that was estimated.

    With progress reported (done > 0 of total): elapsed / fraction done, minus elapsed
    (assumes an even pace). Otherwise the workflow's median successful duration minus
    elapsed (0 once past it). Without either: unknown.
    """
    if total and done:
        fraction = min(1.0, done / total)
        return elapsed / fraction - elapsed, "progress"
    if typical is not None:
        median, samples = typical
        return max(0.0, median - elapsed), f"median of its last {samples} successful run(s)"
    return None, "no progress reported and no successful run to compare with"


def typical_durations(workflow_ids: Iterable[int]) -> dict[int, tuple[float, int]]:
    """{workflow id: (median seconds, samples)} of each workflow's latest successful runs.

    One query for all the workflows: a UNION ALL of one LIMITed index walk per workflow
    (each part wrapped as a subquery so that SQLite accepts its ORDER BY and LIMIT).
    """
    ids = sorted(workflow_ids)
    if not ids:
        return {}
    parts: list[str] = []
    params: list[Any] = []
    for i, workflow_id in enumerate(ids):
        latest = (
            WorkflowRun.objects.filter(workflow_id=workflow_id)
            .order_by("-id")
            .only("id", "workflow_id", "status", "started_at", "finished_at")[:ETA_LOOKBACK]
        )
        sql, part_params = latest.query.sql_with_params()
        parts.append(f"SELECT * FROM ({sql}) latest_{i}")
        params.extend(part_params)
    samples: dict[int, list[float]] = defaultdict(list)
    for run in WorkflowRun.objects.raw(" UNION ALL ".join(parts), params):
        done = samples[run.workflow_id]
        if run.status == RunStatus.SUCCESS and run.started_at and run.finished_at and len(done) < ETA_SAMPLES:
            done.append(max(0.0, (run.finished_at - run.started_at).total_seconds()))
    return {wid: (statistics.median(values), len(values)) for wid, values in samples.items() if values}


# -- alerts and the scheduler ------------------------------------------------------------


def open_alerts(now: datetime) -> dict[str, Any]:
    """The newest open (triggered or acknowledged) alerts, and how many are open in all."""
    query = Alert.objects.filter(status__in=OPEN_ALERT_STATUSES)
    newest = query.select_related("rule").order_by("-triggered_at", "-id")[:ALERT_LIMIT]
    items = [
        {
            "id": alert.pk,
            "url": reverse("admin:alerts_alert_change", args=[alert.pk]),
            "severity": alert.severity,
            "status": alert.status,
            "subject": alert.subject,
            "summary": alert.summary,
            "rule": alert.rule.name,
            "occurrences": alert.occurrences,
            "triggered_at": alert.triggered_at.isoformat(),
            "triggered_clock": _clock(alert.triggered_at, "%Y-%m-%d %H:%M:%S"),
            "age_seconds": round(max(0.0, (now - alert.triggered_at).total_seconds())),
        }
        for alert in newest
    ]
    total = len(items) if len(items) < ALERT_LIMIT else query.count()
    return {"open": total, "limit": ALERT_LIMIT, "items": items}


def scheduler_status(now: datetime) -> dict[str, Any]:
    """The most recent scheduler tick on any host, its age, and whether it is older than /health allows."""
    tick = SchedulerTick.objects.order_by("-last_tick_at").first()
    limit = settings.RPA_SCHEDULER_MAX_AGE_SECONDS
    if tick is None:
        return {"last_tick_at": None, "last_tick_clock": None, "age_seconds": None, "host": None,
                "stale": True, "max_age_seconds": limit}  # fmt: skip
    age = max(0.0, (now - tick.last_tick_at).total_seconds())
    return {
        "last_tick_at": tick.last_tick_at.isoformat(),
        "last_tick_clock": _clock(tick.last_tick_at, "%Y-%m-%d %H:%M:%S"),
        "age_seconds": round(age, 1),
        "host": f"{tick.host} (pid {tick.pid})",
        "stale": age > limit,
        "max_age_seconds": limit,
    }


def _clock(moment: datetime | None, fmt: str = "%H:%M:%S") -> str | None:
    """A moment as local clock text in settings.TIME_ZONE (what the rest of the admin shows)."""
    return None if moment is None else moment.astimezone(ZoneInfo(settings.TIME_ZONE)).strftime(fmt)


# -- views (staff only: wrapped in admin.site.admin_view in urls.py) ----------------------


def visible_data(request: HttpRequest) -> dict[str, Any]:
    """The dashboard for this user: runs need chains.view_workflowrun, alerts alerts.view_alert."""
    if not request.user.has_perm("chains.view_workflowrun"):
        raise PermissionDenied("The dashboard needs the permission to view workflow runs.")
    data = dashboard_data()
    if not request.user.has_perm("alerts.view_alert"):
        data["alerts"] = {"open": 0, "limit": ALERT_LIMIT, "items": []}
    return data


@require_GET
def dashboard_view(request: HttpRequest) -> HttpResponse:
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "data": visible_data(request),
        "data_url": reverse("rpa_dashboard_data"),
        "refresh_seconds": REFRESH_SECONDS,
        "status_colours": STATUS_COLOURS,
    }
    return TemplateResponse(request, "admin/dashboard.html", context)


@require_GET
def dashboard_data_view(request: HttpRequest) -> JsonResponse:
    response = JsonResponse(visible_data(request))
    response["Cache-Control"] = "no-store"
    return response
