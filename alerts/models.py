"""Alert rules, the alerts they raise, the channels that carry notifications, and each delivery."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from alerts import egress
from credentials import vault
from rpa_monitor.lib.text import unstorable_fields

# What a channel's credentials may hold as typed; stored sealed (encrypted) they take more room.
TARGET_MAX_CHARS = 1000
SECRET_MAX_CHARS = 200
# Marks a sealed value (Fernet token, keys from RPA_SECRET_KEYS) in the target and secret columns.
SEALED = "enc:"

QUIET_HOURS_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)\Z")
HTTP_URL = URLValidator(schemes=["http", "https"])


class NotificationChannel(models.Model):
    class Kind(models.TextChoices):
        EMAIL = "email", "Email"
        WEBHOOK = "webhook", "Webhook (JSON, HMAC-signed)"
        SLACK = "slack", "Slack-compatible webhook"
        PAGERDUTY = "pagerduty", "PagerDuty Events v2"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    # Sealed for HTTP kinds (a webhook URL can carry its token); an email channel's addresses
    # stay plain, so the admin can search them.
    target = models.TextField(
        help_text="Email: one or more addresses, comma-separated. Others: the URL to POST to "
        "(PagerDuty: the Events v2 endpoint, e.g. https://events.pagerduty.com/v2/enqueue).",
    )
    secret = models.TextField(  # always sealed
        blank=True,
        help_text="Webhook: the HMAC-SHA256 key for X-RPA-Signature. PagerDuty: the routing key.",
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Whoever set the fields (set_secret, a plain keyword in create()), they are sealed here.
        self.secret = _sealed(self.secret)
        self.target = _sealed(self.target) if self.target_is_credential else self.get_target()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        errors = unstorable_fields(self)
        if len(self.get_target()) > TARGET_MAX_CHARS:
            errors["target"] = f"Ensure this value has at most {TARGET_MAX_CHARS} characters."
        if len(self.get_secret()) > SECRET_MAX_CHARS:
            errors["secret"] = f"Ensure this value has at most {SECRET_MAX_CHARS} characters."
        if "target" not in errors:
            errors.update(_target_errors(self.kind, self.get_target()))
        if self.kind == self.Kind.PAGERDUTY and not self.get_secret():
            errors.setdefault("secret", "PagerDuty needs its routing key (integration key) here.")
        if errors:
            raise ValidationError(errors)

    # -- credentials -------------------------------------------------------------------
    # `secret` (the HMAC key, the PagerDuty routing key) and an HTTP `target` (a Slack
    # webhook's path is its token) are credentials: write-only in the admin, never shown
    # back. Everything reads and writes them through these four methods; `save` seals them
    # at rest with the keys of the secrets store (credentials.vault, RPA_SECRET_KEYS).

    def get_secret(self) -> str:
        return _opened(self.secret, f"of channel {self.name}")

    def set_secret(self, value: str) -> None:
        self.secret = value

    def get_target(self) -> str:
        return _opened(self.target, f"target of channel {self.name}")

    def set_target(self, value: str) -> None:
        self.target = value

    @property
    def has_secret(self) -> bool:
        return bool(self.get_secret())

    @property
    def target_is_credential(self) -> bool:
        """An HTTP target is write-only (its URL can carry a token); email addresses are not."""
        return self.kind in HTTP_KINDS

    @property
    def target_shown(self) -> str:
        """What the admin may show of the target: email addresses, or the URL's scheme and host."""
        return egress.masked(self.get_target()) if self.target_is_credential else self.get_target()

    @property
    def recipients(self) -> list[str]:
        return [a.strip() for a in self.get_target().split(",") if a.strip()]


HTTP_KINDS = frozenset(
    {NotificationChannel.Kind.WEBHOOK, NotificationChannel.Kind.SLACK, NotificationChannel.Kind.PAGERDUTY}
)


def _sealed(value: str) -> str:
    return value if not value or value.startswith(SEALED) else SEALED + vault.encrypt(value)


def _opened(value: str, what: str) -> str:
    """A sealed value decrypted (SecretDecryptionError naming `what` if no key can); a plain one as is."""
    return vault.decrypt(value[len(SEALED) :], what) if value.startswith(SEALED) else value


def reseal_channels() -> int:
    """Seal every channel credential with the first key of RPA_SECRET_KEYS (`rotate_secrets`);
    all or nothing: raises SecretDecryptionError naming what no key decrypts. Returns how many."""
    with transaction.atomic():
        locked = NotificationChannel.objects.select_for_update()
        channels = list(locked.only("pk", "name", "target", "secret"))
        sealed = [
            (channel, field)
            for channel in channels
            for field in ("target", "secret")
            if getattr(channel, field).startswith(SEALED)
        ]
        tokens = vault.reencrypt_each(
            (getattr(channel, field)[len(SEALED) :], f"{field} of channel {channel.name}")
            for channel, field in sealed
        )
        for (channel, field), token in zip(sealed, tokens, strict=True):
            setattr(channel, field, SEALED + token)
        NotificationChannel.objects.bulk_update(channels, ["target", "secret"], batch_size=500)
    return len(channels)


def _target_errors(kind: str, target: str) -> dict[str, str]:
    target = (target or "").strip()
    if not target:
        return {"target": "This field is required."}
    if kind == NotificationChannel.Kind.EMAIL:
        bad = []
        for address in (a.strip() for a in target.split(",")):
            try:
                validate_email(address)
            except ValidationError:
                bad.append(address or "(empty)")
        return {"target": f"Not an email address: {', '.join(bad)}"} if bad else {}
    # The URL itself is not repeated: it can be a credential the form never shows back.
    try:
        HTTP_URL(target)
    except ValidationError:
        return {"target": "Not an http(s) URL."}
    problem = egress.target_problem(target)
    return {"target": problem} if problem else {}


# Which params each rule kind takes: name -> (type, minimum, maximum, default or None if required).
ParamSpec = tuple[type, float, float, Any]
RULE_PARAMS: dict[str, dict[str, ParamSpec]] = {
    "workflow_failed": {},
    "chain_failed": {},
    "consecutive_failures": {"count": (int, 1, 1000, 3)},
    "error_rate_above": {
        "percent": (float, 0, 100, None),
        "window_seconds": (int, 60, 90 * 86400, 3600),
        "count": (int, 1, 1_000_000, 1),  # fewer finished runs in the window: too few to judge
    },
    "no_success_within": {"seconds": (int, 60, 366 * 86400, None)},
    "duration_above": {"seconds": (int, 1, 366 * 86400, None)},
    "missed_schedule": {"seconds": (int, 0, 86400, 60)},  # grace: lateness that still counts as on time
    "stale_runs": {},
}
# Kinds about chains only, and kinds about workflows only (scope must match).
CHAIN_KINDS = frozenset({"chain_failed"})
WORKFLOW_KINDS = frozenset({"workflow_failed", "duration_above", "stale_runs"})


class AlertRule(models.Model):
    class Kind(models.TextChoices):
        WORKFLOW_FAILED = "workflow_failed", "A workflow run failed"
        CHAIN_FAILED = "chain_failed", "A chain run failed"
        CONSECUTIVE_FAILURES = "consecutive_failures", "N failures in a row"
        ERROR_RATE_ABOVE = "error_rate_above", "Error rate above a percent over a window"
        NO_SUCCESS_WITHIN = "no_success_within", "No success within T (dead man's switch)"
        DURATION_ABOVE = "duration_above", "A run takes longer than T"
        MISSED_SCHEDULE = "missed_schedule", "A schedule slot passed without a fire"
        STALE_RUNS = "stale_runs", "A run was abandoned (its worker died)"

    class Severity(models.TextChoices):
        INFO = "info"
        WARNING = "warning"
        CRITICAL = "critical"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=24, choices=Kind.choices)
    workflow = models.ForeignKey(
        "chains.Workflow",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="alert_rules",
        help_text="Only this workflow (leave both empty for all).",
    )
    chain = models.ForeignKey(
        "chains.Chain",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="alert_rules",
        help_text="Only this chain (leave both empty for all).",
    )
    params = models.JSONField(
        default=dict,
        blank=True,
        help_text='By kind: consecutive_failures {"count"}; error_rate_above {"percent", '
        '"window_seconds", "count" (minimum runs)}; no_success_within and duration_above '
        '{"seconds"}; missed_schedule {"seconds"} (grace).',
    )
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.WARNING)
    channels = models.ManyToManyField(NotificationChannel, blank=True, related_name="rules")
    cooldown_seconds = models.PositiveIntegerField(
        default=900,
        help_text="After an alert, a new one for the same subject within this time is recorded "
        "but not notified.",
    )
    quiet_hours = models.CharField(
        max_length=11,
        blank=True,
        help_text="HH:MM-HH:MM in the site's time zone (may cross midnight): info and warning "
        "notifications wait until it ends; critical ones go out at once.",
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    evaluated_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="The last scheduler tick that evaluated it."
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(workflow__isnull=True) | Q(chain__isnull=True), name="alertrule_one_scope"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors = unstorable_fields(self)
        if self.kind in RULE_PARAMS and "params" not in errors:
            errors.update(params_errors(self.kind, self.params))
        errors.update(self._scope_errors())
        if self.quiet_hours and not QUIET_HOURS_RE.match(self.quiet_hours):
            errors["quiet_hours"] = f"Use HH:MM-HH:MM (e.g. 22:00-07:00), not {self.quiet_hours[:20]!r}."
        elif self.quiet_hours and self.quiet_hours[:5] == self.quiet_hours[6:]:
            errors["quiet_hours"] = "Start and end are the same: the window would be empty."
        if errors:
            raise ValidationError(errors)

    def _scope_errors(self) -> dict[str, str]:
        if self.workflow_id and self.chain_id:
            return {"chain": "Choose a workflow or a chain, not both."}
        if self.kind in CHAIN_KINDS and self.workflow_id:
            return {"workflow": f"{self.kind} rules are about chains: choose a chain or none."}
        if self.kind in WORKFLOW_KINDS and self.chain_id:
            return {"chain": f"{self.kind} rules are about workflows: choose a workflow or none."}
        return {}

    def set_enabled(self, enabled: bool) -> None:
        """Enable or disable; a disabled rule's open alerts resolve at the next tick."""
        self.enabled = enabled
        self.save(update_fields=["enabled", "updated_at"])

    def param(self, name: str) -> Any:
        """The rule's parameter, or its kind's default."""
        value = (self.params or {}).get(name)
        return RULE_PARAMS[self.kind][name][3] if value is None else value

    @property
    def scope_label(self) -> str:
        if self.workflow_id:
            return f"workflow {self.workflow}"
        if self.chain_id:
            return f"chain {self.chain}"
        return "all"

    def quiet_until(self, now: datetime) -> datetime | None:
        """When the quiet hours containing `now` end; None when `now` is outside them."""
        window = parse_quiet_hours(self.quiet_hours)
        if window is None:
            return None
        start, end = window
        zone = ZoneInfo(settings.TIME_ZONE)
        local = now.astimezone(zone)
        moment = local.time().replace(tzinfo=None)
        inside = start <= moment < end if start < end else (moment >= start or moment < end)
        if not inside:
            return None
        end_day = local.date() if moment < end else local.date() + timedelta(days=1)
        return datetime.combine(end_day, end, tzinfo=zone).astimezone(UTC)


def parse_quiet_hours(text: str) -> tuple[time, time] | None:
    match = QUIET_HOURS_RE.match(text or "")
    if not match:
        return None
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    return time(h1, m1), time(h2, m2)


def params_errors(kind: str, params: Any) -> dict[str, str]:
    """Form errors for a rule's params: unknown names, wrong types, out of range, missing."""
    if not isinstance(params, dict):
        return {"params": 'Must be a JSON object, e.g. {"count": 3}.'}
    spec = RULE_PARAMS[kind]
    problems = [f"unknown parameter {name!r}" for name in params if name not in spec]
    for name, (kind_type, low, high, default) in spec.items():
        value = params.get(name)
        if value is None:
            if default is None:
                problems.append(f"{name} is required")
            continue
        number_ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not number_ok or (kind_type is int and not float(value).is_integer()):
            problems.append(f"{name} must be {'a whole number' if kind_type is int else 'a number'}")
        elif not low <= value <= high or (name == "percent" and value == 0):
            bound = "above 0" if name == "percent" and value == 0 else f"between {low:g} and {high:g}"
            problems.append(f"{name} must be {bound}, not {value}")
    if not spec and params:
        return {"params": f"{kind} rules take no parameters ({', '.join(sorted(params))} given)."}
    return {"params": "; ".join(problems)} if problems else {}


class AlertQuerySet(models.QuerySet["Alert"]):
    def open(self) -> AlertQuerySet:
        return self.exclude(status=Alert.Status.RESOLVED)


class Alert(models.Model):
    class Status(models.TextChoices):
        TRIGGERED = "triggered"
        ACKNOWLEDGED = "acknowledged"
        RESOLVED = "resolved"

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts", db_index=False)
    subject = models.CharField(max_length=255, help_text="What it is about, e.g. the chain's slug.")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.TRIGGERED)
    severity = models.CharField(max_length=10, choices=AlertRule.Severity.choices)
    summary = models.CharField(max_length=500)
    details = models.JSONField(default=dict, blank=True)
    occurrences = models.PositiveIntegerField(
        default=1, help_text="Evaluations that found the condition again while this alert was open."
    )
    notify = models.BooleanField(
        default=True, help_text="False when the rule's cooldown suppressed its notifications."
    )
    triggered_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Empty when it resolved itself (the condition cleared).",
    )

    objects = AlertQuerySet.as_manager()

    class Meta:
        ordering = ["-triggered_at", "-id"]
        constraints = [
            # Deduplication: at most one open alert per rule and subject; a concurrent tick
            # on another host that tries to open a second one gets an IntegrityError.
            models.UniqueConstraint(
                fields=["rule", "subject"],
                condition=~Q(status="resolved"),
                name="alert_open_rule_subject_uniq",
            ),
        ]
        indexes = [
            # The admin status filter and the dashboard's open alerts, newest first.
            models.Index(fields=["status", "-triggered_at"], name="alert_status_recent_idx"),
            # Cooldown: the latest alert of a rule and subject.
            models.Index(fields=["rule", "subject", "-triggered_at"], name="alert_rule_subject_recent_idx"),
            # Reports over a period.
            models.Index(fields=["triggered_at"], name="alert_triggered_idx"),
        ]

    def __str__(self) -> str:
        return f"[{self.severity}] {self.summary}"

    @property
    def is_open(self) -> bool:
        return self.status != self.Status.RESOLVED

    @property
    def url(self) -> str:
        return f"{settings.RPA_BASE_URL}/admin/alerts/alert/{self.pk}/change/"

    def acknowledge(self, user: Any, now: datetime | None = None) -> bool:
        """triggered → acknowledged; False when it was not in `triggered`."""
        now = now or timezone.now()
        fields = {"status": self.Status.ACKNOWLEDGED, "acknowledged_at": now, "acknowledged_by": user}
        updated = Alert.objects.filter(pk=self.pk, status=self.Status.TRIGGERED).update(**fields)
        if updated:
            for name, value in fields.items():
                setattr(self, name, value)
        return bool(updated)

    def resolve(self, user: Any = None, now: datetime | None = None, reason: str = "") -> bool:
        """Close the alert once (by a user, or by the tick when the condition cleared) and
        queue its "resolved" notifications; False when it was already resolved."""
        from alerts.notify import queue_notifications

        now = now or timezone.now()
        details = {**(self.details or {}), "resolution": reason or ("resolved by hand" if user else "")}
        fields = {"status": self.Status.RESOLVED, "resolved_at": now, "resolved_by": user, "details": details}
        with transaction.atomic():
            updated = Alert.objects.filter(pk=self.pk).exclude(status=self.Status.RESOLVED).update(**fields)
            if updated:
                for name, value in fields.items():
                    setattr(self, name, value)
                if self.notify:
                    queue_notifications(self, Delivery.Event.RESOLVED, now)
        return bool(updated)


class Delivery(models.Model):
    """One notification of one alert event through one channel: an outbox row.

    Created `pending` with the alert's event; the scheduler tick sends the due ones
    (several channels at once, each with a short timeout), and a failed send is
    retried with a doubling delay until RPA_ALERT_MAX_ATTEMPTS, then `failed`.
    """

    class Event(models.TextChoices):
        TRIGGERED = "triggered"
        RESOLVED = "resolved"

    class Outcome(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries", db_index=False)
    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=10, choices=Event.choices)
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="When a pending delivery is (re)tried; quiet hours push it later."
    )
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "deliveries"
        constraints = [
            # Each event of an alert goes through each channel once.
            models.UniqueConstraint(
                fields=["alert", "channel", "event"], name="delivery_alert_channel_event_uniq"
            ),
        ]
        indexes = [
            # The tick's sender: pending deliveries that are due, oldest first.
            models.Index(
                fields=["next_attempt_at"], condition=Q(outcome="pending"), name="delivery_pending_due_idx"
            ),
            # The admin outcome filter, newest first.
            models.Index(fields=["outcome", "-id"], name="delivery_outcome_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event} of alert {self.alert_id} via {self.channel_id}: {self.outcome}"
