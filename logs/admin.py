"""Read-only admin over the log table, built for millions of rows.

Every filter reads its choices from a small table (level choices, LogCount's
components, Workflow slugs), never a DISTINCT over log entries; every filter
has an index that starts with its column and ends with the timestamp.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ERROR_FLAG
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseBase, HttpResponseRedirect, StreamingHttpResponse
from django.urls import path, reverse
from django.utils.html import format_html

from chains.models import Workflow
from logs.export import filename, stream_zip
from logs.models import LogCount, LogEntry
from rpa_monitor.errors import RPAMonitorError
from rpa_monitor.lib.admin import DateRangeFilter, ReadOnlyAdmin, badge
from rpa_monitor.lib.dates import DateRange, parse_bound

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
    # Adds the "Download ZIP" button (the export of the current filters).
    change_list_template = "admin/logs/logentry/change_list.html"

    def has_export_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request) and request.user.has_perm("logs.export_logs")

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        extra_context = {**(extra_context or {}), "can_export": self.has_export_permission(request)}
        return super().changelist_view(request, extra_context)

    def get_urls(self) -> list[Any]:
        download = self.admin_site.admin_view(self.download_view)
        return [path("download/", download, name="logs_logentry_download"), *super().get_urls()]

    def download_view(self, request: HttpRequest) -> HttpResponseBase:
        """The ZIP export of exactly what the changelist shows (filters, date range, search), streamed."""
        if not self.has_export_permission(request):
            raise PermissionDenied
        changelist_url = reverse("admin:logs_logentry_changelist")
        try:
            # The changelist's own machinery applies the filters, so the ZIP cannot
            # disagree with the list (search included: message and =node_id).
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseRedirect(f"{changelist_url}?{ERROR_FLAG}=1")
        # Malformed dates are ignored, as the date filter ignores them.
        date_range = DateRange(
            parse_bound(request.GET.get(TimestampRangeFilter.parameter_name), end=False),
            parse_bound(request.GET.get(TimestampRangeFilter.until_parameter), end=True),
        )
        try:
            chunks = stream_zip(date_range, changelist.queryset)
        except RPAMonitorError as exc:
            self.message_user(request, f"Cannot export: {exc.message}", messages.ERROR)
            return HttpResponseRedirect(changelist_url + changelist.get_query_string())
        response = StreamingHttpResponse(chunks, content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="{filename(date_range)}"'
        return response

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
