"""Admin building blocks shared by the apps: status badges, filters, a capped paginator."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Model, QuerySet
from django.forms.fields import InvalidJSONInput
from django.http import HttpRequest
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html

from rpa_monitor.lib.dates import parse_bound
from rpa_monitor.lib.limits import MAX_JSON_DEPTH, json_problem
from rpa_monitor.lib.text import SURROGATES

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
    # alerts: lifecycle, severity and delivery outcomes
    "triggered": "#dc3545",
    "acknowledged": "#fd7e14",
    "resolved": "#198754",
    "info": "#0d6efd",
    "warning": "#fd7e14",
    "critical": "#842029",
    "pending": "#6c757d",
    "sent": "#198754",
    "failed": "#dc3545",
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


def format_seconds(seconds: float | None) -> str:
    """A duration given in seconds (the aggregates' percentiles), as format_duration shows it."""
    return "-" if seconds is None else format_duration(timedelta(seconds=seconds))


def format_rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0f}%"


class SafeJSONField(forms.JSONField):
    """Django's JSON form field, with every unusable text a form error instead of a 500.

    - json.loads raises more than JSONDecodeError, which is all Django catches: a
      ValueError past Python's 4300-digit integer limit, a RecursionError for arrays
      nested thousands deep.
    - json.loads reads NaN, Infinity and 1e400 (as infinity), which neither database's
      JSON column stores (the INSERT failed, a 500): refused by `json_problem`, as in the API.
    - A JSON escape such as "\\ud800" decodes to a lone surrogate, which the models
      refuse (no database stores one); written back raw into the re-rendered form, it
      made the page itself unencodable. It is shown escaped again, as it was typed.
    """

    def to_python(self, value: Any) -> Any:
        try:
            parsed = super().to_python(value)
        except RecursionError:
            # json.loads gives up where Python's stack ends, which depends on how deep the
            # request already is: far beyond what json_problem allows either way.
            raise ValidationError(f"nested deeper than {MAX_JSON_DEPTH} levels", code="invalid") from None
        except ValueError:
            raise ValidationError(self.error_messages["invalid"], code="invalid") from None
        problem = json_problem(parsed)  # NaN, Infinity, 1e400 or nesting no database stores
        if problem:
            raise ValidationError(problem, code="invalid")
        return parsed

    def bound_data(self, data: Any, initial: Any) -> Any:
        try:
            return super().bound_data(data, initial)
        except (ValueError, RecursionError):
            return InvalidJSONInput(data)

    def prepare_value(self, value: Any) -> Any:
        text = super().prepare_value(value)
        if isinstance(text, str) and SURROGATES.search(text):
            return SURROGATES.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
        return text


MAX_KEY = 2**63 - 1


def is_integer_key(value: object) -> bool:
    """Could `value`, as posted, be one of our (64-bit, positive) primary keys?"""
    text = str(value)
    return text.isascii() and text.isdigit() and len(text) <= 19 and int(text) <= MAX_KEY


class BadInputGuard:
    """What Django's admin hands to the database as it was posted, checked first.

    - Actions filter by the posted `_selected_action` values as they are: `abc` or an
      empty id raised a ValueError (a 500), a 20-digit one an OverflowError on SQLite.
      Browsers only send real ids; anything else is refused with a message.
    - Changelist filters and search pass their text to the database: a NUL, which
      PostgreSQL text cannot hold, raised a DataError (a 500). Such a query string is
      an invalid lookup (Django's redirect to `?e=1`), and a search term with NUL (the
      autocomplete's) matches nothing, as nothing stored holds one.
    """

    def response_action(self, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        selected = request.POST.getlist(ACTION_CHECKBOX_NAME)
        bad = [value for value in selected if not is_integer_key(value)]
        if bad:
            shown = ", ".join(repr(value)[:40] for value in bad[:5])
            self.message_user(  # type: ignore[attr-defined]
                request, f"No action taken: {shown} is not the id of a row.", messages.ERROR
            )
            return None
        return super().response_action(request, queryset)  # type: ignore[misc]

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        if any("\x00" in text for key, values in request.GET.lists() for text in (key, *values)):
            raise IncorrectLookupParameters("the query string holds a NUL character")
        return super().get_changelist_instance(request)  # type: ignore[misc]

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Any], search_term: str) -> Any:
        if "\x00" in search_term:
            return queryset.none(), False
        return super().get_search_results(request, queryset, search_term)  # type: ignore[misc]


class KeyAutocompleteSelect(AutocompleteSelect):
    """Django's autocomplete widget, rendering only posted values that can be integer keys.

    Django looks the chosen value up as posted: re-rendering a refused form whose
    target was `abc` or a 40-digit id raised in the template (a 500). Such a value
    names no row, so it is shown as nothing chosen (the field's error says why).
    """

    def optgroups(self, name: str, value: Any, attrs: Any = None) -> list[Any]:
        keys = [v for v in value if is_integer_key(v)]
        return super().optgroups(name, keys, attrs)


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


class ReadOnlyAdmin(BadInputGuard, admin.ModelAdmin):
    """History (runs, fires, alerts, aggregates): viewable, never edited by hand."""

    show_full_result_count = False
    # Facet counts run a COUNT per filter choice over the whole table (millions of log rows).
    show_facets = admin.ShowFacets.NEVER
    paginator = CappedCountPaginator
    list_per_page = 50

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class KeyAutocompleteAdmin(admin.ModelAdmin):
    """`autocomplete_fields` rendered with KeyAutocompleteSelect (a garbage id is a form error)."""

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name in self.autocomplete_fields:
            kwargs["widget"] = KeyAutocompleteSelect(db_field, self.admin_site, using=kwargs.get("using"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class EnableActions(admin.ModelAdmin):
    """The "Enable selected" / "Disable selected" actions: each object's own `set_enabled()`
    (whatever enabling means for it), recorded in its history. `toggle_noun` names them."""

    toggle_noun = "object"

    @admin.action(description="Enable selected", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable selected", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._set_enabled(request, queryset, False)

    def _set_enabled(self, request: HttpRequest, queryset: QuerySet[Any], enabled: bool) -> None:
        changed = 0
        for obj in queryset:
            if obj.enabled != enabled:
                obj.set_enabled(enabled)
                self.log_change(request, obj, "Enabled" if enabled else "Disabled")
                changed += 1
        verb = "Enabled" if enabled else "Disabled"
        self.message_user(request, f"{verb} {changed} {self.toggle_noun}(s).")
