"""Admin building blocks shared by the apps: status badges, filters, a capped paginator."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any, cast

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html

from rpa_monitor.lib.dates import parse_bound

STATUS_COLOURS = {
    "queued": "#6c757d",
    "running": "#0d6efd",
    "success": "#198754",
    "failure": "#dc3545",
    "timeout": "#fd7e14",
    "cancelled": "#6c757d",
    "abandoned": "#6f42c1",
    "started": "#198754",
    "skipped": "#fd7e14",
    "error": "#dc3545",
    "DEBUG": "#6c757d",
    "INFO": "#0d6efd",
    "WARNING": "#fd7e14",
    "ERROR": "#dc3545",
    "CRITICAL": "#842029",
}


def badge(value: str | None) -> str:
    if not value:
        return "-"
    colour = STATUS_COLOURS.get(value, "#6c757d")
    return format_html(
        '<span class="rpa-badge" style="background:{};color:#fff;padding:1px 6px;border-radius:8px;'
        'font-size:11px;white-space:nowrap">{}</span>',
        colour,
        value,
    )


def format_duration(delta: timedelta | None) -> str:
    if delta is None:
        return "-"
    seconds = delta.total_seconds()
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def format_rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0f}%"


class CappedCountPaginator(Paginator):
    """Counts at most `cap` rows: COUNT(*) over millions of log rows is what makes admins crawl."""

    cap = 10_000

    @cached_property
    def count(self) -> int:
        return cast(QuerySet[Any], self.object_list)[: self.cap].count()


class DateRangeFilter(admin.SimpleListFilter):
    """`?since=...&until=...` (ISO date or datetime; a bare `until` date includes that day).

    Offers quick ranges as links; the changelist's search box keeps the
    parameters. Subclasses set `field_name` (an indexed datetime field).
    """

    title = "date range"
    parameter_name = "since"
    until_parameter = "until"
    field_name = "created_at"
    template = "admin/rpa_date_range_filter.html"

    def __init__(
        self, request: HttpRequest, params: dict[str, Any], model: type[Model], model_admin: Any
    ) -> None:
        self.until_value = _first(params.pop(self.until_parameter, None))
        super().__init__(request, params, model, model_admin)
        self.used_parameters.pop(self.until_parameter, None)
        if self.until_value:
            self.used_parameters[self.until_parameter] = self.until_value

    def expected_parameters(self) -> list[str | None]:
        return [self.parameter_name, self.until_parameter]

    def has_output(self) -> bool:
        return True

    def lookups(self, request: HttpRequest, model_admin: Any) -> Iterable[tuple[str, str]]:
        now = timezone.localtime()
        return [
            ((now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"), "Last hour"),
            (now.date().isoformat(), "Today"),
            ((now - timedelta(days=7)).date().isoformat(), "Last 7 days"),
            ((now - timedelta(days=30)).date().isoformat(), "Last 30 days"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        since = parse_bound(self.value(), end=False)
        until = parse_bound(self.until_value, end=True)
        if since is not None:
            queryset = queryset.filter(**{f"{self.field_name}__gte": since})
        if until is not None:
            queryset = queryset.filter(**{f"{self.field_name}__lt": until})
        return queryset

    def choices(self, changelist: Any) -> Iterator[Any]:
        own = {self.parameter_name, self.until_parameter}
        self.hidden_params = [(k, v) for k, v in changelist.params.items() if k not in own]
        yield {
            "selected": self.value() is None and self.until_value is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name, self.until_parameter]),
            "display": "Any time",
        }
        for value, title in self.lookup_choices:
            yield {
                "selected": self.value() == value and not self.until_value,
                "query_string": changelist.get_query_string(
                    {self.parameter_name: value}, [self.until_parameter]
                ),
                "display": title,
            }

    @property
    def form(self) -> dict[str, Any]:
        return {
            "since": self.value() or "",
            "until": self.until_value or "",
            "hidden": self.hidden_params,
        }


def _first(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[-1] if value else None
    return value or None
