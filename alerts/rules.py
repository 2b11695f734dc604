"""Evaluate alert rules: what the scheduler tick runs after firing triggers.

Each rule kind answers one question per *subject* (a workflow or chain slug, a
trigger, or "all workflows"): does the condition hold now? The answer is a
Finding (it holds) or None (it has cleared). A rule only looks at subjects that
can have changed — those with runs finished since its previous evaluation (the
`finished_at` indexes), the subjects of its open alerts, and for a few kinds a
small indexed set (running runs, overdue triggers) — so a tick costs
O(recent activity), never a scan over all history.

Then, per subject: a holding condition with no open alert opens one (the partial
unique index keeps it to one per rule and subject, whichever host's tick gets
there first) and queues its notifications unless the rule's cooldown is on; a
cleared condition resolves the open alert, which queues "resolved"
notifications. Rules are read afresh every tick: an edit in the admin takes
effect at the next tick.

Attempts that will be retried do not count as failures of their workflow: a
failed or timed-out attempt with retries left is followed by another attempt,
and only the workflow's last attempt decides.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, F, OuterRef, Q, Subquery
from django.utils import timezone

from alerts.models import Alert, AlertRule, Delivery
from alerts.notify import queue_notifications
from chains.models import (
    FAILED_STATUSES,
    FINISHED_STATUSES,
    Chain,
    ChainRun,
    RunStatus,
    Workflow,
    WorkflowRun,
)
from logs import get_logger
from triggers.models import Trigger, TriggerFire

log = get_logger("alerts")

# Runs that finished this long before the previous evaluation are looked at again:
# a run's row may commit a little after its finished_at, and hosts' clocks differ.
LOOKBACK = timedelta(minutes=2)
ALL_WORKFLOWS = "all workflows"
ALL_CHAINS = "all chains"


@dataclass(frozen=True)
class Finding:
    """The condition holds for a subject; `key` names this occurrence (e.g. the failed run)."""

    summary: str
    details: dict[str, Any]
    key: str = ""


Verdicts = dict[str, Finding | None]


@dataclass
class EvaluationReport:
    rules: int = 0
    triggered: int = 0
    resolved: int = 0
    suppressed: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{self.rules} rule(s): {self.triggered} alert(s) triggered, {self.resolved} resolved"
        if self.suppressed:
            text += f", {self.suppressed} not notified (cooldown)"
        if self.errors:
            text += f", {len(self.errors)} rule(s) failed"
        return text


def evaluate_rules(now: datetime | None = None) -> EvaluationReport:
    """Evaluate every enabled rule once; one broken rule never stops the others."""
    now = now or timezone.now()
    report = EvaluationReport()
    for rule in AlertRule.objects.filter(enabled=True).select_related("workflow", "chain"):
        report.rules += 1
        try:
            evaluate_rule(rule, now, report)
        except Exception as exc:
            report.errors.append(f"{rule.name}: {exc}")
            log.exception(f"evaluating alert rule {rule.pk} ({rule.name}) failed: {exc}", rule_id=rule.pk)
    _resolve_orphans(now, report)
    return report


def evaluate_rule(rule: AlertRule, now: datetime, report: EvaluationReport | None = None) -> Verdicts:
    report = report or EvaluationReport()
    since = (rule.evaluated_at or rule.created_at) - LOOKBACK
    open_alerts = {alert.subject: alert for alert in Alert.objects.open().filter(rule=rule)}
    verdicts = CHECKS[rule.kind](rule, now, since, set(open_alerts))
    for subject, finding in sorted(verdicts.items()):
        alert = open_alerts.get(subject)
        if finding is not None:
            _raise(rule, subject, finding, alert, now, report)
        elif alert is not None and alert.resolve(None, now, reason="the condition cleared"):
            report.resolved += 1
    AlertRule.objects.filter(pk=rule.pk).update(evaluated_at=now)
    return verdicts


def _raise(
    rule: AlertRule,
    subject: str,
    finding: Finding,
    alert: Alert | None,
    now: datetime,
    report: EvaluationReport,
) -> None:
    if alert is not None:
        # Still holding: count a new occurrence (another failed run), keep the details current.
        fields: dict[str, Any] = {"last_seen_at": now, "details": {**alert.details, **finding.details}}
        if finding.key and finding.key != alert.details.get("key"):
            fields["occurrences"] = F("occurrences") + 1
            fields["summary"] = finding.summary[:500]
        fields["details"]["key"] = finding.key
        Alert.objects.filter(pk=alert.pk).update(**fields)
        return
    notify = not _cooling_down(rule, subject, now)
    details = {**finding.details, "key": finding.key}
    if not notify:
        details["notifications"] = f"not sent: the rule's cooldown ({rule.cooldown_seconds}s) is on"
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                rule=rule,
                subject=subject[:255],
                severity=rule.severity,
                summary=finding.summary[:500],
                details=details,
                notify=notify,
                triggered_at=now,
                last_seen_at=now,
            )
            if notify:
                queue_notifications(alert, Delivery.Event.TRIGGERED, now)
    except IntegrityError:
        return  # another tick (another host) opened this alert at the same moment
    report.triggered += 1
    report.suppressed += 0 if notify else 1
    log.warning(f"alert [{rule.severity}] {finding.summary}", rule_id=rule.pk, alert_id=alert.pk)


def _cooling_down(rule: AlertRule, subject: str, now: datetime) -> bool:
    """Was this rule's subject notified less than cooldown_seconds ago?"""
    if not rule.cooldown_seconds:
        return False
    last = (
        Alert.objects.filter(rule=rule, subject=subject, notify=True)
        .order_by("-triggered_at")
        .values_list("triggered_at", flat=True)
        .first()
    )
    return last is not None and now - last < timedelta(seconds=rule.cooldown_seconds)


def _resolve_orphans(now: datetime, report: EvaluationReport) -> None:
    """Open alerts of disabled rules resolve: nobody evaluates them any more."""
    disabled = list(AlertRule.objects.filter(enabled=False).values_list("pk", flat=True))
    # By rule id through the partial index of open alerts, not a scan of all alerts ever.
    for alert in Alert.objects.open().filter(rule_id__in=disabled).select_related("rule"):
        if alert.resolve(None, now, reason="the rule was disabled"):
            report.resolved += 1


# -- whose runs a rule watches ------------------------------------------------------


@dataclass(frozen=True)
class Owners:
    """Workflows and their runs, or chains and theirs."""

    owner_model: type[Workflow] | type[Chain]
    run_model: type[WorkflowRun] | type[ChainRun]
    field: str
    all_label: str

    def runs(self) -> Any:
        return self.run_model.objects.all()

    def scoped(self, rule: AlertRule) -> int | None:
        """The one owner the rule is scoped to (None: all of them)."""
        return rule.chain_id if self.field == "chain" else rule.workflow_id

    def slugs(self, ids: Iterable[int]) -> dict[int, str]:
        return dict(self.owner_model.objects.filter(pk__in=set(ids)).values_list("pk", "slug"))

    def ids(self, slugs: Iterable[str]) -> dict[str, int]:
        return {
            slug: pk
            for pk, slug in self.owner_model.objects.filter(slug__in=set(slugs)).values_list("pk", "slug")
        }


WORKFLOWS = Owners(Workflow, WorkflowRun, "workflow", ALL_WORKFLOWS)
CHAINS = Owners(Chain, ChainRun, "chain", ALL_CHAINS)


def owners_of(rule: AlertRule) -> Owners:
    if rule.kind == AlertRule.Kind.CHAIN_FAILED or rule.chain_id:
        return CHAINS
    return WORKFLOWS


def _candidates(rule: AlertRule, owners: Owners, since: datetime, open_subjects: set[str]) -> dict[int, str]:
    """Owners whose runs finished since `since`, plus those of open alerts: {id: slug}."""
    runs = owners.runs().filter(finished_at__gte=since)
    scoped = owners.scoped(rule)
    if scoped is not None:
        runs = runs.filter(**{f"{owners.field}_id": scoped})
    ids = set(_recent_values(runs, f"{owners.field}_id"))
    ids |= set(owners.ids(open_subjects).values())
    return owners.slugs(ids)


def _recent_values(runs: Any, column: str) -> list[Any]:
    """A column of the runs in a recent window, read through the `finished_at` index.

    No ORDER BY and no DISTINCT (callers dedupe): either one makes SQLite walk the
    whole table in id order instead of the window of the index.
    """
    return list(runs.order_by().values_list(column, flat=True))


def _vanished(open_subjects: set[str], verdicts: Verdicts, owners: Owners) -> Verdicts:
    """Open alerts about owners that no longer exist (deleted) clear."""
    known = set(owners.ids(open_subjects))
    return {subject: None for subject in open_subjects - known - set(verdicts)}


def retries_of(owners: Owners, ids: Iterable[int]) -> dict[int, int]:
    """max_retries of each workflow (chains are not retried): one query for all candidates."""
    if owners is not WORKFLOWS:
        return {}
    return dict(Workflow.objects.filter(pk__in=set(ids)).values_list("pk", "max_retries"))


def decided_runs(owners: Owners, owner_id: int, count: int, retries: int = 0) -> list[Any]:
    """The owner's last `count` decided runs, newest first (walks its (owner, -id) index).

    Cancelled runs decide nothing, and neither does an attempt that will be retried.
    """
    runs = (
        owners.runs()
        .filter(**{f"{owners.field}_id": owner_id}, status__in=FINISHED_STATUSES)
        .exclude(status=RunStatus.CANCELLED)
        .order_by("-id")[: count * (retries + 1) + retries]
    )
    decided = [run for run in runs if _decides(run, retries)]
    return decided[:count]


def _decides(run: Any, retries: int) -> bool:
    if isinstance(run, WorkflowRun) and run.status in (RunStatus.FAILURE, RunStatus.TIMEOUT):
        return run.attempt > retries
    return True


def _run_details(owners: Owners, run: Any) -> dict[str, Any]:
    details: dict[str, Any] = {
        f"{owners.field}_run_id": run.pk,
        "status": run.status,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "error": (run.error or "")[:500],
    }
    if isinstance(run, ChainRun):
        details["failed_step"] = run.failed_step
    else:
        details["exit_code"] = run.exit_code
        details["attempt"] = run.attempt
    return details


# -- the kinds ----------------------------------------------------------------------


def check_failed(rule: AlertRule, now: datetime, since: datetime, open_subjects: set[str]) -> Verdicts:
    """workflow_failed / chain_failed: the subject's latest decided run failed."""
    owners = owners_of(rule)
    verdicts: Verdicts = {}
    candidates = _candidates(rule, owners, since, open_subjects)
    retries = retries_of(owners, candidates)
    for owner_id, slug in candidates.items():
        latest = decided_runs(owners, owner_id, 1, retries.get(owner_id, 0))
        if not latest:
            continue
        run = latest[0]
        if run.status in FAILED_STATUSES:
            summary = f"{owners.field} {slug} failed: {run.status} (run #{run.pk})"
            if isinstance(run, ChainRun) and run.failed_step:
                summary += f" at step {run.failed_step}"
            verdicts[slug] = Finding(summary, _run_details(owners, run), key=f"run:{run.pk}")
        else:
            verdicts[slug] = None
    return verdicts | _vanished(open_subjects, verdicts, owners)


def check_consecutive(rule: AlertRule, now: datetime, since: datetime, open_subjects: set[str]) -> Verdicts:
    """consecutive_failures: the subject's last N decided runs all failed."""
    owners, count = owners_of(rule), int(rule.param("count"))
    verdicts: Verdicts = {}
    candidates = _candidates(rule, owners, since, open_subjects)
    retries = retries_of(owners, candidates)
    for owner_id, slug in candidates.items():
        runs = decided_runs(owners, owner_id, count, retries.get(owner_id, 0))
        if not runs:
            continue
        if runs[0].status not in FAILED_STATUSES:
            verdicts[slug] = None
        elif len(runs) == count and all(run.status in FAILED_STATUSES for run in runs):
            details = {**_run_details(owners, runs[0]), "count": count, "runs": [run.pk for run in runs]}
            summary = f"{owners.field} {slug} failed {count} times in a row (last: run #{runs[0].pk})"
            verdicts[slug] = Finding(summary, details, key=f"run:{runs[0].pk}")
    return verdicts | _vanished(open_subjects, verdicts, owners)


def check_error_rate(rule: AlertRule, now: datetime, since: datetime, open_subjects: set[str]) -> Verdicts:
    """error_rate_above: failed / decided runs finished in the trailing window (one indexed count)."""
    owners = owners_of(rule)
    percent, window, minimum = (
        float(rule.param("percent")),
        int(rule.param("window_seconds")),
        int(rule.param("count")),
    )
    runs = owners.runs().filter(finished_at__gt=now - timedelta(seconds=window), finished_at__lte=now)
    scoped = owners.scoped(rule)
    subject = owners.all_label
    if scoped is not None:
        runs = runs.filter(**{f"{owners.field}_id": scoped})
        subject = owners.slugs([scoped]).get(scoped, subject)
    counts = runs.exclude(status=RunStatus.CANCELLED).aggregate(
        decided=Count("id"), failed=Count("id", filter=Q(status__in=FAILED_STATUSES))
    )
    decided, failed = counts["decided"] or 0, counts["failed"] or 0
    rate = 100.0 * failed / decided if decided else 0.0
    verdicts: Verdicts = {name: None for name in open_subjects if name != subject}
    if decided >= minimum and rate > percent:
        details = {
            "error_rate": round(rate, 2),
            "failed": failed,
            "finished": decided,
            "window_seconds": window,
        }
        summary = (
            f"error rate of {subject} is {rate:.1f}% over {_span(window)} ({failed}/{decided} runs failed)"
        )
        verdicts[subject] = Finding(summary, details)
    else:
        verdicts[subject] = None
    return verdicts


def check_no_success(rule: AlertRule, now: datetime, since: datetime, open_subjects: set[str]) -> Verdicts:
    """no_success_within (dead man's switch): no successful run of an enabled subject for T."""
    owners, seconds = owners_of(rule), int(rule.param("seconds"))
    cutoff = now - timedelta(seconds=seconds)
    subjects = owners.owner_model.objects.filter(enabled=True)
    scoped = owners.scoped(rule)
    if scoped is not None:
        subjects = subjects.filter(pk=scoped)
    # One statement, one probe of the (owner, status, -id) index per watched owner:
    # O(owners), never a scan of a window of runs (a week-long T could hold millions).
    last_success = (
        owners.runs()
        .filter(**{owners.field: OuterRef("pk")}, status=RunStatus.SUCCESS)
        .order_by("-id")
        .values("finished_at")[:1]
    )
    watched = subjects.annotate(last=Subquery(last_success)).values_list("pk", "slug", "created_at", "last")
    verdicts: Verdicts = {slug: None for slug in open_subjects}  # disabled or deleted: cleared
    for _pk, slug, created, last in watched:
        if (last is not None and last > cutoff) or max(created, rule.created_at) > cutoff:
            verdicts[slug] = None  # a success within T, or not watched for T yet
            continue
        details = {"seconds": seconds, "last_success_at": last.isoformat() if last else None}
        since_text = f"since {last:%Y-%m-%d %H:%M} UTC" if last else "ever"
        summary = f"no successful run of {owners.field} {slug} within {_span(seconds)} ({since_text})"
        verdicts[slug] = Finding(summary, details)
    return verdicts


def check_duration(rule: AlertRule, now: datetime, since: datetime, open_subjects: set[str]) -> Verdicts:
    """duration_above: a running run has taken longer than T, or the latest finished one did."""
    seconds = int(rule.param("seconds"))
    limit = timedelta(seconds=seconds)
    running = WorkflowRun.objects.filter(status=RunStatus.RUNNING, started_at__lt=now - limit)
    if rule.workflow_id:
        running = running.filter(workflow_id=rule.workflow_id)
    slow_now = {run.workflow_id: run for run in running.order_by("started_at")}
    candidates = _candidates(rule, WORKFLOWS, since, open_subjects) | WORKFLOWS.slugs(slow_now)
    verdicts: Verdicts = {}
    for workflow_id, slug in candidates.items():
        run = slow_now.get(workflow_id) or _latest_timed_run(workflow_id)
        if run is None or run.started_at is None:
            continue
        took = ((run.finished_at or now) - run.started_at).total_seconds()
        if took <= seconds:
            verdicts[slug] = None
            continue
        state = "has been running for" if run.finished_at is None else "took"
        details = {"workflow_run_id": run.pk, "seconds": round(took, 1), "limit_seconds": seconds}
        summary = f"workflow {slug} run #{run.pk} {state} {_span(took)} (limit {_span(seconds)})"
        verdicts[slug] = Finding(summary, details, key=f"run:{run.pk}")
    return verdicts | _vanished(open_subjects, verdicts, WORKFLOWS)


def _latest_timed_run(workflow_id: int) -> WorkflowRun | None:
    return (
        WorkflowRun.objects.filter(
            workflow_id=workflow_id, status__in=FINISHED_STATUSES, started_at__isnull=False
        )
        .exclude(status=RunStatus.CANCELLED)
        .order_by("-id")
        .first()
    )


def check_stale(rule: AlertRule, now: datetime, since: datetime, open_subjects: set[str]) -> Verdicts:
    """stale_runs: the subject's latest finished run was abandoned (its worker died)."""
    runs = WorkflowRun.objects.filter(finished_at__gte=since)
    if rule.workflow_id:
        runs = runs.filter(workflow_id=rule.workflow_id)
    # The status is checked here, not in SQL: with it there, SQLite walks every abandoned run
    # ever (the status index) instead of the recent window of the finished_at index.
    recent = runs.order_by().values_list("workflow_id", "status")
    abandoned = {pk for pk, status in recent if status == RunStatus.ABANDONED}
    candidates = WORKFLOWS.slugs(abandoned | set(WORKFLOWS.ids(open_subjects).values()))
    verdicts: Verdicts = {}
    for workflow_id, slug in candidates.items():
        # The latest finished run, retried attempts included (an abandoned run is never retried).
        latest_runs = decided_runs(WORKFLOWS, workflow_id, 1)
        latest = latest_runs[0] if latest_runs else None
        if latest is None or latest.status != RunStatus.ABANDONED:
            verdicts[slug] = None
            continue
        details = {**_run_details(WORKFLOWS, latest), "host": latest.host, "pid": latest.pid}
        summary = (
            f"workflow {slug} run #{latest.pk} was abandoned (host {latest.host or '?'}, pid {latest.pid})"
        )
        verdicts[slug] = Finding(summary, details, key=f"run:{latest.pk}")
    return verdicts | _vanished(open_subjects, verdicts, WORKFLOWS)


def check_missed_schedule(
    rule: AlertRule, now: datetime, since: datetime, open_subjects: set[str]
) -> Verdicts:
    """missed_schedule: a schedule slot passed without its fire, or fired late / coalesced / in error.

    Looks at schedule triggers that are overdue now (the due index) or fired since the
    previous evaluation (the fired_at index), and those with open alerts.
    """
    grace = int(rule.param("seconds"))
    triggers = Trigger.objects.filter(trigger_type=Trigger.Type.SCHEDULE)
    if rule.workflow_id:
        triggers = triggers.filter(workflow_id=rule.workflow_id)
    elif rule.chain_id:
        triggers = triggers.filter(chain_id=rule.chain_id)
    late = triggers.filter(enabled=True, next_fire_at__lt=now - timedelta(seconds=grace))
    overdue = set(late.values_list("pk", flat=True))
    # Recent fires by the fired_at index alone, matched to the watched triggers here: with
    # the trigger condition in SQL, SQLite reads every fire of every schedule trigger.
    watched = set(triggers.values_list("pk", flat=True))
    recent = TriggerFire.objects.filter(fired_at__gte=since).order_by().values_list("trigger_id", flat=True)
    fired = set(recent) & watched
    reopened = {_trigger_id(subject) for subject in open_subjects} - {None}
    verdicts: Verdicts = {subject: None for subject in open_subjects}  # unless still missing, below
    for trigger in triggers.filter(pk__in=overdue | fired | reopened):
        verdicts[_trigger_subject(trigger)] = _missed(trigger, trigger.pk in overdue, grace, now)
    return verdicts


def _missed(trigger: Trigger, overdue: bool, grace: int, now: datetime) -> Finding | None:
    name = f"trigger {trigger.name!r} (#{trigger.pk})"
    if overdue and trigger.next_fire_at is not None:
        late = (now - trigger.next_fire_at).total_seconds()
        details = {"trigger_id": trigger.pk, "due_at": trigger.next_fire_at.isoformat(), "late_seconds": late}
        return Finding(
            f"{name}: slot due {_stamp(trigger.next_fire_at)} has not fired ({_span(late)} late)", details
        )
    fire = trigger.fires.order_by("-due_at").first()
    if fire is None:
        return None
    late = fire.lateness_seconds or 0.0
    problem = fire.outcome == TriggerFire.Outcome.ERROR or fire.missed_slots > 0 or late > grace
    if not problem or not trigger.enabled:
        return None
    details = {
        "trigger_id": trigger.pk,
        "fire_id": fire.pk,
        "due_at": fire.due_at.isoformat(),
        "late_seconds": round(late, 1),
        "missed_slots": fire.missed_slots,
        "outcome": fire.outcome,
        "detail": fire.detail[:500],
    }
    if fire.outcome == TriggerFire.Outcome.ERROR:
        what = f"slot due {_stamp(fire.due_at)} failed to fire: {fire.detail[:200]}"
    elif fire.missed_slots:
        what = (
            f"{fire.missed_slots} slot(s) before {_stamp(fire.fired_at)} were missed (fired once, coalesced)"
        )
    else:
        what = f"slot due {_stamp(fire.due_at)} fired {_span(late)} late"
    return Finding(f"{name}: {what}", details, key=f"fire:{fire.pk}")


def _trigger_subject(trigger: Trigger) -> str:
    return f"trigger #{trigger.pk} {trigger.name}"[:255]


def _trigger_id(subject: str) -> int | None:
    head = subject.removeprefix("trigger #").split(" ", 1)[0]
    return int(head) if subject.startswith("trigger #") and head.isdigit() else None


def _span(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _stamp(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


Check = Callable[[AlertRule, datetime, datetime, set[str]], Verdicts]
CHECKS: dict[str, Check] = {
    AlertRule.Kind.WORKFLOW_FAILED: check_failed,
    AlertRule.Kind.CHAIN_FAILED: check_failed,
    AlertRule.Kind.CONSECUTIVE_FAILURES: check_consecutive,
    AlertRule.Kind.ERROR_RATE_ABOVE: check_error_rate,
    AlertRule.Kind.NO_SUCCESS_WITHIN: check_no_success,
    AlertRule.Kind.DURATION_ABOVE: check_duration,
    AlertRule.Kind.MISSED_SCHEDULE: check_missed_schedule,
    AlertRule.Kind.STALE_RUNS: check_stale,
}
