"""Prometheus metrics read from the database, the source of truth.

Work runs in cron-started commands and task workers, maybe on other hosts: a
counter kept in the web server's memory would show zeros. Every figure here
is read at scrape time from small tables that the runner, the log ingest and
the scheduler update in the same transaction as the rows they count:

    workflow_executions_total{workflow_id,status}   WorkflowRunCount
    workflow_duration_seconds{workflow_id}          WorkflowDurationBucket + WorkflowDurationSum
    log_entries_total{level,component}              LogCount
    chain_executions_total{chain_id,status}         ChainRunCount
    trigger_fires_total{trigger_type,workflow_id}   TriggerFireCount (fires that started a run)
    active_workflows                                running WorkflowRuns
    error_rate                                      RunMinute, the trailing 60 minutes

so a scrape costs O(series), never a scan of history, and retention (which
deletes history, not these tables) never makes a counter go down.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Max
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from alerts.models import Alert, AlertRule
from chains.models import (
    DURATION_BUCKETS,
    ChainRunCount,
    RunMinute,
    RunStatus,
    WorkflowDurationBucket,
    WorkflowDurationSum,
    WorkflowRun,
    WorkflowRunCount,
)
from logs.models import LogCount
from triggers.models import SchedulerTick, TriggerFireCount


class DatabaseCollector(Collector):
    def describe(self) -> list[Metric]:
        # Registering must not query the database (it happens at start-up).
        return []

    def collect(self) -> Iterator[Metric]:
        yield workflow_executions()
        yield workflow_durations()
        yield log_entries()
        yield chain_executions()
        yield trigger_fires()
        yield active_workflows()
        yield error_rate()
        yield from scheduler_health()
        yield open_alerts()


def _counter(name: str, documentation: str, labels: list[str], rows: Iterable[tuple[Any, ...]]) -> Metric:
    """A counter family from (label values..., count) rows of a counter table."""
    family = CounterMetricFamily(name, documentation, labels=labels)
    for *values, count in rows:
        family.add_metric([str(v) for v in values], count)
    return family


def workflow_executions() -> Metric:
    rows = WorkflowRunCount.objects.values_list("workflow__slug", "status", "count")
    return _counter(
        "workflow_executions", "Finished workflow runs by final status.", ["workflow_id", "status"], rows
    )


def workflow_durations() -> Metric:
    family = HistogramMetricFamily(
        "workflow_duration_seconds", "Duration of finished workflow runs.", labels=["workflow_id"]
    )
    buckets: dict[str, list[int]] = defaultdict(lambda: [0] * (len(DURATION_BUCKETS) + 1))
    for slug, bucket, count in WorkflowDurationBucket.objects.values_list(
        "workflow__slug", "bucket", "count"
    ):
        buckets[slug][bucket] += count
    for slug, _count, seconds in WorkflowDurationSum.objects.values_list("workflow__slug", "count", "sum"):
        cumulative, points = 0, []
        for bound, count in zip((*DURATION_BUCKETS, float("inf")), buckets[slug], strict=True):
            cumulative += count
            points.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        family.add_metric([slug], points, seconds)
    return family


def log_entries() -> Metric:
    rows = LogCount.objects.values_list("level", "component", "count")
    return _counter(
        "log_entries", "Log entries stored, by level and component.", ["level", "component"], rows
    )


def chain_executions() -> Metric:
    rows = ChainRunCount.objects.values_list("chain__slug", "status", "count")
    return _counter("chain_executions", "Finished chain runs by final status.", ["chain_id", "status"], rows)


def trigger_fires() -> Metric:
    rows = TriggerFireCount.objects.values_list("trigger_type", "workflow_id", "count")
    documentation = "Trigger fires that started a run, by trigger type and target (workflow or chain slug)."
    return _counter("trigger_fires", documentation, ["trigger_type", "workflow_id"], rows)


def active_workflows() -> Metric:
    running = WorkflowRun.objects.filter(status=RunStatus.RUNNING).count()
    return GaugeMetricFamily("active_workflows", "Workflow runs running now.", value=running)


def error_rate() -> Metric:
    finished, failed = RunMinute.totals(timezone.now() - timedelta(hours=1))
    percent = 100.0 * failed / finished if finished else 0.0
    return GaugeMetricFamily(
        "error_rate", "Percent of workflow runs finished in the trailing hour that failed.", value=percent
    )


def scheduler_health() -> Iterator[Metric]:
    last = SchedulerTick.objects.aggregate(last=Max("last_tick_at"))["last"]
    yield GaugeMetricFamily(
        "rpa_scheduler_last_tick_timestamp_seconds",
        "Unix time of the most recent scheduler tick on any host (0: never).",
        value=last.timestamp() if last else 0,
    )
    cutoff = timezone.now() - timedelta(seconds=settings.RPA_RUN_LEASE_SECONDS)
    stale = WorkflowRun.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=cutoff).count()
    yield GaugeMetricFamily(
        "rpa_stale_runs",
        "Running runs whose heartbeat is older than the lease (stuck until reaped).",
        value=stale,
    )


def open_alerts() -> Metric:
    """Open alerts by severity (every severity listed, 0 included, so a Grafana panel has series)."""
    counts = dict(
        Alert.objects.open().values("severity").annotate(n=Count("id")).values_list("severity", "n")
    )
    family = GaugeMetricFamily(
        "rpa_open_alerts", "Alerts triggered or acknowledged, not resolved.", labels=["severity"]
    )
    for severity in AlertRule.Severity:
        family.add_metric([severity.value], counts.get(severity.value, 0))
    return family


def multiprocess_mode() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def registry_for_scrape() -> CollectorRegistry:
    """The default registry (our collector registered at start-up), or in
    PROMETHEUS_MULTIPROC_DIR mode a fresh one merging every process's files plus ours."""
    if not multiprocess_mode():
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(DatabaseCollector())
    return registry


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.RPA_METRICS_TOKEN
    if token and not _bearer_matches(request.headers.get("Authorization", ""), token):
        response = HttpResponse("a valid bearer token is required\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(registry_for_scrape()), content_type=CONTENT_TYPE_LATEST)


def _bearer_matches(header: str, token: str) -> bool:
    # The auth scheme is case-insensitive (RFC 7235 §2.1): "bearer x" is as good as "Bearer x".
    scheme, _, credentials = header.partition(" ")
    return scheme.lower() == "bearer" and constant_time_compare(credentials, token)
