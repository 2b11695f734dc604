"""The scheduler tick: reap stale runs, fire due schedule triggers, scan file triggers.

Exactly once, with any number of concurrent ticks on any number of hosts:

* a schedule slot is claimed by a compare-and-set of `next_fire_at`
  (`UPDATE ... WHERE id = X AND next_fire_at = <the slot>`): one writer wins,
  the others update nothing; the TriggerFire row inserted in the same
  transaction is unique on (trigger, due_at), so the database itself refuses
  a second fire of the slot;
* a file is claimed by a conditional update of its SeenFile row
  (`fired_at IS NULL` and the same size/mtime).

Missed slots (downtime) coalesce into one fire that records how late it is
and how many slots it stands for; `next_fire_at` moves to the next slot after now.

A fire, the run it starts and that run's task are one unit: with the database
task backend all three commit in one transaction, so a tick killed at any
point leaves all or nothing; for a backend outside the database every tick
repairs a queued run whose task was lost (chains.tasks.requeue_lost_runs).
"""

from __future__ import annotations

import fnmatch
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from alerts.channels import deliver_pending
from alerts.rules import evaluate_rules
from chains.daily import rollup_tick
from chains.runner import enqueue_chain, enqueue_workflow, real_user, reap_stale_runs
from chains.tasks import requeue_lost_runs
from logs import get_logger
from rpa_monitor.errors import ChainExecutionError
from rpa_monitor.lib.counters import add_counts
from triggers.models import (
    SchedulerTick,
    SeenFile,
    Trigger,
    TriggerFire,
    TriggerFireCount,
    file_trigger_roots,
    is_under,
    outside_roots,
)
from triggers.schedule import Schedule

log = get_logger("scheduler")

DUE_BATCH = 500
MAX_COUNTED_MISSED = 10_000


@dataclass
class TickReport:
    reaped: int = 0
    repaired: int = 0  # queued runs whose task was lost: enqueued again, or abandoned
    fires: list[TriggerFire] = field(default_factory=list)
    after: list[str] = field(default_factory=list)  # what the steps after the fires reported
    duration_ms: float = 0.0

    def summary(self) -> str:
        outcomes: dict[str, int] = {}
        for fire in self.fires:
            outcomes[fire.outcome] = outcomes.get(fire.outcome, 0) + 1
        parts = [f"{n} {outcome}" for outcome, n in sorted(outcomes.items())] or ["nothing due"]
        after = "".join(f"; {line}" for line in self.after)
        reaped = f"{self.reaped} stale run(s) reaped"
        if self.repaired:
            reaped += f"; {self.repaired} queued run(s) with a lost task repaired"
        return f"tick: {', '.join(parts)}; {reaped}{after}; {self.duration_ms:.0f} ms"


def tick(now: datetime | None = None) -> TickReport:
    """One scheduler pass (what `manage.py fire_triggers` runs every minute)."""
    started = time.monotonic()
    now = now or timezone.now()
    report = TickReport()
    report.reaped = len(reap_stale_runs(now, settings.RPA_RUN_LEASE_SECONDS))
    report.repaired = len(requeue_lost_runs(now, settings.RPA_RUN_LEASE_SECONDS))
    report.fires += fire_due_schedules(now)
    report.fires += scan_file_triggers(now)
    report.after = after_fires(now)
    report.duration_ms = (time.monotonic() - started) * 1000
    _record_tick(now, report)
    return report


class Reporting(Protocol):
    def summary(self) -> str: ...


# What a tick does once the due work has started: alert rules, the daily aggregates,
# then notifications last (a slow webhook must not delay a fire or a rule).
AFTER_FIRES: list[Callable[[datetime], Reporting]] = [evaluate_rules, rollup_tick, deliver_pending]


def after_fires(now: datetime) -> list[str]:
    """Run each step guarded: a broken rule or channel never stops the scheduler."""
    summaries = []
    for step in AFTER_FIRES:
        try:
            summaries.append(step(now).summary())
        except Exception as exc:
            log.exception(f"{step.__name__} failed: {exc}")
            summaries.append(f"{step.__name__} failed: {exc}")
    return summaries


def fire_due_schedules(now: datetime) -> list[TriggerFire]:
    """Fire every enabled trigger whose next_fire_at <= now (the index finds them: O(due))."""
    fires: list[TriggerFire] = []
    due = Trigger.objects.filter(enabled=True, next_fire_at__lte=now).select_related("workflow", "chain")
    after: tuple[datetime, int] | None = None
    while True:
        # Pages in (next_fire_at, id) order: exactly the order of trigger_due_idx (which
        # ends with the row id), so SQLite walks the index instead of the whole table,
        # and a huge backlog is never loaded at once.
        page = due
        if after is not None:
            page = due.filter(Q(next_fire_at__gt=after[0]) | Q(next_fire_at=after[0], id__gt=after[1]))
        batch = list(page.order_by("next_fire_at", "id")[:DUE_BATCH])
        if not batch:
            return fires
        last = batch[-1]
        assert last.next_fire_at is not None
        after = (last.next_fire_at, last.pk)  # before fire_slot() moves next_fire_at
        for trigger in batch:
            fire = fire_slot(trigger, now)
            if fire is not None:
                fires.append(fire)


def fire_slot(trigger: Trigger, now: datetime) -> TriggerFire | None:
    """Claim the trigger's due slot and fire it; None when another tick claimed it first."""
    due_at = trigger.next_fire_at
    if due_at is None:
        return None
    schedule = trigger.schedule()
    next_at = schedule.next_after(now) if schedule else None
    missed = _count_missed(schedule, due_at, now) if schedule else 0
    try:
        with transaction.atomic():
            if not _claim_slot(trigger, due_at, next_at, now):
                return None
            return start_fire(trigger, due_at, now, missed_slots=missed)
    except IntegrityError:
        # The slot was fired before (a trigger edited on a host whose clock is
        # behind): it never fires twice; move on to the next slot.
        Trigger.objects.filter(pk=trigger.pk, next_fire_at=due_at).update(next_fire_at=next_at)
        return None
    except Exception as exc:  # one broken trigger must not stop the tick
        log.exception(f"firing trigger {trigger.pk} ({trigger.name}) failed: {exc}", trigger_id=trigger.pk)
        with transaction.atomic():
            if not _claim_slot(trigger, due_at, next_at, now):
                return None
            return _save_fire(
                TriggerFire(
                    trigger=trigger,
                    due_at=due_at,
                    fired_at=now,
                    outcome=TriggerFire.Outcome.ERROR,
                    detail=f"{type(exc).__name__}: {exc}",
                    host=_host(),
                ),
                unique_slot=True,
            )


def _claim_slot(trigger: Trigger, due_at: datetime, next_at: datetime | None, now: datetime) -> bool:
    claimed = Trigger.objects.filter(pk=trigger.pk, enabled=True, next_fire_at=due_at).update(
        next_fire_at=next_at, last_fired=now
    )
    trigger.next_fire_at, trigger.last_fired = next_at, now
    return bool(claimed)


def _count_missed(schedule: Schedule, due_at: datetime, now: datetime) -> int:
    """How many further slots passed between the claimed slot and now (coalesced into this fire)."""
    missed, moment = 0, schedule.next_after(due_at)
    while moment is not None and moment <= now and missed < MAX_COUNTED_MISSED:
        missed += 1
        moment = schedule.next_after(moment)
    return missed


def fire_now(
    trigger: Trigger,
    *,
    requested_by: AbstractBaseUser | AnonymousUser | None = None,
    now: datetime | None = None,
    detail: str = "",
) -> TriggerFire:
    """Fire a trigger immediately (admin "Fire now", the API, `fire_triggers --trigger`).

    Works for every type; the overlap policy still applies. Does not move a
    schedule's next slot.
    """
    now = now or timezone.now()
    with transaction.atomic():
        fire = start_fire(trigger, now, now, requested_by=requested_by, detail=detail or "fired now")
        Trigger.objects.filter(pk=trigger.pk).update(last_fired=now)
    trigger.last_fired = now
    return fire


def start_fire(
    trigger: Trigger,
    due_at: datetime,
    now: datetime,
    *,
    params: dict[str, Any] | None = None,
    requested_by: AbstractBaseUser | AnonymousUser | None = None,
    missed_slots: int = 0,
    detail: str = "",
) -> TriggerFire:
    """Decide (start or skip), start the run through the task queue, record the fire.

    Runs inside the caller's transaction, so the fire, the run and its task
    (chains.tasks.enqueue_run) happen together or not at all.
    """
    fire = TriggerFire(
        trigger=trigger,
        due_at=due_at,
        fired_at=now,
        lateness_seconds=max(0.0, (now - due_at).total_seconds()),
        missed_slots=missed_slots,
        requested_by=real_user(requested_by),
        host=_host(),
        detail=detail,
    )
    if missed_slots:
        fire.detail = f"{fire.detail}; " if fire.detail else ""
        fire.detail += f"{missed_slots} missed slot(s) coalesced into this fire"
    reason = _skip_reason(trigger)
    if reason:
        fire.outcome, fire.detail = TriggerFire.Outcome.SKIPPED, reason
    else:
        _start_run(trigger, fire, {**(trigger.params or {}), **(params or {})})
    return _save_fire(fire, unique_slot=trigger.trigger_type == Trigger.Type.SCHEDULE and due_at != now)


def _skip_reason(trigger: Trigger) -> str:
    target = trigger.target
    if target is None:
        return "the trigger has no target"
    if not target.enabled:
        return f"{type(target).__name__.lower()} {target.slug} is disabled"
    if trigger.overlap == Trigger.Overlap.SKIP and trigger.is_busy():
        return "skipped: the previous run is still queued or running (overlap policy: skip)"
    return ""


def _start_run(trigger: Trigger, fire: TriggerFire, params: dict[str, Any]) -> None:
    user = fire.requested_by
    try:
        if trigger.chain is not None:
            fire.chain_run = enqueue_chain(trigger.chain, params=params, requested_by=user, trigger=trigger)
        elif trigger.workflow is not None:
            fire.workflow_run = enqueue_workflow(
                trigger.workflow, params=params, requested_by=user, trigger=trigger
            )
    except ChainExecutionError as exc:
        fire.outcome, fire.detail = TriggerFire.Outcome.ERROR, exc.message
        return
    fire.outcome = TriggerFire.Outcome.STARTED


def _save_fire(fire: TriggerFire, *, unique_slot: bool) -> TriggerFire:
    """Insert the fire. A schedule slot is unique by design; a file/manual fire's
    moment may collide with another fired in the same microsecond: move it by 1 µs."""
    for _ in range(1000):
        try:
            with transaction.atomic():
                fire.save()
                if fire.outcome == TriggerFire.Outcome.STARTED:
                    key = (fire.trigger.trigger_type, fire.trigger.target_slug)
                    add_counts(TriggerFireCount, ["trigger_type", "workflow_id"], {key: 1})
            return fire
        except IntegrityError:
            if unique_slot:
                raise
            fire.due_at += timedelta(microseconds=1)
    raise IntegrityError(f"could not record a fire for trigger {fire.trigger_id}")


# -- file triggers ------------------------------------------------------------


def scan_file_triggers(now: datetime) -> list[TriggerFire]:
    fires: list[TriggerFire] = []
    triggers = Trigger.objects.filter(enabled=True, trigger_type=Trigger.Type.FILE).select_related(
        "workflow", "chain"
    )
    for trigger in triggers:
        try:
            fires += scan_directory(trigger, now)
        except Exception as exc:  # one broken trigger must not stop the tick
            log.exception(
                f"scanning trigger {trigger.pk} ({trigger.name}) failed: {exc}", trigger_id=trigger.pk
            )
    return fires


def scan_directory(trigger: Trigger, now: datetime) -> list[TriggerFire]:
    """Fire once for each matching file that has not changed since the previous scan.

    Reads only under RPA_FILE_TRIGGER_ROOTS, checked again here: a trigger saved
    before the roots (or before its root was removed, or a directory symlink was
    retargeted) records one error fire and is not read. A file that is a symlink
    leaving the roots is skipped and recorded, never read.
    """
    config = trigger.config or {}
    directory, pattern = str(config.get("path", "")), str(config.get("pattern") or "*")
    settle = timedelta(seconds=float(config.get("settle_seconds", 0)))
    roots = file_trigger_roots()
    outside = outside_roots(directory, roots)
    if outside:
        fire = _report_problem(trigger, f"not scanned: {outside}", now)
        return [fire] if fire else []
    try:
        entries = [e for e in os.scandir(directory) if fnmatch.fnmatch(e.name, pattern)]
        links_out = {
            e.path: target
            for e in entries
            if e.is_symlink() and not is_under(target := os.path.realpath(e.path), roots)
        }
        stats = {e.path: e.stat() for e in entries if e.path not in links_out and e.is_file()}
    except OSError as exc:
        problem = f"cannot read directory {directory!r}: {exc.strerror or exc}"
        fire = _report_problem(trigger, problem, now)
        return [fire] if fire else []
    if trigger.problem and (trigger.target is None or trigger.target.enabled):
        Trigger.objects.filter(pk=trigger.pk).update(problem="")
        trigger.problem = ""
    seen = {row.path: row for row in SeenFile.objects.filter(trigger=trigger)}
    fires = _skip_links_out(trigger, links_out, seen, now)
    for path, stat in sorted(stats.items()):
        row = seen.get(path)
        if row is None:
            _first_sighting(trigger, path, stat, now)
        elif (row.size, row.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
            # Still being written (or replaced by a new file): wait for it to settle again.
            SeenFile.objects.filter(pk=row.pk).update(
                size=stat.st_size, mtime_ns=stat.st_mtime_ns, changed_at=now, fired_at=None, fire=None
            )
        elif row.fired_at is None and now - row.changed_at >= settle and _ready_for_file(trigger, fires, now):
            fire = _fire_file(trigger, row, now)
            if fire is not None:
                fires.append(fire)
    return fires


def _skip_links_out(
    trigger: Trigger, links_out: dict[str, str], seen: dict[str, SeenFile], now: datetime
) -> list[TriggerFire]:
    """Record each symlink leaving the roots once (a skipped fire); it is never read or fired."""
    fires = []
    for path, target in sorted(links_out.items()):
        row = seen.get(path)
        if row is not None and row.size == SeenFile.NOT_READ:
            continue  # recorded by an earlier scan
        fire = _record_link_out(trigger, row, path, target, now)
        if fire is not None:
            fires.append(fire)
    return fires


def _record_link_out(
    trigger: Trigger, row: SeenFile | None, path: str, target: str, now: datetime
) -> TriggerFire | None:
    not_read = {"size": SeenFile.NOT_READ, "mtime_ns": SeenFile.NOT_READ, "changed_at": now, "fired_at": now}
    try:
        with transaction.atomic():
            if row is None:
                row = SeenFile.objects.create(trigger=trigger, path=path, first_seen_at=now, **not_read)
            elif not SeenFile.objects.filter(pk=row.pk).exclude(size=SeenFile.NOT_READ).update(**not_read):
                return None  # another tick recorded it
            detail = f"skipped {path}: a symlink to {target}, outside RPA_FILE_TRIGGER_ROOTS (not read)"
            fire = _record_fire(trigger, TriggerFire.Outcome.SKIPPED, detail, now)
            SeenFile.objects.filter(pk=row.pk).update(fire=fire)
    except IntegrityError:
        return None  # another tick saw it at the same moment
    return fire


def _ready_for_file(trigger: Trigger, fires: list[TriggerFire], now: datetime) -> bool:
    """May a settled file start a run now? If not, it waits (unclaimed) for a later scan.

    Every file gets its run: under overlap `skip` they are taken one at a time as
    the previous run finishes, instead of being recorded as skipped and lost. A
    disabled target is reported once (an error fire) and the files wait for it.
    """
    target = trigger.target
    if target is not None and not target.enabled:
        kind = type(target).__name__.lower()
        _report_problem(trigger, f"{kind} {target.slug} is disabled; files wait", now)
        return False
    if trigger.overlap == Trigger.Overlap.ALLOW:
        return True
    return not fires and not trigger.is_busy()


def _first_sighting(trigger: Trigger, path: str, stat: os.stat_result, now: datetime) -> None:
    try:
        with transaction.atomic():
            SeenFile.objects.create(
                trigger=trigger,
                path=path,
                size=stat.st_size,
                mtime_ns=stat.st_mtime_ns,
                first_seen_at=now,
                changed_at=now,
            )
    except IntegrityError:
        pass  # another tick saw it at the same moment


def _fire_file(trigger: Trigger, row: SeenFile, now: datetime) -> TriggerFire | None:
    with transaction.atomic():
        claimed = SeenFile.objects.filter(
            pk=row.pk, fired_at__isnull=True, size=row.size, mtime_ns=row.mtime_ns
        ).update(fired_at=now)
        if not claimed:
            return None
        params = {"file": row.path, "file_size": row.size, "file_name": os.path.basename(row.path)}
        fire = start_fire(trigger, now, now, params=params, detail=f"new file {row.path}")
        SeenFile.objects.filter(pk=row.pk).update(fire=fire)
        Trigger.objects.filter(pk=trigger.pk).update(last_fired=now)
    return fire


def _report_problem(trigger: Trigger, problem: str, now: datetime) -> TriggerFire | None:
    """Record an error fire when a problem starts (or changes), not on every tick."""
    stored = problem[:500]  # the column's length: compared as stored, or a long one never matches
    with transaction.atomic():
        changed = Trigger.objects.filter(pk=trigger.pk).exclude(problem=stored).update(problem=stored)
        if not changed:
            return None
        trigger.problem = stored
        return _record_fire(trigger, TriggerFire.Outcome.ERROR, problem, now)


def _record_fire(trigger: Trigger, outcome: str, detail: str, now: datetime) -> TriggerFire:
    """A fire that stands for no schedule slot (an error, a skipped file), logged and saved."""
    log.warning(f"trigger {trigger.pk} ({trigger.name}): {detail}", trigger_id=trigger.pk)
    fire = TriggerFire(
        trigger=trigger, due_at=now, fired_at=now, outcome=outcome, detail=detail, host=_host()
    )
    return _save_fire(fire, unique_slot=False)


# -- bookkeeping --------------------------------------------------------------


def _host() -> str:
    return socket.gethostname()[:255]


def _record_tick(now: datetime, report: TickReport) -> None:
    fields = {
        "pid": os.getpid(),
        "last_tick_at": now,
        "last_duration_ms": report.duration_ms,
        "fired": len(report.fires),
    }
    if SchedulerTick.objects.filter(host=_host()).update(**fields):
        return
    try:
        with transaction.atomic():
            SchedulerTick.objects.create(host=_host(), **fields)
    except IntegrityError:  # a concurrent tick on this host created it first
        SchedulerTick.objects.filter(host=_host()).update(**fields)
