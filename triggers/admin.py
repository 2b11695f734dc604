"""Admin for triggers (edit, toggle, fire now) and their fires (read-only)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from chains.admin import ExecutePermission
from rpa_monitor.lib.admin import (
    BadInputGuard,
    DateRangeFilter,
    EnableActions,
    KeyAutocompleteAdmin,
    ReadOnlyAdmin,
    SafeJSONField,
    badge,
    format_duration,
)
from triggers.models import (
    EXECUTE_PERMISSION,
    SeenFile,
    Trigger,
    TriggerFire,
    execute_refusal,
    execution_changes,
)
from triggers.schedule import iter_dst_marks
from triggers.scheduler import fire_now

CONFIG_HELP = (
    'JSON. schedule: {"interval_seconds": 900} or {"cron": "30 2 * * 1-5"}, optionally '
    '"start_time"/"end_time" ("HH:MM", may cross midnight), "weekdays" (["mon", ...]), '
    '"timezone" (IANA, default the server\'s). file: {"path": "/a/dir", "pattern": "*.csv", '
    '"settle_seconds": 0}, the directory under one of RPA_FILE_TRIGGER_ROOTS. manual: {}.'
)


class TriggerForm(forms.ModelForm):
    class Meta:
        model = Trigger
        fields = ["name", "trigger_type", "workflow", "chain", "config", "params", "enabled", "overlap"]
        widgets = {
            "config": forms.Textarea(attrs={"rows": 4, "cols": 70}),
            "params": forms.Textarea(attrs={"rows": 2, "cols": 70}),
        }
        help_texts = {"config": CONFIG_HELP}
        field_classes = {"config": SafeJSONField, "params": SafeJSONField}

    may_execute = True  # set per request by TriggerAdmin.get_form

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not self.may_execute:
            # self.instance is still the stored trigger here (the form writes into it after clean).
            changes = execution_changes(self.instance if self.instance.pk else None, cleaned)
            if changes:
                raise ValidationError(execute_refusal(changes))
        return cleaned


@admin.register(Trigger)
class TriggerAdmin(BadInputGuard, ExecutePermission, EnableActions, KeyAutocompleteAdmin):
    toggle_noun = "trigger"
    form = TriggerForm
    list_display = [
        "name",
        "trigger_type",
        "target_link",
        "enabled",
        "overlap",
        "last_fired",
        "next_fire_at",
        "problem",
    ]
    list_filter = ["trigger_type", "enabled", "overlap"]
    search_fields = ["name", "workflow__slug", "chain__slug"]
    list_select_related = ["workflow", "chain"]
    autocomplete_fields = ["workflow", "chain"]
    actions = ["fire_selected", "enable", "disable"]
    readonly_fields = ["last_fired", "next_fire_at", "upcoming", "problem", "recent_fires"]
    fieldsets = [
        (None, {"fields": ["name", "trigger_type", "enabled", "overlap"]}),
        ("Target (exactly one)", {"fields": ["workflow", "chain", "params"]}),
        ("When", {"fields": ["config", "upcoming", "last_fired", "next_fire_at", "problem"]}),
        ("History", {"fields": ["recent_fires"]}),
    ]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        form.may_execute = request.user.has_perm(EXECUTE_PERMISSION)  # type: ignore[attr-defined]  # made per request
        return form

    @admin.display(description="target")
    def target_link(self, obj: Trigger) -> str:
        if obj.workflow_id:
            url = reverse("admin:chains_workflow_change", args=[obj.workflow_id])
            return format_html('workflow <a href="{}">{}</a>', url, obj.target_slug)
        url = reverse("admin:chains_chain_change", args=[obj.chain_id])
        return format_html('chain <a href="{}">{}</a>', url, obj.target_slug)

    @admin.display(description="next 5 fire times")
    def upcoming(self, obj: Trigger) -> str:
        schedule = obj.schedule()
        if schedule is None or not obj.enabled:
            return (
                "-"
                if obj.trigger_type == Trigger.Type.SCHEDULE
                else f"({obj.get_trigger_type_display()} trigger)"
            )
        slots = schedule.upcoming(timezone.now(), 5)
        rows = (
            (local.strftime("%a %Y-%m-%d %H:%M %Z (UTC%z)"), " ← DST change" if changed else "")
            for local, changed in iter_dst_marks(slots, schedule.tz)
        )
        return format_html(
            "<ul style='margin:0'>{}</ul>", format_html_join("", "<li>{}<strong>{}</strong></li>", rows)
        )

    @admin.display(description="recent fires")
    def recent_fires(self, obj: Trigger) -> str:
        fires = obj.fires.order_by("-fired_at")[:10]
        rows = ((f.fired_at.strftime("%Y-%m-%d %H:%M:%S"), badge(f.outcome), f.detail[:120]) for f in fires)
        link = reverse("admin:triggers_triggerfire_changelist") + f"?trigger__id__exact={obj.pk}"
        return format_html(
            "<table>{}</table><a href='{}'>all fires</a>",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
            link,
        )

    @admin.action(description="Fire now", permissions=["execute"])
    def fire_selected(self, request: HttpRequest, queryset: QuerySet[Trigger]) -> None:
        for trigger in queryset.select_related("workflow", "chain"):
            if not trigger.enabled:
                self.message_user(request, f"{trigger.name}: disabled, not fired.", messages.WARNING)
                continue
            fire = fire_now(
                trigger, requested_by=request.user, detail=f"fired from the admin by {request.user}"
            )
            self.log_change(request, trigger, f"Fired now: {fire.outcome}")
            level = messages.SUCCESS if fire.outcome == TriggerFire.Outcome.STARTED else messages.WARNING
            self.message_user(request, f"{trigger.name}: {fire.outcome} {fire.detail}".strip(), level)

    @admin.action(description="Enable selected", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        # Shown to every editor (disabling needs only change), refused with the reason.
        if not self.has_execute_permission(request):
            self.message_user(request, execute_refusal(["enabling a trigger"]), messages.ERROR)
            return
        super().enable(request, queryset)


class FiredRangeFilter(DateRangeFilter):
    field_name = "fired_at"


@admin.register(TriggerFire)
class TriggerFireAdmin(ReadOnlyAdmin):
    list_display = [
        "fired_at",
        "trigger",
        "due_at",
        "outcome_badge",
        "lateness",
        "missed_slots",
        "run_link",
        "detail",
        "host",
    ]
    list_filter = ["outcome", "trigger", FiredRangeFilter]
    list_select_related = ["trigger"]
    search_fields = ["detail", "trigger__name"]
    readonly_fields = (
        "trigger",
        "due_at",
        "fired_at",
        "outcome_badge",
        "lateness",
        "missed_slots",
        "run_link",
        "detail",
        "host",
        "requested_by",
    )
    fields = readonly_fields

    @admin.display(description="outcome", ordering="outcome")
    def outcome_badge(self, obj: TriggerFire) -> str:
        return badge(obj.outcome)

    @admin.display(description="late by", ordering="lateness_seconds")
    def lateness(self, obj: TriggerFire) -> str:
        return format_duration(obj.lateness)

    @admin.display(description="run")
    def run_link(self, obj: TriggerFire) -> str:
        if obj.chain_run_id:
            url = reverse("admin:chains_chainrun_change", args=[obj.chain_run_id])
            return format_html('<a href="{}">chain run #{}</a>', url, obj.chain_run_id)
        if obj.workflow_run_id:
            url = reverse("admin:chains_workflowrun_change", args=[obj.workflow_run_id])
            return format_html('<a href="{}">run #{}</a>', url, obj.workflow_run_id)
        return "-"


@admin.register(SeenFile)
class SeenFileAdmin(ReadOnlyAdmin):
    list_display = ["path", "trigger", "size", "first_seen_at", "changed_at", "fired_at"]
    list_filter = ["trigger"]
    list_select_related = ["trigger"]
    search_fields = ["path"]
