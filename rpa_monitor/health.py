"""/health: can this deployment do its job?

JSON `{"status": "ok"|"degraded"|"down", "checks": {...}}`:
- database: reachable (a query answers) — if not, "down" and HTTP 503;
- scheduler: age of the most recent tick from any host (cron's fire_triggers or
  run_scheduler); older than RPA_SCHEDULER_MAX_AGE_SECONDS → "degraded";
- stale_runs: running runs whose heartbeat is older than the lease (the reaper
  should have taken them) → "degraded".
"Degraded" still answers 200: the web server itself is fine, and a load
balancer should keep sending it traffic; Prometheus alerts on the details.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Max
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from chains.models import RunStatus, WorkflowRun
from triggers.models import SchedulerTick


def check_health() -> tuple[str, dict[str, Any]]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks = {"database": {"status": "ok"}, **_scheduler_check(), **_stale_runs_check()}
    except DatabaseError as exc:
        return "down", {"database": {"status": "down", "error": str(exc).splitlines()[0][:200]}}
    worst = "degraded" if any(c["status"] != "ok" for c in checks.values()) else "ok"
    return worst, checks


def _scheduler_check() -> dict[str, Any]:
    last = SchedulerTick.objects.aggregate(last=Max("last_tick_at"))["last"]
    limit = settings.RPA_SCHEDULER_MAX_AGE_SECONDS
    if last is None:
        return {
            "scheduler": {"status": "degraded", "last_tick": None, "error": "the scheduler has never ticked"}
        }
    age = (timezone.now() - last).total_seconds()
    status = "ok" if age <= limit else "degraded"
    return {"scheduler": {"status": status, "last_tick": last.isoformat(), "age_seconds": round(age, 1),
                          "max_age_seconds": limit}}  # fmt: skip


def _stale_runs_check() -> dict[str, Any]:
    cutoff = timezone.now() - timedelta(seconds=settings.RPA_RUN_LEASE_SECONDS)
    stale = WorkflowRun.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=cutoff).count()
    return {"stale_runs": {"status": "ok" if stale == 0 else "degraded", "count": stale}}


@require_GET
def health_view(request: HttpRequest) -> JsonResponse:
    status, checks = check_health()
    return JsonResponse({"status": status, "checks": checks}, status=503 if status == "down" else 200)
