"""Retention: delete old log entries and finished run history in small batches.

Counters behind /metrics live in their own tables (LogCount, WorkflowRunCount,
ChainRunCount), so deleting history never makes a Prometheus counter go down.
Batches keep each transaction short: a purge never holds the SQLite write
lock long enough to make a bot's log writes wait.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import models, transaction

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
    targets: list[tuple[str, models.QuerySet]] = [
        ("log entries", LogEntry.objects.filter(timestamp__lt=cutoff)),
        ("trigger fires", TriggerFire.objects.filter(fired_at__lt=cutoff)),
        ("seen files", SeenFile.objects.filter(fired_at__lt=cutoff)),
        ("chain runs", ChainRun.objects.filter(created_at__lt=cutoff, status__in=FINISHED_STATUSES)),
        (
            "workflow runs",
            WorkflowRun.objects.filter(
                created_at__lt=cutoff, status__in=FINISHED_STATUSES, chain_run__isnull=True
            ),
        ),
    ]
    report = PurgeReport()
    for name, queryset in targets:
        report.counts[name] = queryset.count() if dry_run else _delete_in_batches(queryset, batch_size)
    return report


def _delete_in_batches(queryset: models.QuerySet, batch_size: int) -> int:
    deleted = 0
    while True:
        ids = list(queryset.order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not ids:
            return deleted
        with transaction.atomic():
            queryset.model.objects.filter(pk__in=ids).delete()
        deleted += len(ids)
