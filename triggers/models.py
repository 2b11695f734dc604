"""Triggers (schedule, file, manual), the record of every fire, and the files seen."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from chains.models import ACTIVE_STATUSES, Chain, ChainRun, Workflow, WorkflowRun
from rpa_monitor.lib.limits import json_problem, params_problem
from rpa_monitor.lib.text import unstorable_fields
from triggers.schedule import Schedule, ScheduleError

FILE_KEYS = frozenset({"path", "pattern", "settle_seconds"})
# A trigger starts runs: writes that decide what runs and when need this beside the
# trigger permission (DESIGN §14). Renaming and disabling do not.
EXECUTE_PERMISSION = "chains.execute"
EXECUTION_FIELDS = ("trigger_type", "workflow", "chain", "config", "params", "overlap")


class Trigger(models.Model):
    class Type(models.TextChoices):
        SCHEDULE = "schedule"
        FILE = "file"
        MANUAL = "manual"

    class Overlap(models.TextChoices):
        SKIP = "skip", "Skip while the previous run is queued or running"
        ALLOW = "allow", "Allow overlapping runs"

    name = models.CharField(max_length=200)
    trigger_type = models.CharField(max_length=10, choices=Type.choices, default=Type.SCHEDULE)
    workflow = models.ForeignKey(
        Workflow, null=True, blank=True, on_delete=models.CASCADE, related_name="triggers"
    )
    chain = models.ForeignKey(Chain, null=True, blank=True, on_delete=models.CASCADE, related_name="triggers")
    config = models.JSONField(default=dict, blank=True)
    params = models.JSONField(default=dict, blank=True, help_text="Passed to every run as RPA_PARAMS.")
    enabled = models.BooleanField(default=True)
    overlap = models.CharField(max_length=5, choices=Overlap.choices, default=Overlap.SKIP)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_fired = models.DateTimeField(null=True, blank=True, editable=False)
    next_fire_at = models.DateTimeField(null=True, blank=True, editable=False)
    problem = models.CharField(
        max_length=500, blank=True, editable=False, help_text="The current error (e.g. a vanished directory)."
    )

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            # A trigger starts exactly one thing: a workflow or a chain.
            models.CheckConstraint(
                condition=(
                    Q(workflow__isnull=False, chain__isnull=True)
                    | Q(workflow__isnull=True, chain__isnull=False)
                ),
                name="trigger_exactly_one_target",
                violation_error_message="Choose exactly one target: a workflow or a chain.",
            ),
        ]
        indexes = [
            # The tick's due query: enabled triggers with next_fire_at <= now (O(due)).
            models.Index(fields=["next_fire_at"], condition=Q(enabled=True), name="trigger_due_idx"),
            # The tick's file scan: enabled file triggers only.
            models.Index(fields=["trigger_type"], condition=Q(enabled=True), name="trigger_enabled_type_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Edited by a person (admin, API): the schedule restarts from now.
        self.next_fire_at = self.compute_next_fire()
        update_fields = kwargs.get("update_fields")
        if update_fields is not None:
            kwargs["update_fields"] = {*update_fields, "next_fire_at"}
        super().save(*args, **kwargs)

    @property
    def target(self) -> Workflow | Chain | None:
        return self.workflow if self.workflow_id else self.chain

    @property
    def target_slug(self) -> str:
        target = self.target
        return target.slug if target is not None else ""

    def clean(self) -> None:
        errors: dict[str, Any] = unstorable_fields(self)
        if errors:
            raise ValidationError(errors)
        if bool(self.workflow_id) == bool(self.chain_id):
            errors["workflow"] = "Choose exactly one target: a workflow or a chain."
        # rpa_monitor.lib.limits: NaN, 1e400, nested too deep, params too big for RPA_PARAMS.
        # The config's own checks first: they name the key (or the config as a whole).
        config = config_errors(self.trigger_type, self.config)
        unfit = None if config else json_problem(self.config)
        errors.update({"config": unfit} if unfit else config)
        params = params_problem(self.params)
        if params:
            errors["params"] = params
        if errors:
            raise ValidationError(errors)

    def schedule(self) -> Schedule | None:
        if self.trigger_type != self.Type.SCHEDULE:
            return None
        try:
            return Schedule.from_config(self.config)
        except ScheduleError:
            return None

    def compute_next_fire(self, after: datetime | None = None) -> datetime | None:
        if not self.enabled:
            return None
        schedule = self.schedule()
        return schedule.next_after(after or timezone.now()) if schedule else None

    def set_enabled(self, enabled: bool) -> None:
        """Enable or disable; enabling schedules from now (slots missed while disabled never fire)."""
        self.enabled = enabled
        self.problem = "" if enabled else self.problem
        self.save(update_fields=["enabled", "problem"])

    def is_busy(self) -> bool:
        """Is a run this trigger started still queued or running?"""
        return (
            ChainRun.objects.filter(trigger=self, status__in=ACTIVE_STATUSES).exists()
            or WorkflowRun.objects.filter(trigger=self, status__in=ACTIVE_STATUSES).exists()
        )


def execution_changes(before: Trigger | None, new: Mapping[str, Any]) -> list[str]:
    """What writing `new` (field name → value) over the stored trigger `before` (None: creating
    one) needs EXECUTE_PERMISSION for: creating, enabling, or changing what runs and when.

    Compared with the stored values, never with what a form says was there before (the
    admin's hidden "initial" inputs are posted by the client)."""
    if before is None:
        return ["creating a trigger"]
    changes = ["enabling a trigger"] if new.get("enabled") and not before.enabled else []
    for name in EXECUTION_FIELDS:
        if name in new and _canonical(new[name]) != _canonical(getattr(before, name)):
            changes.append(f"changing its {name}")
    return changes


def _canonical(value: Any) -> Any:
    # JSON compared as text: {"x": 1} and {"x": true} differ (they are equal in Python).
    if isinstance(value, models.Model):
        return (type(value), value.pk)
    return json.dumps(value, sort_keys=True, default=str)


def execute_refusal(changes: list[str]) -> str:
    """The error for a write that needs EXECUTE_PERMISSION (admin form, admin action, API)."""
    what = ", ".join(changes)
    return f"{what[:1].upper()}{what[1:]} needs the {EXECUTE_PERMISSION} permission: a trigger starts runs."


def config_errors(trigger_type: str, config: Any) -> dict[str, str]:
    """Every problem with `config` for `trigger_type`, keyed by field ("config.<key>")."""
    if trigger_type == Trigger.Type.SCHEDULE:
        try:
            Schedule.from_config(config, check_fires=True)
        except ScheduleError as exc:
            return {"config": _join(exc.errors)}
        return {}
    if not isinstance(config, dict):
        return {"config": "must be a JSON object"}
    if trigger_type == Trigger.Type.FILE:
        return _file_errors(config)
    if trigger_type == Trigger.Type.MANUAL and config:
        return {"config": f"a manual trigger takes no config, got keys: {', '.join(sorted(config))}"}
    return {}


def _join(errors: dict[str, str]) -> str:
    return "; ".join(f"{key}: {reason}" if key != "config" else reason for key, reason in errors.items())


def _file_errors(config: dict[str, Any]) -> dict[str, str]:
    errors: dict[str, str] = {}
    unknown = sorted(set(config) - FILE_KEYS)
    if unknown:
        errors["config"] = f"unknown keys: {', '.join(unknown)} (allowed: {', '.join(sorted(FILE_KEYS))})"
    path = config.get("path")
    if not isinstance(path, str) or not path or "\x00" in path:
        errors["path"] = "a file trigger needs path (a directory)"
    elif outside := outside_roots(path):
        errors["path"] = outside
    elif not os.path.isdir(path):
        errors["path"] = f"{path!r} is not a directory"
    pattern = config.get("pattern", "*")
    if not isinstance(pattern, str) or not pattern or "/" in pattern or "\x00" in pattern:
        errors["pattern"] = f"must be a file-name glob such as *.csv, got {pattern!r}"
    settle = config.get("settle_seconds", 0)
    if isinstance(settle, bool) or not isinstance(settle, int | float) or not 0 <= settle <= 86400:
        errors["settle_seconds"] = f"must be a number of seconds between 0 and 86400, got {settle!r}"
    return {"config": _join(errors)} if errors else {}


def file_trigger_roots() -> list[str]:
    """RPA_FILE_TRIGGER_ROOTS resolved: the only directories file triggers may read."""
    return [os.path.realpath(root) for root in settings.RPA_FILE_TRIGGER_ROOTS]


def is_under(resolved: str, roots: list[str]) -> bool:
    return any(resolved == root or resolved.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def outside_roots(path: str, roots: list[str] | None = None) -> str:
    """Why `path` may not be read ("" when it may): resolved (.., symlinks), it lies under no root."""
    if "\x00" in path:
        return "the path holds a NUL"  # no file has such a name (and realpath refuses it)
    roots = file_trigger_roots() if roots is None else roots
    resolved = os.path.realpath(path)
    if is_under(resolved, roots):
        return ""
    where = f"{path!r}" if resolved == path else f"{path!r} resolves to {resolved!r}, which"
    return f"{where} is outside RPA_FILE_TRIGGER_ROOTS ({':'.join(roots) or 'none set'})"


class TriggerFireQuerySet(models.QuerySet["TriggerFire"]):
    def started(self) -> TriggerFireQuerySet:
        return self.filter(outcome=TriggerFire.Outcome.STARTED)


class TriggerFire(models.Model):
    class Outcome(models.TextChoices):
        STARTED = "started"
        SKIPPED = "skipped"
        ERROR = "error"

    trigger = models.ForeignKey(Trigger, on_delete=models.CASCADE, related_name="fires")
    due_at = models.DateTimeField(help_text="The slot (schedule) or the moment it was fired (file, manual).")
    fired_at = models.DateTimeField(default=timezone.now)
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    chain_run = models.ForeignKey(
        ChainRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    workflow_run = models.ForeignKey(
        WorkflowRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    detail = models.TextField(blank=True)
    lateness_seconds = models.FloatField(null=True, blank=True, help_text="fired_at - due_at")
    missed_slots = models.PositiveIntegerField(default=0, help_text="Slots coalesced into this fire.")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    host = models.CharField(max_length=255, blank=True)

    objects = TriggerFireQuerySet.as_manager()

    class Meta:
        ordering = ["-fired_at", "-id"]
        constraints = [
            # Exactly once: the database refuses a second fire of the same slot.
            models.UniqueConstraint(fields=["trigger", "due_at"], name="triggerfire_trigger_due_uniq"),
        ]
        indexes = [
            # Admin list (newest first), outcome filter and retention.
            models.Index(fields=["fired_at"], name="triggerfire_fired_idx"),
            models.Index(fields=["outcome", "fired_at"], name="triggerfire_outcome_fired_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.trigger_id} @ {self.due_at:%Y-%m-%d %H:%M:%S}: {self.outcome}"

    @property
    def run(self) -> ChainRun | WorkflowRun | None:
        return self.chain_run or self.workflow_run

    @property
    def lateness(self) -> timedelta | None:
        return None if self.lateness_seconds is None else timedelta(seconds=self.lateness_seconds)


class SeenFile(models.Model):
    """A file a file trigger saw; it fires once the file stopped changing, once per (path, size, mtime).

    A symlink leaving RPA_FILE_TRIGGER_ROOTS is recorded with size and mtime NOT_READ
    (and its skipped fire): it is never read, so nothing of its target is stored.
    """

    NOT_READ = -1

    trigger = models.ForeignKey(Trigger, on_delete=models.CASCADE, related_name="seen_files")
    path = models.CharField(max_length=1000)
    size = models.BigIntegerField()
    mtime_ns = models.BigIntegerField()
    first_seen_at = models.DateTimeField(default=timezone.now)
    changed_at = models.DateTimeField(default=timezone.now, help_text="When size/mtime last changed.")
    fired_at = models.DateTimeField(null=True, blank=True)
    fire = models.ForeignKey(TriggerFire, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        constraints = [
            # One row per file per trigger: the scan loads a trigger's rows by path.
            models.UniqueConstraint(fields=["trigger", "path"], name="seenfile_trigger_path_uniq"),
        ]

    def __str__(self) -> str:
        return self.path


class TriggerFireCount(models.Model):
    """Fires that started a run, per trigger type and target (trigger_fires_total); never decremented."""

    trigger_type = models.CharField(max_length=10, choices=Trigger.Type.choices)
    workflow_id = models.CharField(max_length=100, help_text="The target's slug (workflow or chain).")
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            # The upsert in _save_fire conflicts on exactly this pair.
            models.UniqueConstraint(
                fields=["trigger_type", "workflow_id"], name="triggerfirecount_type_target_uniq"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.trigger_type} {self.workflow_id}: {self.count}"


class SchedulerTick(models.Model):
    """When each host's scheduler (cron's fire_triggers or run_scheduler) last completed a tick."""

    host = models.CharField(max_length=255)
    pid = models.IntegerField(help_text="The process that ran the last tick.")
    last_tick_at = models.DateTimeField()
    last_duration_ms = models.FloatField(default=0)
    fired = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            # One row per host, updated in place every tick.
            models.UniqueConstraint(fields=["host"], name="schedulertick_host_uniq"),
        ]
        indexes = [
            # /health: the most recent tick from anywhere.
            models.Index(fields=["-last_tick_at"], name="schedulertick_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.host}:{self.pid} @ {self.last_tick_at:%H:%M:%S}"
