"""Read-only admin over the log table, built for millions of rows.

Every filter reads its choices from a small table (level choices, LogCount's
components, Workflow slugs), never a DISTINCT over log entries; every filter
has an index that starts with its column and ends with the timestamp.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from chains.admin import ReadOnlyAdmin
from chains.models import Workflow
from logs.models import LogCount, LogEntry
from rpa_monitor.lib.admin import DateRangeFilter, badge

MAX_ID = 2**63 - 1


class ComponentFilter(admin.SimpleListFilter):
    title = "component"
    parameter_name = "component"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(c, c) for c in LogCount.objects.components()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[LogEntry]) -> QuerySet[LogEntry]:
        return queryset.filter(component=self.value()) if self.value() else queryset


class WorkflowFilter(admin.SimpleListFilter):
    title = "workflow"
    parameter_name = "workflow_id"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(slug, slug) for slug in Workflow.objects.order_by("slug").values_list("slug", flat=True)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[LogEntry]) -> QuerySet[LogEntry]:
        return queryset.filter(workflow_id=self.value()) if self.value() else queryset


class RunFilter(admin.SimpleListFilter):
    """`?run=N`: one run's entries (the runs' "logs" links); shown only while in use."""

    title = "run"
    parameter_name = "run"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        # Any value keeps the filter in use (a filter without output is not applied,
        # so `?run=abc` would otherwise list every entry).
        value = self.value()
        return [(value, f"run #{value}")] if value else []

    def has_output(self) -> bool:
        return bool(self.lookup_choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[LogEntry]) -> QuerySet[LogEntry]:
        value = self.value()
        if not value:
            return queryset
        if not value.isdigit() or int(value) > MAX_ID:  # no such run (and SQLite cannot compare it)
            return queryset.none()
        return queryset.filter(run_id=int(value))


class TimestampRangeFilter(DateRangeFilter):
    field_name = "timestamp"


@admin.register(LogEntry)
class LogEntryAdmin(ReadOnlyAdmin):
    list_display = [
        "timestamp",
        "level_badge",
        "component",
        "workflow_id",
        "node_id",
        "run_link",
        "short_message",
    ]
    list_display_links = ["timestamp"]
    list_filter = ["level", ComponentFilter, WorkflowFilter, RunFilter, TimestampRangeFilter]
    search_fields = ["message", "=node_id"]
    list_per_page = 100
    readonly_fields = (
        "timestamp",
        "level_badge",
        "component",
        "workflow_id",
        "node_id",
        "run_link",
        "message_block",
        "metadata_block",
    )
    fields = readonly_fields

    @admin.display(description="level", ordering="level")
    def level_badge(self, obj: LogEntry) -> str:
        return badge(obj.level)

    @admin.display(description="run")
    def run_link(self, obj: LogEntry) -> str:
        if obj.run_id is None:
            return "-"
        return format_html(
            '<a href="{}">#{}</a>',
            reverse("admin:chains_workflowrun_change", args=[obj.run_id]),
            obj.run_id,
        )

    @admin.display(description="message")
    def short_message(self, obj: LogEntry) -> str:
        first = obj.message.splitlines()[0] if obj.message else ""
        return first[:200] + ("…" if len(first) > 200 or "\n" in obj.message else "")

    @admin.display(description="message")
    def message_block(self, obj: LogEntry) -> str:
        return format_html("<pre style='white-space:pre-wrap;margin:0'>{}</pre>", obj.message)

    @admin.display(description="metadata")
    def metadata_block(self, obj: LogEntry) -> str:
        if not obj.metadata:
            return "-"
        return format_html("<pre style='margin:0'>{}</pre>", json.dumps(obj.metadata, indent=2, default=str))
