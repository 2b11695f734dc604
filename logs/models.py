"""Structured log storage: one LogEntry per line a bot printed or a component logged."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from django.db import connection, models, transaction
from django.utils import timezone

from rpa_monitor.lib.counters import add_counts
from rpa_monitor.lib.text import clean_json, clean_text


class Level(models.TextChoices):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


LEVEL_NUMBERS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
ERROR_LEVELS = (Level.ERROR, Level.CRITICAL)

# Aliases bots commonly print; anything else unknown becomes INFO.
LEVEL_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL", "ERR": "ERROR", "TRACE": "DEBUG"}


def normalize_level(value: object, default: str = Level.INFO) -> str:
    if value in LEVEL_NUMBERS:  # the common case, first
        return value  # type: ignore[return-value]
    if isinstance(value, int):
        return level_for_number(value)
    if not isinstance(value, str):
        return default
    name = value.strip().upper()
    name = LEVEL_ALIASES.get(name, name)
    return name if name in LEVEL_NUMBERS else default


def level_for_number(levelno: int) -> str:
    for name in ("CRITICAL", "ERROR", "WARNING", "INFO"):
        if levelno >= LEVEL_NUMBERS[name]:
            return name
    return "DEBUG"


class LogRow(NamedTuple):
    """One entry on its way into the database (the fast ingest path's unit)."""

    timestamp: datetime
    level: str
    component: str
    message: str
    workflow_id: str = ""
    node_id: str = ""
    run_id: int | None = None
    metadata: dict[str, Any] | None = None


class LogEntryQuerySet(models.QuerySet["LogEntry"]):
    def errors(self) -> LogEntryQuerySet:
        return self.filter(level__in=ERROR_LEVELS)

    def in_range(self, start: datetime | None, end: datetime | None) -> LogEntryQuerySet:
        qs = self
        if start is not None:
            qs = qs.filter(timestamp__gte=start)
        if end is not None:
            qs = qs.filter(timestamp__lt=end)
        return qs

    def matching(
        self,
        *,
        level: str | None = None,
        component: str | None = None,
        workflow_id: str | None = None,
        run_id: int | None = None,
        q: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> LogEntryQuerySet:
        """The entries matching every filter given (None = not given): the API's and the export's filters.

        `q` is a case-insensitive substring of the message (on SQLite, case folds
        for ASCII letters only, as in the admin search); the range is [start, end).
        """
        exact = {"level": level, "component": component, "workflow_id": workflow_id, "run_id": run_id}
        qs = self.filter(**{name: value for name, value in exact.items() if value is not None})
        if q:
            qs = qs.filter(message__icontains=q)
        return qs.in_range(start, end)


_LogEntryManagerBase = models.Manager.from_queryset(LogEntryQuerySet)


class LogEntryManager(_LogEntryManagerBase):
    """The queryset's filters (errors, in_range, matching) plus the bulk ingest path."""

    def ingest(self, rows: Sequence[LogRow]) -> int:
        """Store many entries in one transaction, bypassing per-object ORM work.

        Bots print hundreds of thousands of lines; model instances and
        bulk_create's per-field preparation cost ~10x a prepared executemany.
        The per-(level, component) counts are bumped in the same transaction,
        so they never disagree with the rows.
        """
        if not rows:
            return 0
        table = connection.ops.quote_name(LogEntry._meta.db_table)
        sqlite = connection.vendor == "sqlite"
        json_placeholder = "%s" if sqlite else "%s::jsonb"
        sql = (
            f"INSERT INTO {table} (timestamp, level, component, message, workflow_id, "
            f"node_id, run_id, metadata) VALUES (%s, %s, %s, %s, %s, %s, %s, {json_placeholder})"
        )
        params, counts = _prepare(rows, sqlite)
        try:
            _insert(sql, params, counts)
        except UnicodeEncodeError:
            # Lone surrogates (e.g. undecodable file names) cannot be encoded for
            # the database: replace them and store the batch rather than lose it.
            # Checked only on failure, so the hot path pays nothing.
            params, counts = _prepare([_sanitize_row(row) for row in rows], sqlite)
            _insert(sql, params, counts)
        return len(rows)


def _insert(sql: str, params: list[tuple[Any, ...]], counts: Counter[tuple[str, str]]) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(sql, params)
        LogCount.objects.add(counts)


def _sanitize_row(row: LogRow) -> LogRow:
    return row._replace(
        component=clean_text(row.component),
        message=clean_text(row.message),
        workflow_id=clean_text(row.workflow_id),
        node_id=clean_text(row.node_id),
        metadata=clean_json(row.metadata) if row.metadata else row.metadata,
    )


# One encoder for every row: json.dumps() with options builds a new one per call.
_METADATA_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)


def _prepare(rows: Sequence[LogRow], sqlite: bool) -> tuple[list[tuple[Any, ...]], Counter[tuple[str, str]]]:
    """Rows as INSERT parameters, and the count per (level, component), in one pass.

    This is the hot loop of log ingest (every line a bot prints), so it avoids
    per-row function calls: lines read together share one timestamp object,
    converted once.
    """
    params = []
    counts: Counter[tuple[str, str]] = Counter()
    last_timestamp: datetime | None = None
    adapted: Any = None
    for timestamp, level, component, message, workflow_id, node_id, run_id, metadata in rows:
        if timestamp is not last_timestamp:
            last_timestamp, adapted = timestamp, _adapt_timestamp(timestamp, sqlite)
        # PostgreSQL text cannot hold NUL; bots printing binary must not break ingest.
        if "\x00" in message:
            message = message.replace("\x00", "\ufffd")
        component, workflow_id, node_id = (
            _clean(component[:100]),
            _clean(workflow_id[:100]),
            _clean(node_id[:200]),
        )
        if metadata:
            text = _METADATA_ENCODER.encode(metadata)
            if "\\u0000" in text:  # maybe a NUL, which jsonb refuses: clean the values, not the text
                text = _METADATA_ENCODER.encode(clean_json(metadata))
        else:
            text = "{}"
        params.append((adapted, level, component, message, workflow_id, node_id, run_id, text))
        counts[level, component] += 1
    return params, counts


def _adapt_timestamp(value: datetime, sqlite: bool) -> Any:
    if sqlite:
        # Django stores SQLite datetimes as naive UTC text.
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return str(value)
    return value


def _clean(value: str) -> str:
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


class LogEntry(models.Model):
    timestamp = models.DateTimeField(default=timezone.now)
    level = models.CharField(max_length=8, choices=Level.choices, default=Level.INFO)
    component = models.CharField(max_length=100)
    message = models.TextField(blank=True)
    workflow_id = models.CharField("workflow", max_length=100, blank=True, default="")
    node_id = models.CharField("node", max_length=200, blank=True, default="")
    run = models.ForeignKey(
        "chains.WorkflowRun",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="log_entries",
        db_index=False,  # covered by log_run_ts_idx
    )
    metadata = models.JSONField(default=dict, blank=True)

    objects = LogEntryManager()

    class Meta:
        verbose_name = "log entry"
        verbose_name_plural = "log entries"
        ordering = ["-timestamp", "-id"]
        # Bulk export is separate from reading: a ZIP of every line may carry secrets bots printed.
        permissions = [("export_logs", "Can export log entries (ZIP download)")]
        indexes = [
            # Admin default ordering, date-range filters, export and retention.
            models.Index(fields=["timestamp"], name="log_ts_idx"),
            # Admin/API filter by level, newest first; export of error_logs.json.
            models.Index(fields=["level", "timestamp"], name="log_level_ts_idx"),
            # Admin/API filter by component, newest first.
            models.Index(fields=["component", "timestamp"], name="log_component_ts_idx"),
            # Admin/API filter by workflow, newest first.
            models.Index(fields=["workflow_id", "timestamp"], name="log_workflow_ts_idx"),
            # "This run's log entries" link from the run pages.
            models.Index(fields=["run", "timestamp"], name="log_run_ts_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.timestamp:%Y-%m-%d %H:%M:%S} {self.level} {self.component}: {self.message[:80]}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Entries saved one by one count too (the ingest path counts its batches).
        adding = self._state.adding
        with transaction.atomic():
            super().save(*args, **kwargs)
            if adding:
                LogCount.objects.add({(self.level, self.component[:100]): 1})


class LogCountManager(models.Manager["LogCount"]):
    def add(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Atomically add to the per-(level, component) totals."""
        add_counts(LogCount, ["level", "component"], counts)

    def components(self) -> list[str]:
        return list(self.order_by("component").values_list("component", flat=True).distinct())


class LogCount(models.Model):
    """Running total of stored entries per level and component.

    Never decremented (retention deletes rows, not history), so it backs the
    `log_entries_total` counter, and its small set of components feeds the
    admin's component filter without a DISTINCT over the log table.
    """

    level = models.CharField(max_length=8, choices=Level.choices)
    component = models.CharField(max_length=100)
    count = models.BigIntegerField(default=0)

    objects = LogCountManager()

    class Meta:
        constraints = [
            # The upsert in LogCountManager.add conflicts on exactly this pair.
            models.UniqueConstraint(fields=["level", "component"], name="logcount_level_component_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.level} {self.component}: {self.count}"
