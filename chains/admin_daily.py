"""Read-only admin of the daily per-workflow aggregates (rolled up by `chains.daily`).

Imported by chains/admin.py. The table holds at most workflows x RPA_AGGREGATE_DAYS
rows, and every filter here reads either the `day` index (the date hierarchy's
Min/Max, then its drill-down within a year or month) or the small Workflow table
(the workflow filter lists workflows, not DISTINCT values of this table).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.http import HttpRequest

from chains.models import WorkflowDay
from rpa_monitor.lib.admin import ReadOnlyAdmin, format_rate, format_seconds

# Date hierarchy years Django can turn into a [from, to) range in any time zone: it computes
# datetime(year) and the next year, and an out-of-range one raised OverflowError (a 500).
YEARS = range(2, 9999)


@admin.register(WorkflowDay)
class WorkflowDayAdmin(ReadOnlyAdmin):
    list_display = [
        "day",
        "workflow",
        "runs",
        "failures",
        "success_rate_display",
        "p50_display",
        "p95_display",
        "p99_display",
        "final",
    ]
    list_display_links = ["day", "workflow"]
    list_filter = ["workflow", "final"]
    date_hierarchy = "day"
    list_select_related = ["workflow"]
    search_fields = ["workflow__slug"]
    ordering = ["-day", "workflow__slug"]
    list_per_page = 100
    fields = readonly_fields = (
        "workflow",
        "day",
        "runs",
        "successes",
        "failures",
        "cancelled",
        "success_rate_display",
        "duration_count",
        "mean_display",
        "p50_display",
        "p95_display",
        "p99_display",
        "final",
        "updated_at",
    )

    @admin.display(description="success rate")
    def success_rate_display(self, obj: WorkflowDay) -> str:
        return format_rate(obj.success_rate)

    @admin.display(description="p50", ordering="p50")
    def p50_display(self, obj: WorkflowDay) -> str:
        return format_seconds(obj.p50)

    @admin.display(description="p95", ordering="p95")
    def p95_display(self, obj: WorkflowDay) -> str:
        return format_seconds(obj.p95)

    @admin.display(description="p99", ordering="p99")
    def p99_display(self, obj: WorkflowDay) -> str:
        return format_seconds(obj.p99)

    @admin.display(description="mean duration")
    def mean_display(self, obj: WorkflowDay) -> str:
        return format_seconds(obj.duration_sum / obj.duration_count if obj.duration_count else None)

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        for part, digits in (("year", 4), ("month", 2), ("day", 2)):
            value = request.GET.get(f"day__{part}")
            if value is None:
                continue
            if not (value.isascii() and value.isdigit() and len(value) <= digits):
                raise IncorrectLookupParameters(f"day__{part} must be a number")
            if part == "year" and int(value) not in YEARS:
                raise IncorrectLookupParameters("day__year is out of range")
        return super().get_changelist_instance(request)
