"""Admin for alert rules, channels, alerts (acknowledge / resolve) and deliveries (read-only)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from alerts.models import (
    HTTP_KINDS,
    SECRET_MAX_CHARS,
    TARGET_MAX_CHARS,
    Alert,
    AlertRule,
    Delivery,
    NotificationChannel,
)
from chains.admin import CreatedRangeFilter
from rpa_monitor.lib.admin import (
    BadInputGuard,
    DateRangeFilter,
    EnableActions,
    KeyAutocompleteAdmin,
    ReadOnlyAdmin,
    SafeJSONField,
    badge,
)


class AlertRuleForm(forms.ModelForm):
    class Meta:
        model = AlertRule
        fields = [
            "name",
            "kind",
            "enabled",
            "severity",
            "workflow",
            "chain",
            "params",
            "channels",
            "cooldown_seconds",
            "quiet_hours",
        ]
        widgets = {"params": forms.Textarea(attrs={"rows": 2, "cols": 60})}
        field_classes = {"params": SafeJSONField}


@admin.register(AlertRule)
class AlertRuleAdmin(BadInputGuard, EnableActions, KeyAutocompleteAdmin):
    toggle_noun = "rule"
    form = AlertRuleForm
    list_display = ["name", "kind", "scope", "params_text", "severity_badge", "enabled", "open_alerts"]
    list_filter = ["kind", "severity", "enabled"]
    search_fields = ["name", "workflow__slug", "chain__slug"]
    list_select_related = ["workflow", "chain"]
    autocomplete_fields = ["workflow", "chain"]
    filter_horizontal = ["channels"]
    actions = ["enable", "disable"]
    readonly_fields = ["evaluated_at", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "kind", "enabled", "severity"]}),
        ("What it watches (both empty: all)", {"fields": ["workflow", "chain", "params"]}),
        ("Notifications", {"fields": ["channels", "cooldown_seconds", "quiet_hours"]}),
        ("State", {"fields": ["evaluated_at", "created_at", "updated_at"]}),
    ]

    @admin.display(description="scope")
    def scope(self, obj: AlertRule) -> str:
        return obj.scope_label

    @admin.display(description="params")
    def params_text(self, obj: AlertRule) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted((obj.params or {}).items())) or "-"

    @admin.display(description="severity", ordering="severity")
    def severity_badge(self, obj: AlertRule) -> str:
        return badge(obj.severity)

    @admin.display(description="open alerts")
    def open_alerts(self, obj: AlertRule) -> str:
        count = obj.alerts.open().count()  # the partial unique index: at most one per subject
        if not count:
            return "0"
        url = reverse("admin:alerts_alert_changelist") + f"?rule__id__exact={obj.pk}&open=yes"
        return format_html('<a href="{}">{}</a>', url, count)


class WriteOnlyInput(forms.TextInput):
    """A text input that never renders a value: a stored credential never goes back to the page."""

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        return super().get_context(name, None, attrs)


CREDENTIAL_FIELDS = ["target", "secret"]
TARGET_MAX_LENGTH = TARGET_MAX_CHARS


class ChannelForm(forms.ModelForm):
    """`target` (for HTTP kinds) and `secret` are write-only: blank keeps the stored value.

    They are form fields of their own, not the model's (Meta.exclude), so the form never
    copies them into the instance itself: `clean` hands them to the model's setters.
    """

    target = forms.CharField(
        max_length=TARGET_MAX_LENGTH,
        required=False,
        widget=forms.TextInput(attrs={"size": 60}),
        help_text=NotificationChannel._meta.get_field("target").help_text,
    )
    secret = forms.CharField(
        max_length=SECRET_MAX_CHARS,
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=NotificationChannel._meta.get_field("secret").help_text,
    )
    clear_secret = forms.BooleanField(required=False, label="Remove the stored secret")

    class Meta:
        model = NotificationChannel
        fields = ["name", "kind", "enabled"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        stored = self.instance
        posted_kind = self.data.get(self.add_prefix("kind")) if self.is_bound else None
        if (stored.pk and stored.target_is_credential) or posted_kind in HTTP_KINDS:
            self.fields["target"].widget = WriteOnlyInput(
                attrs={"size": 60, "autocomplete": "off", "maxlength": TARGET_MAX_LENGTH}
            )
        elif stored.pk:
            self.initial["target"] = stored.get_target()  # email addresses are shown
        if stored.pk and stored.target_is_credential:
            self.fields["target"].help_text = (
                f"Set to {stored.target_shown} (the rest is not shown: it can hold a token). "
                "Leave blank to keep it; a new URL replaces it."
            )
        if stored.pk and stored.has_secret:
            self.fields["secret"].help_text = "A secret is set (never shown). Leave blank to keep it."

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        stored = self.instance  # still as loaded: the model form copies the rest in _post_clean
        kind = cleaned.get("kind") or stored.kind
        target = cleaned.get("target") or ""
        if not target.strip() and stored.pk and stored.target_is_credential and kind in HTTP_KINDS:
            target = stored.get_target()  # kept; an email channel's addresses are in the form anyway
        secret = cleaned.get("secret") or ""
        if cleaned.get("clear_secret"):
            if secret:
                self.add_error("secret", "Either type a new secret or remove the stored one, not both.")
        elif not secret and stored.pk:
            secret = stored.get_secret()
        stored.set_target(target)
        stored.set_secret(secret)
        return cleaned


@admin.register(NotificationChannel)
class NotificationChannelAdmin(BadInputGuard, admin.ModelAdmin):
    form = ChannelForm
    list_display = ["name", "kind", "shown_target", "secret_state", "enabled", "last_delivery"]
    list_filter = ["kind", "enabled"]
    # Not the target: searching it would let a viewer guess a webhook token letter by letter.
    search_fields = ["name"]
    readonly_fields = ["shown_target", "secret_state", "created_at"]
    exclude = CREDENTIAL_FIELDS  # the admin builds its form from the fields it shows, but not these
    actions = ["send_test_notification"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        if obj is not None and not self.has_change_permission(request, obj):
            # A viewer's page shows every field read-only, from the model: never the credentials.
            return ("name", "kind", "shown_target", "secret_state", "enabled", "created_at")
        if obj is None:
            return ("name", "kind", "target", "secret", "enabled")
        return ("name", "kind", "target", "secret", "clear_secret", "enabled", "created_at")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[NotificationChannel], search_term: str
    ) -> tuple[QuerySet[NotificationChannel], bool]:
        found, duplicates = super().get_search_results(request, queryset, search_term)
        if search_term.strip() and "\x00" not in search_term:
            # Email addresses are not credentials: "which channel mails ops@" still works.
            email = queryset.filter(kind=NotificationChannel.Kind.EMAIL)
            found |= email.filter(target__icontains=search_term.strip())
        return found, duplicates

    @admin.display(description="target")
    def shown_target(self, obj: NotificationChannel) -> str:
        return obj.target_shown

    @admin.display(description="secret")
    def secret_state(self, obj: NotificationChannel) -> str:
        return "set" if obj.has_secret else "-"

    @admin.display(description="last delivery")
    def last_delivery(self, obj: NotificationChannel) -> str:
        last = obj.deliveries.order_by("-id").first()
        if last is None:
            return "-"
        return format_html("{} {}", badge(last.outcome), (last.error or "")[:80])

    @admin.action(description="Send a test notification", permissions=["change"])
    def send_test_notification(self, request: HttpRequest, queryset: QuerySet[NotificationChannel]) -> None:
        from alerts.channels import send_test

        for channel in queryset:
            ok, detail = send_test(channel)  # never a response body (alerts.egress)
            level = messages.SUCCESS if ok else messages.ERROR
            self.message_user(request, f"{channel.name}: {'sent' if ok else 'failed'}: {detail}", level)


class OpenFilter(admin.SimpleListFilter):
    """Open (triggered or acknowledged) vs resolved: the status index serves both."""

    title = "open"
    parameter_name = "open"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Open"), ("no", "Resolved")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Alert]) -> QuerySet[Alert]:
        if self.value() == "yes":
            return queryset.exclude(status=Alert.Status.RESOLVED)
        if self.value() == "no":
            return queryset.filter(status=Alert.Status.RESOLVED)
        return queryset


class TriggeredRangeFilter(DateRangeFilter):
    field_name = "triggered_at"


# What a delivery shows, on its own page and inline on its alert's.
DELIVERY_FIELDS = (
    "channel",
    "event",
    "outcome_badge",
    "attempts",
    "response_code",
    "error",
    "created_at",
    "last_attempt_at",
    "next_attempt_at",
    "sent_at",
)


class DeliveryInline(admin.TabularInline):
    model = Delivery
    extra = 0
    can_delete = False
    readonly_fields = DELIVERY_FIELDS
    fields = readonly_fields
    ordering = ["id"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="outcome")
    def outcome_badge(self, obj: Delivery) -> str:
        return badge(obj.outcome)


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = [
        "triggered_at",
        "severity_badge",
        "status_badge",
        "rule",
        "subject",
        "summary",
        "occurrences",
        "last_seen_at",
        "acknowledged_by",
        "resolved_at",
    ]
    list_filter = [OpenFilter, "status", "severity", "rule", TriggeredRangeFilter]
    list_select_related = ["rule", "acknowledged_by"]
    search_fields = ["subject", "summary"]
    actions = ["acknowledge", "resolve"]
    inlines = [DeliveryInline]
    readonly_fields = (
        "rule",
        "subject",
        "status_badge",
        "severity_badge",
        "summary",
        "details_table",
        "occurrences",
        "notify",
        "triggered_at",
        "last_seen_at",
        "acknowledged_at",
        "acknowledged_by",
        "resolved_at",
        "resolved_by",
    )
    fields = readonly_fields

    def has_handle_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Alerts are never edited by hand; acknowledging and resolving need alerts.change_alert.
        return request.user.has_perm("alerts.change_alert")

    def get_inlines(self, request: HttpRequest, obj: Any) -> list[Any]:
        return self.inlines if obj is not None else []

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Alert) -> str:
        return badge(obj.status)

    @admin.display(description="severity", ordering="severity")
    def severity_badge(self, obj: Alert) -> str:
        return badge(obj.severity)

    @admin.display(description="details")
    def details_table(self, obj: Alert) -> str:
        rows = ((key, str(value)[:500]) for key, value in sorted((obj.details or {}).items()))
        return format_html("<table>{}</table>", format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows))

    @admin.action(description="Acknowledge", permissions=["handle"])
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        done = 0
        for alert in queryset.filter(status=Alert.Status.TRIGGERED):
            if alert.acknowledge(request.user):
                self.log_change(request, alert, "Acknowledged")
                done += 1
        skipped = len(queryset) - done
        self.message_user(request, f"Acknowledged {done} alert(s); {skipped} were not in 'triggered'.")

    @admin.action(description="Resolve", permissions=["handle"])
    def resolve(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        done = 0
        now = timezone.now()
        for alert in queryset.exclude(status=Alert.Status.RESOLVED).select_related("rule"):
            if alert.resolve(request.user, now, reason=f"resolved by {request.user} from the admin"):
                self.log_change(request, alert, "Resolved")
                done += 1
        skipped = len(queryset) - done
        self.message_user(request, f"Resolved {done} alert(s); {skipped} were already resolved.")


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "alert",
        "channel",
        "event",
        "outcome_badge",
        "attempts",
        "response_code",
        "error",
        "next_attempt_at",
    ]
    list_filter = ["outcome", "event", "channel", CreatedRangeFilter]
    list_select_related = ["alert", "channel"]
    search_fields = ["error"]
    raw_id_fields = ["alert"]
    readonly_fields = ("alert", *DELIVERY_FIELDS)
    fields = readonly_fields

    @admin.display(description="outcome", ordering="outcome")
    def outcome_badge(self, obj: Delivery) -> str:
        return badge(obj.outcome)
