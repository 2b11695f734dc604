"""Retention: delete old log entries and finished run history in small batches.

Counters behind /metrics live in their own tables (LogCount, WorkflowRunCount,
ChainRunCount), so deleting history never makes a Prometheus counter go down.
Batches keep each transaction short: a purge never holds the SQLite write
lock long enough to make a bot's log writes wait. Before any run goes, the
days those runs finished on are rolled up into the daily aggregates (and
finalized once ended), which outlive the runs (`chains.daily`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import models, transaction
from django.db.models import Max, Min

from chains.daily import rollup_finished_between
from chains.models import FINISHED_STATUSES, ChainRun, WorkflowRun
from logs.models import LogEntry
from triggers.models import SeenFile, TriggerFire

DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> timedelta:
    """`90d`, `12h`, `2w`, `30m`, `45s` → timedelta; ValueError says what is accepted."""
    match = DURATION_RE.match(text or "")
    if not match or int(match.group(1)) <= 0:
        raise ValueError(
            f"{text!r} is not an age like 90d, 12h, 2w, 30m (a positive number and a unit s/m/h/d/w)"
        )
    return timedelta(seconds=int(match.group(1)) * UNIT_SECONDS[match.group(2)])


@dataclass
class PurgeReport:
    counts: dict[str, int] = field(default_factory=dict)

    def summary(self, dry_run: bool) -> str:
        verb = "would delete" if dry_run else "deleted"
        return f"{verb}: " + ", ".join(f"{n} {name}" for name, n in self.counts.items())


def purge(cutoff: datetime, *, dry_run: bool = False, batch_size: int = 5000) -> PurgeReport:
    """Delete history older than `cutoff`; active runs are never touched."""
    chain_runs = ChainRun.objects.filter(created_at__lt=cutoff, status__in=FINISHED_STATUSES)
    workflow_runs = WorkflowRun.objects.filter(
        created_at__lt=cutoff, status__in=FINISHED_STATUSES, chain_run__isnull=True
    )
    if not dry_run:
        _roll_up_days_of(workflow_runs, WorkflowRun.objects.filter(chain_run__in=chain_runs))
    targets: list[tuple[str, models.QuerySet]] = [
        ("log entries", LogEntry.objects.filter(timestamp__lt=cutoff)),
        ("trigger fires", TriggerFire.objects.filter(fired_at__lt=cutoff)),
        ("seen files", SeenFile.objects.filter(fired_at__lt=cutoff)),
        ("chain runs", chain_runs),
        ("workflow runs", workflow_runs),
    ]
    report = PurgeReport()
    for name, queryset in targets:
        report.counts[name] = queryset.count() if dry_run else _delete_in_batches(queryset, batch_size)
    return report


def _roll_up_days_of(*doomed: models.QuerySet[WorkflowRun]) -> None:
    """Roll up the days the runs about to be deleted finished on (a chain run's steps go
    with it). Each set is found by its own index: runs by created_at, steps by chain run."""
    first: list[datetime] = []
    last: list[datetime] = []
    for runs in doomed:
        bounds = runs.aggregate(first=Min("finished_at"), last=Max("finished_at"))
        if bounds["first"] is not None:
            first.append(bounds["first"])
            last.append(bounds["last"])
    if first:
        rollup_finished_between(min(first), max(last))


def _delete_in_batches(queryset: models.QuerySet, batch_size: int) -> int:
    deleted = 0
    while True:
        ids = list(queryset.order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not ids:
            return deleted
        with transaction.atomic():
            queryset.model.objects.filter(pk__in=ids).delete()
        deleted += len(ids)
