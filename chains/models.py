"""Workflows, chains of workflows, and the record of every run."""

from __future__ import annotations

import bisect
import os
import re
import shlex
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from rpa_monitor.errors import WorkflowNotFoundError
from rpa_monitor.lib.callables import CallableError, resolve_callable
from rpa_monitor.lib.counters import add_counts, add_values
from rpa_monitor.lib.text import unstorable_fields

SLUG_RE = re.compile(r"^[-a-zA-Z0-9_]+\Z")
ENV_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


class RunStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"  # its worker died; set by the reaper


ACTIVE_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)
FINISHED_STATUSES = tuple(s for s in RunStatus if s not in ACTIVE_STATUSES)
FAILED_STATUSES = (RunStatus.FAILURE, RunStatus.TIMEOUT, RunStatus.ABANDONED)
# workflow_duration_seconds bucket bounds: bots take from sub-second to hours.
DURATION_BUCKETS = (
    0.1,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
)


class Workflow(models.Model):
    class Kind(models.TextChoices):
        COMMAND = "command", "Command (argv, no shell)"
        PYTHON = "python", "Python callable"

    slug = models.SlugField(
        max_length=100, unique=True, help_text="The workflow_id in logs, metrics and the API."
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.COMMAND)
    command = models.JSONField(
        default=list,
        blank=True,
        help_text="argv list, run without a shell; `python` means this interpreter.",
    )
    callable = models.CharField(
        max_length=255, blank=True, help_text="package.module:function, called as function(ctx)."
    )
    working_dir = models.CharField(max_length=500, blank=True, help_text="Defaults to the project directory.")
    environment = models.JSONField(
        default=dict, blank=True, help_text="Extra environment variables (strings)."
    )
    secrets = models.ManyToManyField(
        "credentials.Secret",
        blank=True,
        related_name="workflows",
        help_text="Each is set in the bot's environment under its name (decrypted at run time).",
    )
    timeout_seconds = models.PositiveIntegerField(default=3600, validators=[MinValueValidator(1)])
    max_retries = models.PositiveSmallIntegerField(default=0, validators=[MaxValueValidator(20)])
    retry_delay_seconds = models.PositiveIntegerField(default=0, validators=[MaxValueValidator(3600)])
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]
        permissions = [
            (
                "change_execution",
                "Can change what a workflow executes (command, callable, environment, working dir)",
            ),
            ("execute", "Can execute, cancel and resume workflows and chains"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(timeout_seconds__gte=1), name="workflow_timeout_positive"),
            models.CheckConstraint(condition=Q(kind__in=["command", "python"]), name="workflow_kind_valid"),
        ]

    def __str__(self) -> str:
        return self.slug

    def clean(self) -> None:
        errors = unstorable_fields(self)
        if errors:
            raise ValidationError(errors)
        if self.kind == self.Kind.COMMAND:
            errors.update(_command_errors(self.command))
        elif self.kind == self.Kind.PYTHON:
            errors.update(_callable_errors(self.callable))
        errors.update(_environment_errors(self.environment))
        if self.working_dir and not os.path.isdir(self.resolved_working_dir()):
            errors["working_dir"] = f"{self.working_dir!r} is not a directory on this host"
        if errors:
            raise ValidationError(errors)

    def resolved_working_dir(self) -> str:
        return os.path.join(settings.RPA_DEFAULT_WORKDIR, self.working_dir or "")

    @property
    def command_line(self) -> str:
        if self.kind == self.Kind.PYTHON:
            return self.callable
        return shlex.join(self.command) if isinstance(self.command, list) else str(self.command)


def _command_errors(command: Any) -> dict[str, str]:
    if not isinstance(command, list) or not command:
        return {"command": "a command workflow needs a command (a non-empty argv list)"}
    if not all(isinstance(arg, str) for arg in command):
        return {"command": "every argument must be a string"}
    if not command[0].strip():
        return {"command": "the program (first argument) must not be empty"}
    if any("\x00" in arg for arg in command):
        return {"command": "arguments must not contain NUL bytes"}
    return {}


def _callable_errors(path: str) -> dict[str, str]:
    if not path:
        return {"callable": "a python workflow needs a callable (package.module:function)"}
    try:
        resolve_callable(path)
    except CallableError as exc:
        return {"callable": str(exc)}
    return {}


def _environment_errors(environment: Any) -> dict[str, str]:
    if not isinstance(environment, dict):
        return {"environment": "must be a JSON object of NAME: value strings"}
    for name, value in environment.items():
        if not name or name[0].isdigit() or not set(name) <= ENV_NAME_CHARS:
            return {"environment": f"{name!r} is not a valid variable name"}
        if not isinstance(value, str):
            return {"environment": f"the value of {name} must be a string, got {type(value).__name__}"}
        if "\x00" in value:
            return {"environment": f"the value of {name} must not contain NUL bytes"}
    return {}


class ChainManager(models.Manager["Chain"]):
    def create_with_steps(self, slug: str, name: str, workflows: Sequence[str], **fields: Any) -> Chain:
        """Create a chain running `workflows` (slugs) in order; all or nothing.

        Raises WorkflowNotFoundError naming every unknown slug, ValidationError for
        bad chain fields; either way no chain or step row is written.
        """
        found = resolve_workflows(workflows)
        chain = self.model(slug=slug, name=name, **fields)
        chain.full_clean()
        with transaction.atomic():
            chain.save()
            chain.set_steps(found)
        return chain


def check_step_count(count: int, field: str = "workflows") -> None:
    """A chain has at most RPA_MAX_CHAIN_STEPS steps (DESIGN §14), however it is written.

    An unbounded one (100,000 steps) took 28 s to create and its admin page never came back.
    """
    limit = settings.RPA_MAX_CHAIN_STEPS
    if count > limit:
        raise ValidationError(
            {field: f"a chain has at most {limit} steps (RPA_MAX_CHAIN_STEPS); {count:,} given"}
        )


def resolve_workflows(slugs: Sequence[str], field: str = "workflows") -> list[Workflow]:
    """The workflows for `slugs`, in order; WorkflowNotFoundError names the unknown ones."""
    if not slugs:
        raise ValidationError({field: "a chain needs at least one workflow"})
    check_step_count(len(slugs), field)  # before the lookup: its IN list grows with the request
    if not all(isinstance(slug, str) for slug in slugs):
        raise ValidationError({field: "workflows must be given as slugs (strings)"})
    # Only well-formed slugs can exist; the rest (NUL, surrogates, spaces) never reach the database.
    candidates = {slug for slug in slugs if SLUG_RE.match(slug)}
    by_slug = {w.slug: w for w in Workflow.objects.filter(slug__in=candidates)}
    missing = [slug for slug in slugs if slug not in by_slug]
    if missing:
        raise WorkflowNotFoundError(missing, field)
    return [by_slug[slug] for slug in slugs]


class Chain(models.Model):
    slug = models.SlugField(
        max_length=100, unique=True, help_text="The chain_id in logs, metrics and the API."
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ChainManager()

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    def clean(self) -> None:
        errors = unstorable_fields(self)
        if errors:
            raise ValidationError(errors)

    def set_steps(self, workflows: Sequence[Workflow]) -> None:
        check_step_count(len(workflows))
        with transaction.atomic():
            self.steps.all().delete()
            ChainStep.objects.bulk_create(
                ChainStep(chain=self, position=i, workflow=w) for i, w in enumerate(workflows, start=1)
            )

    def ordered_steps(self) -> list[ChainStep]:
        return sorted(self.steps.all(), key=lambda step: step.position)

    @property
    def sequence(self) -> str:
        """`login → data_entry → submit` (uses prefetched steps when there are some)."""
        return " → ".join(step.workflow.slug for step in self.ordered_steps())


class ChainStep(models.Model):
    chain = models.ForeignKey(Chain, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="steps")

    class Meta:
        ordering = ["chain", "position"]
        constraints = [
            # Steps run in position order; two steps cannot share a place.
            models.UniqueConstraint(fields=["chain", "position"], name="chainstep_chain_position_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.chain_id}#{self.position}: {self.workflow_id}"


class ChainRunQuerySet(models.QuerySet["ChainRun"]):
    def active(self) -> ChainRunQuerySet:
        return self.filter(status__in=ACTIVE_STATUSES)


class ChainRun(models.Model):
    chain = models.ForeignKey(Chain, on_delete=models.CASCADE, related_name="runs", db_index=False)
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Renewed by the runner while it works on this chain run."
    )
    total_steps = models.PositiveIntegerField(default=0)
    start_position = models.PositiveIntegerField(default=1, help_text="Resumed runs start at a later step.")
    resumed_from = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="resumptions",
        help_text="The failed chain run this one resumes from its failure point.",
    )
    failed_step = models.PositiveIntegerField(
        null=True, blank=True, help_text="Position of the step that failed."
    )
    error = models.TextField(blank=True)
    params = models.JSONField(default=dict, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    trigger = models.ForeignKey(
        "triggers.Trigger",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="chain_runs",
        db_index=False,  # covered by chainrun_trigger_status_idx
    )
    # The task-backend task that runs it (enqueue_run), and when a lost one was enqueued again
    # (requeue_lost_runs: once, then the run is abandoned).
    task_id = models.CharField(max_length=64, blank=True)
    task_requeued_at = models.DateTimeField(null=True, blank=True)

    objects = ChainRunQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [
            # A chain's history and "last execution", newest first.
            models.Index(fields=["chain", "-id"], name="chainrun_chain_recent_idx"),
            # Admin status filter, newest first.
            models.Index(fields=["status", "-id"], name="chainrun_status_recent_idx"),
            # Date ranges and retention.
            models.Index(fields=["created_at"], name="chainrun_created_idx"),
            # Overlap policy: is a run this trigger started still active?
            models.Index(fields=["trigger", "status"], name="chainrun_trigger_status_idx"),
            # The reaper: running chain runs whose runner stopped renewing the heartbeat.
            models.Index(
                fields=["heartbeat_at"], condition=Q(status="running"), name="chainrun_running_heartbeat_idx"
            ),
            # Alert rules: chain runs that finished since the previous evaluation ...
            models.Index(fields=["finished_at"], name="chainrun_finished_idx"),
            # ... and a chain's latest success (the dead man's switch).
            models.Index(fields=["chain", "status", "-id"], name="chainrun_chain_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.chain_id and self.chain.slug} run #{self.pk}"

    @property
    def duration(self) -> timedelta | None:
        return _duration(self.started_at, self.finished_at)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def start(self) -> bool:
        """queued → running; False when it was not queued (e.g. cancelled meanwhile)."""
        now = timezone.now()
        updated = ChainRun.objects.filter(pk=self.pk, status=RunStatus.QUEUED).update(
            status=RunStatus.RUNNING, started_at=now, heartbeat_at=now
        )
        if updated:
            self.status, self.started_at, self.heartbeat_at = RunStatus.RUNNING, now, now
        return bool(updated)

    def heartbeat(self) -> bool:
        """Renew the runner's lease on this chain run; False when it is no longer running."""
        return touch_chain_run(self.pk, timezone.now())

    def finish(self, status: RunStatus, failed_step: int | None = None, error: str = "") -> bool:
        """Record the outcome once; False when the run had already finished."""
        assert status in FINISHED_STATUSES, status
        now = timezone.now()
        fields = {"status": status, "finished_at": now, "failed_step": failed_step, "error": error}
        with transaction.atomic():
            updated = ChainRun.objects.filter(pk=self.pk, status__in=ACTIVE_STATUSES).update(**fields)
            if updated:
                ChainRunCount.objects.bump(self.chain_id, status)
        if updated:
            for name, value in fields.items():
                setattr(self, name, value)
        else:
            self.refresh_from_db()
        return bool(updated)

    @property
    def can_resume(self) -> bool:
        return self.status in (*FAILED_STATUSES, RunStatus.CANCELLED) and self.failed_step is not None

    def step_runs(self) -> list[WorkflowRun]:
        """The last attempt of each step, in order."""
        last: dict[int, WorkflowRun] = {}
        for run in self.workflow_runs.select_related("workflow").order_by("position", "attempt"):
            last[run.position or 0] = run
        return [last[p] for p in sorted(last)]


class WorkflowRunQuerySet(models.QuerySet["WorkflowRun"]):
    def active(self) -> WorkflowRunQuerySet:
        return self.filter(status__in=ACTIVE_STATUSES)

    def finished(self) -> WorkflowRunQuerySet:
        return self.filter(status__in=FINISHED_STATUSES)

    def with_unread_spool(self, host: str, finished_before: datetime) -> WorkflowRunQuerySet:
        """Finished runs of `host` whose spooled output was not (all) stored or removed:
        their runner died, or they were reaped from another host."""
        return self.finished().filter(host=host, finished_at__lt=finished_before).exclude(spool="")


class WorkflowRun(models.Model):
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="runs", db_index=False)
    chain_run = models.ForeignKey(
        ChainRun,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="workflow_runs",
        db_index=False,
    )
    position = models.PositiveIntegerField(
        null=True, blank=True, help_text="Step position within the chain run."
    )
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED)
    attempt = models.PositiveSmallIntegerField(default=1)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    host = models.CharField(max_length=255, blank=True)
    pid = models.IntegerField(
        null=True, blank=True, help_text="The bot process (leader of its process group)."
    )
    worker_pid = models.IntegerField(null=True, blank=True, help_text="The runner supervising the bot.")
    params = models.JSONField(default=dict, blank=True)
    progress_done = models.PositiveIntegerField(null=True, blank=True)
    progress_total = models.PositiveIntegerField(null=True, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    trigger = models.ForeignKey(
        "triggers.Trigger",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="workflow_runs",
        db_index=False,  # covered by wfrun_trigger_status_idx
    )
    # The task-backend task that runs it (enqueue_run), and when a lost one was enqueued again
    # (requeue_lost_runs: once, then the run is abandoned).
    task_id = models.CharField(max_length=64, blank=True)
    task_requeued_at = models.DateTimeField(null=True, blank=True)
    # The bot writes stdout/stderr to `<spool>.out`/`<spool>.err` on `host`; the offsets say how
    # many bytes of each are stored as log entries (moved in the transaction that stores them).
    # Cleared once the files are fully stored and removed.
    spool = models.CharField(max_length=1024, blank=True, help_text="Spool files of the bot's output.")
    stdout_offset = models.BigIntegerField(default=0)
    stderr_offset = models.BigIntegerField(default=0)

    objects = WorkflowRunQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [
            # A workflow's history and "last run", newest first.
            models.Index(fields=["workflow", "-id"], name="wfrun_workflow_recent_idx"),
            # A chain run's steps in order (the run page, resume from failure).
            models.Index(fields=["chain_run", "position", "attempt"], name="wfrun_chainrun_pos_idx"),
            # Admin status filter, newest first.
            models.Index(fields=["status", "-id"], name="wfrun_status_recent_idx"),
            # Date ranges and retention.
            models.Index(fields=["created_at"], name="wfrun_created_idx"),
            # Overlap policy: is a run this trigger started still active?
            models.Index(fields=["trigger", "status"], name="wfrun_trigger_status_idx"),
            # The reaper: running runs whose heartbeat is older than the lease.
            models.Index(
                fields=["heartbeat_at"],
                condition=Q(status="running"),
                name="wfrun_running_heartbeat_idx",
            ),
            # Alert rules (runs finished since the previous evaluation, error rate over a
            # window) and the daily rollup (runs finished on one day).
            models.Index(fields=["finished_at"], name="wfrun_finished_idx"),
            # A workflow's latest run with a status (the dead man's switch: latest success).
            models.Index(fields=["workflow", "status", "-id"], name="wfrun_workflow_status_idx"),
            # The spool sweep: runs whose spooled output is still on disk (a handful).
            models.Index(fields=["host"], condition=~Q(spool=""), name="wfrun_unread_spool_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow.slug} run #{self.pk}"

    @property
    def duration(self) -> timedelta | None:
        return _duration(self.started_at, self.finished_at)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def progress_percent(self) -> float | None:
        if not self.progress_total:
            return None
        return 100.0 * (self.progress_done or 0) / self.progress_total

    def start(
        self,
        host: str,
        pid: int | None,
        worker_pid: int | None,
        *,
        started_at: datetime | None = None,
        spool: str = "",
    ) -> bool:
        """queued → running with who runs it; False when it was not queued.

        `started_at` is when the bot was launched (taken before starting it, so the
        recorded duration is never shorter than the bot's life).
        """
        now = timezone.now()
        fields = {
            "status": RunStatus.RUNNING,
            "started_at": started_at or now,
            "heartbeat_at": now,
            "host": host[:255],
            "pid": pid,
            "worker_pid": worker_pid,
            "spool": spool,
        }
        updated = WorkflowRun.objects.filter(pk=self.pk, status=RunStatus.QUEUED).update(**fields)
        if updated:
            for name, value in fields.items():
                setattr(self, name, value)
            touch_chain_run(self.chain_run_id, now)
        return bool(updated)

    def heartbeat(self, progress: tuple[int, int] | None = None) -> bool:
        """Renew the lease (and store progress); False when the run is no longer running."""
        fields: dict[str, Any] = {"heartbeat_at": timezone.now()}
        if progress is not None:
            fields["progress_done"], fields["progress_total"] = progress
        updated = WorkflowRun.objects.filter(pk=self.pk, status=RunStatus.RUNNING).update(**fields)
        if updated:
            for name, value in fields.items():
                setattr(self, name, value)
            touch_chain_run(self.chain_run_id, fields["heartbeat_at"])
        return bool(updated)

    def finish(self, status: RunStatus, exit_code: int | None = None, error: str = "") -> bool:
        """Record the outcome exactly once, counting it in the same transaction.

        False when the run had already finished (cancelled, or reaped as abandoned).
        """
        assert status in FINISHED_STATUSES, status
        now = timezone.now()
        fields = {"status": status, "finished_at": now, "exit_code": exit_code, "error": error}
        with transaction.atomic():
            updated = WorkflowRun.objects.filter(pk=self.pk, status__in=ACTIVE_STATUSES).update(**fields)
            if updated:
                record_finished_run(self.workflow_id, status, self.started_at, now)
        if updated:
            for name, value in fields.items():
                setattr(self, name, value)
        else:
            self.refresh_from_db()
        return bool(updated)

    def mark_failed(self, error: str, exit_code: int | None = None) -> bool:
        return self.finish(RunStatus.FAILURE, exit_code=exit_code, error=error)

    def advance_spool(self, old: tuple[int, int], new: tuple[int, int]) -> bool:
        """Move the stored (stdout, stderr) spool offsets from `old` to `new`.

        Call it in the transaction that stores the lines in between: False (store
        nothing) when someone else moved them first, so no line is stored twice.
        """
        updated = WorkflowRun.objects.filter(pk=self.pk, stdout_offset=old[0], stderr_offset=old[1]).update(
            stdout_offset=new[0], stderr_offset=new[1]
        )
        if updated:
            self.stdout_offset, self.stderr_offset = new
        return bool(updated)

    def clear_spool(self) -> None:
        """The spool files are stored and removed: forget them."""
        WorkflowRun.objects.filter(pk=self.pk).update(spool="")
        self.spool = ""


def record_finished_run(workflow_id: int, status: str, started_at: datetime | None, now: datetime) -> None:
    """Count a finished run everywhere /metrics reads it from (call inside the finishing transaction).

    Counters, duration histogram and the per-minute rollup are bumped
    incrementally, so a scrape reads O(series) rows however long the history.
    """
    WorkflowRunCount.objects.bump(workflow_id, status)
    if started_at is not None:
        seconds = max(0.0, (now - started_at).total_seconds())
        bucket = bisect.bisect_left(DURATION_BUCKETS, seconds)  # first bound >= seconds; len() is +Inf
        add_counts(WorkflowDurationBucket, ["workflow_id", "bucket"], {(workflow_id, bucket): 1})
        add_values(WorkflowDurationSum, ["workflow_id"], ["count", "sum"], {(workflow_id,): (1, seconds)})
    if status != RunStatus.CANCELLED:
        minute = now.replace(second=0, microsecond=0)
        failed = 1 if status in FAILED_STATUSES else 0
        add_values(RunMinute, ["minute"], ["finished", "failed"], {(minute,): (1, failed)})


def touch_chain_run(chain_run_id: int | None, now: datetime) -> bool:
    """Renew a running chain run's heartbeat (its steps' heartbeats carry it along)."""
    if chain_run_id is None:
        return False
    return bool(ChainRun.objects.filter(pk=chain_run_id, status=RunStatus.RUNNING).update(heartbeat_at=now))


def _duration(start: datetime | None, end: datetime | None) -> timedelta | None:
    if start is None:
        return None
    return (end or timezone.now()) - start


class RunCountManager(models.Manager[Any]):
    def bump(self, owner_id: int, status: str) -> None:
        """Add one finished run; call it inside the transaction that finished it."""
        add_counts(self.model, [f"{self.model.owner_field}_id", "status"], {(owner_id, status): 1})

    def by_owner(self) -> dict[int, dict[str, int]]:
        """{owner id: {status: count}} for every owner (one small query)."""
        result: dict[int, dict[str, int]] = {}
        for owner_id, status, count in self.values_list(f"{self.model.owner_field}_id", "status", "count"):
            result.setdefault(owner_id, {})[status] = count
        return result


class WorkflowRunCount(models.Model):
    """How many runs of a workflow finished with each status, ever.

    Kept in the transaction that finishes a run, never decremented by retention:
    the success-rate column and workflow_executions_total read it in O(workflows).
    """

    owner_field = "workflow"
    workflow = models.ForeignKey(
        Workflow, on_delete=models.CASCADE, related_name="run_counts", db_index=False
    )
    status = models.CharField(max_length=10, choices=RunStatus.choices)
    count = models.BigIntegerField(default=0)

    objects = RunCountManager()

    class Meta:
        constraints = [
            # One counter per (workflow, status): bump() updates it in place.
            models.UniqueConstraint(fields=["workflow", "status"], name="wfruncount_workflow_status_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id} {self.status}: {self.count}"


class ChainRunCount(models.Model):
    """How many runs of a chain finished with each status, ever (see WorkflowRunCount)."""

    owner_field = "chain"
    chain = models.ForeignKey(Chain, on_delete=models.CASCADE, related_name="run_counts", db_index=False)
    status = models.CharField(max_length=10, choices=RunStatus.choices)
    count = models.BigIntegerField(default=0)

    objects = RunCountManager()

    class Meta:
        constraints = [
            # One counter per (chain, status): bump() updates it in place.
            models.UniqueConstraint(fields=["chain", "status"], name="chainruncount_chain_status_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.chain_id} {self.status}: {self.count}"


class WorkflowDurationBucket(models.Model):
    """Finished runs of a workflow per duration bucket (not cumulative; the scrape accumulates)."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="+", db_index=False)
    bucket = models.PositiveSmallIntegerField(
        help_text="Index into DURATION_BUCKETS; len(DURATION_BUCKETS) is +Inf."
    )
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            # The upsert in record_finished_run conflicts on exactly this pair.
            models.UniqueConstraint(fields=["workflow", "bucket"], name="wfdurbucket_workflow_bucket_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id}[{self.bucket}]: {self.count}"


class WorkflowDurationSum(models.Model):
    """Count and sum of finished runs' durations per workflow (the histogram's _count and _sum)."""

    workflow = models.OneToOneField(Workflow, on_delete=models.CASCADE, related_name="+")
    count = models.BigIntegerField(default=0)
    sum = models.FloatField(default=0.0)

    def __str__(self) -> str:
        return f"{self.workflow_id}: {self.count} runs, {self.sum:.1f}s"


class RunMinute(models.Model):
    """Finished and failed workflow runs per minute: the trailing-hour error_rate reads 60 rows."""

    minute = models.DateTimeField(unique=True)
    finished = models.BigIntegerField(default=0)
    failed = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.minute:%Y-%m-%d %H:%M}: {self.failed}/{self.finished}"

    @classmethod
    def totals(cls, since: datetime, until: datetime | None = None) -> tuple[int, int]:
        """(finished, failed) runs of the minutes from `since` (to `until`): the trailing-hour rates."""
        minutes = cls.objects.filter(minute__gte=since)
        if until is not None:
            minutes = minutes.filter(minute__lte=until)
        totals = minutes.aggregate(finished=models.Sum("finished"), failed=models.Sum("failed"))
        return totals["finished"] or 0, totals["failed"] or 0


def success_rate(counts: dict[str, int]) -> float | None:
    """Percent of finished runs that succeeded (cancelled runs do not count)."""
    decided = sum(n for status, n in counts.items() if status != RunStatus.CANCELLED)
    if not decided:
        return None
    return 100.0 * counts.get(RunStatus.SUCCESS, 0) / decided


# Bounds (seconds) of the per-day duration histogram: a factor 1.25 apart from 10 ms to ~16 days, so
# percentiles over any set of days (merged histograms) are typically within ~12% of the true
# value and at worst within 25% + 10 ms (see chains.daily.merged_percentiles).
DAY_BUCKETS = tuple(round(0.01 * 1.25**i, 4) for i in range(85))


class WorkflowDay(models.Model):
    """One workflow's finished runs on one calendar day (in TIME_ZONE).

    Rolled up from WorkflowRun by `chains.daily`, kept RPA_AGGREGATE_DAYS (a year):
    trends, the 30-day dashboard chart, "slower than usual" and reports read these
    rows, so they survive run and log purges. A day is `final` once it was rolled up
    after it ended; final rows are never recomputed (their runs may be purged).
    """

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="days", db_index=False)
    day = models.DateField()
    runs = models.PositiveIntegerField(default=0, help_text="Finished runs (cancelled ones included).")
    successes = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0, help_text="failure, timeout and abandoned runs.")
    cancelled = models.PositiveIntegerField(default=0)
    duration_count = models.PositiveIntegerField(default=0, help_text="Runs with a measured duration.")
    duration_sum = models.FloatField(default=0.0)
    p50 = models.FloatField(null=True, blank=True)
    p95 = models.FloatField(null=True, blank=True)
    p99 = models.FloatField(null=True, blank=True)
    histogram = models.JSONField(
        default=list, blank=True, help_text="Run counts per DAY_BUCKETS bound (last: above them all)."
    )
    final = models.BooleanField(default=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-day", "workflow"]
        constraints = [
            # One row per workflow and day: the rollup upserts it.
            models.UniqueConstraint(fields=["workflow", "day"], name="wfday_workflow_day_uniq"),
        ]
        indexes = [
            # The 30-day chart, reports over a period and the one-year retention.
            models.Index(fields=["day"], name="wfday_day_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id} {self.day}: {self.failures}/{self.runs} failed"

    @property
    def success_rate(self) -> float | None:
        decided = self.runs - self.cancelled
        return 100.0 * self.successes / decided if decided else None
