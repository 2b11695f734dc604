"""Admin for workflows, chains and their runs (runs are read-only)."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import OuterRef, QuerySet, Subquery, Sum
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join

from chains.models import (
    Chain,
    ChainRun,
    ChainRunCount,
    ChainStep,
    RunStatus,
    Workflow,
    WorkflowRun,
    WorkflowRunCount,
    check_step_count,
)
from chains.runner import cancel_run, enqueue_chain, enqueue_workflow, resume_chain_run
from credentials.models import Secret
from credentials.vault import credential_like_keys
from rpa_monitor.errors import ChainExecutionError
from rpa_monitor.lib.admin import (
    STATUS_COLOURS,
    BadInputGuard,
    DateRangeFilter,
    KeyAutocompleteSelect,
    ReadOnlyAdmin,
    SafeJSONField,
    badge,
    format_duration,
    format_rate,
)


class ExecutePermission:
    """Starting and stopping work needs `chains.execute`, not just seeing it (actions and buttons)."""

    def has_execute_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("chains.execute")


def logs_link(run_id: int, label: str = "logs") -> str:
    return format_html('<a href="{}?run={}">{}</a>', reverse("admin:logs_logentry_changelist"), run_id, label)


def _rate_subquery(counts_model: Any, owner: str) -> tuple[Subquery, Subquery]:
    """(successes, decided runs) per owner row, read from the counter table in one query."""
    base = counts_model.objects.filter(**{owner: OuterRef("pk")}).values(owner)
    successes = base.filter(status=RunStatus.SUCCESS).annotate(n=Sum("count")).values("n")
    decided = base.exclude(status=RunStatus.CANCELLED).annotate(n=Sum("count")).values("n")
    return Subquery(successes), Subquery(decided)


def _rate(obj: Any) -> str:
    if not obj.runs_decided:
        return "-"
    return format_rate(100.0 * (obj.runs_succeeded or 0) / obj.runs_decided)


class CommandField(forms.CharField):
    """argv edited as a shell-like line (`python examples/login.py --fast`), stored as a list."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return shlex.join(value)
        return value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        text = super().to_python(value)
        if not text:
            return []
        try:
            return shlex.split(text)
        except ValueError as exc:
            raise forms.ValidationError(f"cannot split the command line: {exc}") from None


class WorkflowForm(forms.ModelForm):
    command = CommandField(
        required=False,
        widget=forms.TextInput(attrs={"size": 80}),
        help_text="Program and arguments as in a shell (quotes allowed), run without a shell. "
        "`python` means the interpreter RPA Monitor runs on.",
    )

    class Meta:
        model = Workflow
        fields = [
            "slug",
            "name",
            "description",
            "enabled",
            "kind",
            "command",
            "callable",
            "working_dir",
            "environment",
            "secrets",
            "timeout_seconds",
            "max_retries",
            "retry_delay_seconds",
        ]
        widgets = {"environment": forms.Textarea(attrs={"rows": 3, "cols": 60})}
        field_classes = {"environment": SafeJSONField}

    user: Any = None  # set by WorkflowAdmin.get_form: who may attach which secret

    def clean_secrets(self) -> Any:
        """A secret with allowed groups is attached only by their members (kept ones stay)."""
        chosen = self.cleaned_data["secrets"]
        kept = self.instance.secrets.values_list("pk", flat=True) if self.instance.pk else []
        added = chosen.exclude(pk__in=list(kept))
        usable = Secret.objects.none() if self.user is None else added.usable_by(self.user)
        refused = list(added.exclude(pk__in=usable.values("pk")).values_list("name", flat=True))
        if refused:
            raise forms.ValidationError(
                f"You may not attach {', '.join(refused)}: only members of the secret's allowed groups may."
            )
        return chosen

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        environment, secrets = cleaned.get("environment"), cleaned.get("secrets")
        if isinstance(environment, dict) and secrets is not None:
            clashes = sorted(set(environment) & {s.name for s in secrets})
            if clashes:
                self.add_error("environment", f"{', '.join(clashes)} is also an attached secret: keep one")
        return cleaned


EXECUTION_FIELDS = ("kind", "command", "callable", "working_dir", "environment", "secrets")


@admin.register(Workflow)
class WorkflowAdmin(BadInputGuard, ExecutePermission, admin.ModelAdmin):
    form = WorkflowForm
    list_display = [
        "slug",
        "name",
        "kind",
        "command_display",
        "enabled",
        "last_run",
        "success_rate",
        "timeout_seconds",
    ]
    list_filter = ["kind", "enabled"]
    search_fields = ["slug", "name", "description"]
    actions = ["run_now", "enable", "disable"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["secrets"]
    fieldsets = [
        (None, {"fields": ["slug", "name", "description", "enabled"]}),
        ("What it runs", {"fields": list(EXECUTION_FIELDS)}),
        ("Limits", {"fields": ["timeout_seconds", "max_retries", "retry_delay_seconds"]}),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Workflow | None = None) -> tuple[str, ...]:
        # What a workflow executes is a security boundary (it runs on our servers):
        # editing it takes chains.change_execution, not just chains.change_workflow.
        if request.user.has_perm("chains.change_execution"):
            return ()
        return EXECUTION_FIELDS

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and request.user.has_perm("chains.change_execution")

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        form.user = request.user  # type: ignore[attr-defined]  # a class made for this request
        return form

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        keys = credential_like_keys(form.instance.environment)
        if keys:
            one = len(keys) == 1
            self.message_user(
                request,
                format_html(
                    "{} in the environment {} plain text that anyone who can view this workflow reads: "
                    'store {} as <a href="{}">Secrets</a> and attach {} instead.',
                    ", ".join(keys),
                    "looks like a credential in" if one else "look like credentials in",
                    "it" if one else "them",
                    reverse("admin:credentials_secret_changelist"),
                    "it" if one else "them",
                ),
                messages.WARNING,
            )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Workflow]:
        last = WorkflowRun.objects.filter(workflow=OuterRef("pk")).order_by("-id")
        succeeded, decided = _rate_subquery(WorkflowRunCount, "workflow")
        return (
            super()
            .get_queryset(request)
            .annotate(
                last_status=Subquery(last.values("status")[:1]),
                last_run_id=Subquery(last.values("id")[:1]),
                runs_succeeded=succeeded,
                runs_decided=decided,
            )
        )

    @admin.display(description="command / callable")
    def command_display(self, obj: Workflow) -> str:
        return format_html("<code>{}</code>", obj.command_line[:120])

    @admin.display(description="last run")
    def last_run(self, obj: Any) -> str:
        if not obj.last_run_id:
            return "-"
        url = reverse("admin:chains_workflowrun_change", args=[obj.last_run_id])
        return format_html('<a href="{}">{}</a>', url, badge(obj.last_status))

    @admin.display(description="success rate")
    def success_rate(self, obj: Any) -> str:
        return _rate(obj)

    @admin.action(description="Run now (in the background)", permissions=["execute"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[Workflow]) -> None:
        runs = [enqueue_workflow(w, requested_by=request.user) for w in queryset]
        for run in runs:
            self.log_change(request, run.workflow, f"Queued run #{run.pk}")
        links = format_html_join(
            ", ",
            '<a href="{}">{} #{}</a>',
            ((reverse("admin:chains_workflowrun_change", args=[r.pk]), r.workflow.slug, r.pk) for r in runs),
        )
        self.message_user(request, format_html("Queued {} run(s): {}", len(runs), links), messages.SUCCESS)

    @admin.action(description="Enable selected", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[Workflow]) -> None:
        self.message_user(request, f"Enabled {queryset.update(enabled=True)} workflow(s).")

    @admin.action(description="Disable selected", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[Workflow]) -> None:
        self.message_user(request, f"Disabled {queryset.update(enabled=False)} workflow(s).")


class StepWorkflowSelect(KeyAutocompleteSelect):
    """The workflow autocomplete, rendering the chosen workflow from `labels`.

    Django's widget looks the chosen object up with one query per row, so a
    chain's page cost a query per step; the formset fills `labels` once.
    """

    labels: dict[str, str] | None = None

    def optgroups(self, name: str, value: Any, attrs: Any = None) -> list[Any]:
        if self.labels is None:
            return super().optgroups(name, value, attrs)
        chosen = next((str(v) for v in value if str(v) in self.labels), None)
        options = [] if self.is_required else [self.create_option(name, "", "", False, 0)]
        if chosen is not None:
            options.append(self.create_option(name, chosen, self.labels[chosen], True, len(options)))
        return [(None, options, 0)]


class ChainStepFormSet(forms.BaseInlineFormSet):
    # The inline's max_num and absolute_max are RPA_MAX_CHAIN_STEPS: a POST claiming more
    # rows (TOTAL_FORMS=100000) builds no more forms than that and gets this error.
    default_error_messages = {"too_many_forms": "A chain has at most %(num)d steps (RPA_MAX_CHAIN_STEPS)."}

    def get_queryset(self) -> QuerySet[ChainStep]:
        # A chain saved over the limit before it existed still renders in bounded time.
        if not hasattr(self, "_bounded_queryset"):
            self._bounded_queryset = super().get_queryset()[: settings.RPA_MAX_CHAIN_STEPS]
        return self._bounded_queryset

    @cached_property
    def workflow_labels(self) -> dict[str, str]:
        """{pk: label} of every workflow a row shows (saved or just posted), in one query."""
        ids = {str(step.workflow_id) for step in self.get_queryset()}
        if self.is_bound:
            ids.update(
                value
                for key, value in self.data.items()
                if key.startswith(f"{self.prefix}-") and key.endswith("-workflow")
            )
        wanted = [pk for pk in ids if pk.isdigit() and len(pk) < 19]  # beyond 64 bits: no such row
        return {str(w.pk): str(w) for w in Workflow.objects.filter(pk__in=wanted)}

    def add_fields(self, form: forms.Form, index: int | None) -> None:
        super().add_fields(form, index)
        widget = form.fields["workflow"].widget
        widget = getattr(widget, "widget", widget)  # inside the admin's related-field wrapper
        if index is not None and isinstance(widget, StepWorkflowSelect):
            widget.labels = self.workflow_labels

    def clean(self) -> None:
        super().clean()
        kept = [f for f in self.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
        if not kept:
            raise forms.ValidationError("A chain needs at least one step.")
        self._check_untouched_positions(kept)
        self._check_step_count(kept)

    def _check_step_count(self, kept: list[forms.Form]) -> None:
        """The rows kept plus any saved steps this page does not show: at most the limit."""
        unshown = 0
        if self.instance.pk is not None:
            carried = [f.instance.pk for f in self.initial_forms if f.instance.pk is not None]
            unshown = ChainStep.objects.filter(chain=self.instance).exclude(pk__in=carried).count()
        try:
            check_step_count(len(kept) + unshown)
        except ValidationError as exc:
            raise forms.ValidationError(exc.message_dict["workflows"]) from None

    def _check_untouched_positions(self, kept: list[forms.Form]) -> None:
        """Django compares the posted rows with each other only: a position held by a saved
        step this POST does not carry (a stale or tampered form) hit the unique constraint."""
        if self.instance.pk is None:
            return
        carried = [f.instance.pk for f in self.initial_forms if f.instance.pk is not None]
        others = ChainStep.objects.filter(chain=self.instance).exclude(pk__in=carried)
        taken = set(others.values_list("position", flat=True))
        clashes = sorted(taken & {f.cleaned_data.get("position") for f in kept})
        if clashes:
            raise forms.ValidationError(
                f"position {', '.join(map(str, clashes))} is already taken by a saved step "
                "not on this page; reload the chain and try again."
            )

    def save(self, commit: bool = True) -> list[ChainStep]:
        steps: list[ChainStep] = super().save(commit=False)
        if commit:
            self._write(steps)
        return steps

    def _write(self, steps: list[ChainStep]) -> None:
        """Deleted and moved rows leave first, then every changed row is written: steps can
        trade places (1 ↔ 2), where Django's row-by-row save broke the unique (chain, position)."""
        moved = [step.pk for step in steps if step.pk is not None]
        ChainStep.objects.filter(pk__in=[*moved, *(obj.pk for obj in self.deleted_objects)]).delete()
        for step in steps:
            step.save(force_insert=step.pk is not None)


class ChainStepInline(admin.TabularInline):
    model = ChainStep
    formset = ChainStepFormSet
    extra = 0
    min_num = 1
    ordering = ["position"]
    autocomplete_fields = ["workflow"]

    def get_max_num(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> int:
        return settings.RPA_MAX_CHAIN_STEPS

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        # Django's default hard limit is max_num + 1000 forms built per POST.
        kwargs.setdefault("absolute_max", settings.RPA_MAX_CHAIN_STEPS)
        return super().get_formset(request, obj, **kwargs)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "workflow":
            kwargs["widget"] = StepWorkflowSelect(db_field, self.admin_site, using=kwargs.get("using"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(Chain)
class ChainAdmin(BadInputGuard, ExecutePermission, admin.ModelAdmin):
    list_display = ["slug", "name", "sequence", "enabled", "last_execution", "success_rate"]
    list_filter = ["enabled"]
    search_fields = ["slug", "name", "description"]
    inlines = [ChainStepInline]
    actions = ["execute", "enable", "disable"]
    prepopulated_fields = {"slug": ["name"]}
    change_form_template = "admin/chains/chain/change_form.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Chain]:
        last = ChainRun.objects.filter(chain=OuterRef("pk")).order_by("-id")
        succeeded, decided = _rate_subquery(ChainRunCount, "chain")
        return (
            super()
            .get_queryset(request)
            .prefetch_related("steps__workflow")
            .annotate(
                last_status=Subquery(last.values("status")[:1]),
                last_run_id=Subquery(last.values("id")[:1]),
                last_started=Subquery(last.values("created_at")[:1]),
                runs_succeeded=succeeded,
                runs_decided=decided,
            )
        )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> Any:
        extra_context = {**(extra_context or {}), "can_execute": self.has_execute_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self) -> list[Any]:
        execute = self.admin_site.admin_view(self.execute_view)
        return [
            path("<int:object_id>/execute/", execute, name="chains_chain_execute"),
            *super().get_urls(),
        ]

    @admin.display(description="steps")
    def sequence(self, obj: Chain) -> str:
        return obj.sequence

    @admin.display(description="last execution")
    def last_execution(self, obj: Any) -> str:
        if not obj.last_run_id:
            return "-"
        url = reverse("admin:chains_chainrun_change", args=[obj.last_run_id])
        when = obj.last_started.strftime("%Y-%m-%d %H:%M") if obj.last_started else ""
        return format_html('<a href="{}">{}</a> {}', url, badge(obj.last_status), when)

    @admin.display(description="success rate")
    def success_rate(self, obj: Any) -> str:
        return _rate(obj)

    @admin.action(description="Execute (in the background)", permissions=["execute"])
    def execute(self, request: HttpRequest, queryset: QuerySet[Chain]) -> None:
        for chain in queryset:
            self._enqueue(request, chain)

    def execute_view(
        self, request: HttpRequest, object_id: int
    ) -> HttpResponseRedirect | HttpResponseNotAllowed:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        chain = get_object_or_404(Chain, pk=object_id)
        if not self.has_execute_permission(request, chain):
            raise PermissionDenied("executing chains needs the chains.execute permission")
        chain_run = self._enqueue(request, chain)
        if chain_run is None:  # back to the chain, where the error message shows (not a GET of this URL)
            return HttpResponseRedirect(reverse("admin:chains_chain_change", args=[chain.pk]))
        return HttpResponseRedirect(reverse("admin:chains_chainrun_change", args=[chain_run.pk]))

    def _enqueue(self, request: HttpRequest, chain: Chain) -> ChainRun | None:
        try:
            chain_run = enqueue_chain(chain, requested_by=request.user)
        except ChainExecutionError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return None
        url = reverse("admin:chains_chainrun_change", args=[chain_run.pk])
        self.log_change(request, chain, f"Executed: queued chain run #{chain_run.pk}")
        self.message_user(
            request,
            format_html('Queued <a href="{}">{} run #{}</a>.', url, chain.slug, chain_run.pk),
            messages.SUCCESS,
        )
        return chain_run

    @admin.action(description="Enable selected", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[Chain]) -> None:
        self.message_user(request, f"Enabled {queryset.update(enabled=True)} chain(s).")

    @admin.action(description="Disable selected", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[Chain]) -> None:
        self.message_user(request, f"Disabled {queryset.update(enabled=False)} chain(s).")


class RunColumns:
    """Columns shared by every run admin (chain runs, workflow runs, step inlines)."""

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: ChainRun | WorkflowRun) -> str:
        return badge(obj.status)

    @admin.display(description="duration")
    def duration_display(self, obj: ChainRun | WorkflowRun) -> str:
        return format_duration(obj.duration)


class CancelAction(ExecutePermission, admin.ModelAdmin):
    """The "Cancel" action of the run admins, recorded in each run's history."""

    actions = ["cancel"]

    @admin.action(description="Cancel (queued or running)", permissions=["execute"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        cancelled = 0
        for run in queryset:
            if cancel_run(run, f"cancelled by {request.user} from the admin"):
                self.log_change(request, run, "Cancelled")
                cancelled += 1
        skipped = len(queryset) - cancelled
        self.message_user(request, f"Cancelled {cancelled} run(s); {skipped} had already finished.")


class CreatedRangeFilter(DateRangeFilter):
    field_name = "created_at"


class StepRunInline(RunColumns, admin.TabularInline):
    model = WorkflowRun
    fk_name = "chain_run"
    extra = 0
    can_delete = False
    ordering = ["position", "attempt"]
    readonly_fields = (
        "run_link",
        "position",
        "workflow",
        "attempt",
        "status_badge",
        "started_at",
        "duration_display",
        "exit_code",
        "error_summary",
        "log_link",
    )
    fields = readonly_fields
    verbose_name = "step run"
    verbose_name_plural = "step runs"

    def get_queryset(self, request: HttpRequest) -> QuerySet[WorkflowRun]:
        return super().get_queryset(request).select_related("workflow")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="run")
    def run_link(self, obj: WorkflowRun) -> str:
        return format_html(
            '<a href="{}">#{}</a>',
            reverse("admin:chains_workflowrun_change", args=[obj.pk]),
            obj.pk,
        )

    @admin.display(description="error")
    def error_summary(self, obj: WorkflowRun) -> str:
        lines = obj.error.strip().splitlines()
        return lines[-1][:200] if lines else ""

    @admin.display(description="logs")
    def log_link(self, obj: WorkflowRun) -> str:
        return logs_link(obj.pk)


# -- the chain run timeline: each step attempt as a bar on the run's time axis ----------------

# Axis tick spacings (seconds): the first giving at most TIMELINE_TICKS intervals is used.
TICK_STEPS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600)
TIMELINE_TICKS = 6
MIN_BAR_PERCENT = 0.6  # an instant step stays visible
TEXT_ROOM_PERCENT = 25  # free track a bar's text needs beside the bar; else it goes inside


@dataclass(frozen=True)
class TimelineBar:
    name: str
    text: str
    title: str
    colour: str
    running: bool
    left: str | None = None  # percent of the span, formatted for CSS (None: not started)
    width: str | None = None
    text_position: str = "left:0%"
    text_class: str = "after"


def timeline_context(chain_run: ChainRun, runs: list[WorkflowRun], now: datetime) -> dict[str, Any]:
    """Bars and axis ticks for the chain run's step attempts (positions as percent of its span).

    The span runs from the chain run's start (or its first step's) to its end; while
    the chain run or a step is still running, to `now`, so running bars reach the right edge.
    """
    starts = [moment for moment in (chain_run.started_at, *(r.started_at for r in runs)) if moment]
    if not starts:
        return {"bars": [_timeline_bar(run, None, 1.0, now) for run in runs], "ticks": [], "caption": ""}
    start = min(starts)
    ends = [start, *(_run_end(run, now) for run in runs if run.started_at)]
    ends.append(now if chain_run.is_active else chain_run.finished_at or start)
    end = max(ends)
    span = max((end - start).total_seconds(), 0.001)
    caption = f"{timezone.localtime(start):%Y-%m-%d %H:%M:%S} to {timezone.localtime(end):%H:%M:%S}"
    caption += f" ({format_duration(end - start)}{', still running' if chain_run.is_active else ''})"
    return {
        "bars": [_timeline_bar(run, start, span, now) for run in runs],
        "ticks": _timeline_ticks(span),
        "caption": caption,
    }


def _run_end(run: WorkflowRun, now: datetime) -> datetime:
    assert run.started_at is not None
    return run.finished_at or (now if run.is_active else run.started_at)


def _timeline_bar(run: WorkflowRun, start: datetime | None, span: float, now: datetime) -> TimelineBar:
    step = f"{run.position} · " if run.position is not None else ""
    name = f"{step}{run.workflow.slug} · attempt {run.attempt}"
    colour = STATUS_COLOURS.get(run.status, "#6c757d")
    running = run.is_active
    if start is None or run.started_at is None:
        text = f"{run.status}, not started"
        return TimelineBar(name, text, f"{name}: {text}", colour, running)
    took = _run_end(run, now) - run.started_at
    text = f"{format_duration(took)} so far" if running else f"{format_duration(took)} · {run.status}"
    started = timezone.localtime(run.started_at).strftime("%H:%M:%S.%f")[:-3]  # to the millisecond
    title = f"{name}: {text}, started {started}"
    width = min(100.0, max(MIN_BAR_PERCENT, took.total_seconds() / span * 100))
    left = min((run.started_at - start).total_seconds() / span * 100, 100.0 - width)
    if 100.0 - left - width >= TEXT_ROOM_PERCENT:
        position, text_class = f"left:{left + width:.3f}%", "after"
    elif left >= TEXT_ROOM_PERCENT:
        position, text_class = f"right:{100.0 - left:.3f}%", "before"
    else:
        position, text_class = f"left:{left:.3f}%", "inside"
    return TimelineBar(
        name, text, title, colour, running, f"{left:.3f}", f"{width:.3f}", position, text_class
    )


def _timeline_ticks(span: float) -> list[dict[str, str]]:
    step = next((s for s in TICK_STEPS if span / s <= TIMELINE_TICKS), TICK_STEPS[-1])
    count = min(int(span / step + 1e-9), 1000)
    return [
        {"left": f"{n * step / span * 100:.3f}", "label": _offset_label(n * step)} for n in range(count + 1)
    ]


def _offset_label(seconds: float) -> str:
    """`0`, `+0.5s`, `+30s`, `+1m30s`, `+2h15m`: time since the start of the chain run."""
    if seconds == 0:
        return "0"
    if seconds < 60:
        return f"+{seconds:g}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"+{minutes}m{secs:02d}s" if secs else f"+{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"+{hours}h{minutes:02d}m" if minutes else f"+{hours}h"


@admin.register(ChainRun)
class ChainRunAdmin(RunColumns, CancelAction, ReadOnlyAdmin):
    list_display = [
        "id",
        "chain",
        "status_badge",
        "created_at",
        "started_at",
        "duration_display",
        "progress",
        "failure_point",
        "requested_by",
    ]
    list_display_links = ["id", "chain"]
    list_filter = ["status", "chain", CreatedRangeFilter]
    list_select_related = ["chain", "requested_by"]
    search_fields = ["=id", "chain__slug", "error"]
    inlines = [StepRunInline]
    actions = ["cancel", "resume"]
    readonly_fields = (
        "chain",
        "resumed_from",
        "status_badge",
        "created_at",
        "started_at",
        "finished_at",
        "duration_display",
        "total_steps",
        "failure_point",
        "error",
        "params",
        "requested_by",
        "timeline",
    )
    fields = readonly_fields

    @admin.display(description="Timeline")
    def timeline(self, obj: ChainRun) -> str:
        runs = list(obj.workflow_runs.select_related("workflow").order_by("position", "attempt", "id"))
        context = timeline_context(obj, runs, timezone.now())
        return render_to_string("admin/chains/chainrun/timeline.html", context)

    @admin.action(description="Resume from the failed step", permissions=["execute"])
    def resume(self, request: HttpRequest, queryset: QuerySet[ChainRun]) -> None:
        for chain_run in queryset.select_related("chain"):
            try:
                resumed = resume_chain_run(chain_run, requested_by=request.user)
            except ChainExecutionError as exc:
                self.message_user(request, exc.message, messages.ERROR)
                continue
            self.log_change(
                request, chain_run, f"Resumed from step {resumed.start_position} as #{resumed.pk}"
            )
            url = reverse("admin:chains_chainrun_change", args=[resumed.pk])
            self.message_user(
                request,
                format_html(
                    'Queued <a href="{}">run #{}</a> from step {}.', url, resumed.pk, resumed.start_position
                ),
                messages.SUCCESS,
            )

    @admin.display(description="steps")
    def progress(self, obj: ChainRun) -> str:
        return (
            f"{obj.failed_step or obj.total_steps}/{obj.total_steps}"
            if obj.finished_at
            else f"?/{obj.total_steps}"
        )

    @admin.display(description="failure point")
    def failure_point(self, obj: ChainRun) -> str:
        if obj.failed_step is None:
            return "-"
        return format_html("step {}: {}", obj.failed_step, (obj.error.splitlines() or [""])[0][:160])


class WorkflowRangeFilter(DateRangeFilter):
    field_name = "created_at"


@admin.register(WorkflowRun)
class WorkflowRunAdmin(RunColumns, CancelAction, ReadOnlyAdmin):
    list_display = [
        "id",
        "workflow",
        "chain_run_link",
        "position",
        "attempt",
        "status_badge",
        "started_at",
        "duration_display",
        "exit_code",
        "host",
        "pid",
        "log_link",
    ]
    list_display_links = ["id", "workflow"]
    list_filter = ["status", "workflow", WorkflowRangeFilter]
    list_select_related = ["workflow", "chain_run__chain"]
    search_fields = ["=id", "workflow__slug", "host", "error"]
    readonly_fields = (
        "workflow",
        "chain_run_link",
        "position",
        "attempt",
        "status_badge",
        "created_at",
        "started_at",
        "finished_at",
        "duration_display",
        "heartbeat_at",
        "exit_code",
        "error_block",
        "host",
        "pid",
        "worker_pid",
        "params_display",
        "progress_display",
        "requested_by",
        "log_link",
    )
    fields = readonly_fields

    @admin.display(description="chain run")
    def chain_run_link(self, obj: WorkflowRun) -> str:
        if obj.chain_run_id is None:
            return "-"
        url = reverse("admin:chains_chainrun_change", args=[obj.chain_run_id])
        chain_slug = obj.chain_run.chain.slug if obj.chain_run else ""
        return format_html('<a href="{}">{} #{}</a>', url, chain_slug, obj.chain_run_id)

    @admin.display(description="error")
    def error_block(self, obj: WorkflowRun) -> str:
        return (
            format_html("<pre style='white-space:pre-wrap;margin:0'>{}</pre>", obj.error)
            if obj.error
            else "-"
        )

    @admin.display(description="params")
    def params_display(self, obj: WorkflowRun) -> str:
        return format_html("<code>{}</code>", json.dumps(obj.params)) if obj.params else "-"

    @admin.display(description="progress")
    def progress_display(self, obj: WorkflowRun) -> str:
        if not obj.progress_total:
            return "-"
        return f"{obj.progress_done}/{obj.progress_total} ({obj.progress_percent:.0f}%)"

    @admin.display(description="logs")
    def log_link(self, obj: WorkflowRun) -> str:
        return logs_link(obj.pk)


# The daily aggregates admin lives in its own module; importing it registers it.
from chains import admin_daily  # noqa: E402, F401
