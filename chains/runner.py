"""Running workflows and chains, in the foreground or through the task queue."""

from __future__ import annotations

import signal
import socket
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction

from chains.executors import execute, kill_orphaned_bot, store_spool_rest
from chains.models import (
    Chain,
    ChainRun,
    ChainStep,
    RunStatus,
    Workflow,
    WorkflowRun,
)
from chains.tasks import enqueue_run, release_abandoned_tasks
from logs import get_logger
from rpa_monitor.errors import ChainExecutionError

if TYPE_CHECKING:
    from triggers.models import Trigger

log = get_logger("runner")

StepCallback = Callable[[ChainStep, WorkflowRun], None]
User = AbstractBaseUser | AnonymousUser | None


def run_workflow(
    workflow: Workflow,
    *,
    params: dict[str, Any] | None = None,
    chain_run: ChainRun | None = None,
    position: int | None = None,
    requested_by: User = None,
    run: WorkflowRun | None = None,
) -> WorkflowRun:
    """Run `workflow` to completion, retrying up to `max_retries` times.

    Each attempt is its own WorkflowRun row; the last one is returned. `run`
    is a queued run created earlier (by `enqueue_workflow`), used as attempt 1.
    """
    chain_slug = chain_run.chain.slug if chain_run else ""
    attempts = workflow.max_retries + 1
    first_attempt = run.attempt if run else 1
    previous: WorkflowRun | None = None
    for attempt in range(first_attempt, attempts + 1):
        if run is None:
            run = WorkflowRun.objects.create(
                workflow=workflow,
                chain_run=chain_run,
                position=position,
                attempt=attempt,
                params=params or {},
                requested_by=real_user(requested_by),
                # A retry runs inside its first attempt's task and for its trigger: the reaper
                # releases that task when the retry dies, and overlap `skip` sees the retry.
                task_id=previous.task_id if previous else "",
                trigger_id=previous.trigger_id if previous else None,
            )
        run.workflow = workflow
        if not workflow.enabled:
            run.finish(RunStatus.FAILURE, error=f"workflow {workflow.slug} is disabled")
            return run
        outcome = execute(run, chain_slug)
        _log_attempt(run, attempts)
        if outcome.status not in (RunStatus.FAILURE, RunStatus.TIMEOUT) or attempt == attempts:
            return run
        if workflow.retry_delay_seconds:
            _wait_keeping_lease(chain_run, workflow.retry_delay_seconds)
        previous, run = run, None
    assert run is not None
    return run


def _wait_keeping_lease(chain_run: ChainRun | None, seconds: float) -> None:
    """Sleep before a retry while renewing the chain run's heartbeat (so it is not reaped)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if chain_run is not None:
            chain_run.heartbeat()
        time.sleep(min(left, settings.RPA_HEARTBEAT_SECONDS))


def _log_attempt(run: WorkflowRun, attempts: int) -> None:
    seconds = run.duration.total_seconds() if run.duration else 0.0
    level_method = log.info if run.status == RunStatus.SUCCESS else log.warning
    level_method(
        f"{run.workflow.slug} attempt {run.attempt}/{attempts}: {run.status} in {seconds:.2f}s",
        workflow_id=run.workflow.slug,
        run_id=run.pk,
        status=run.status,
        exit_code=run.exit_code,
    )


def run_chain(
    chain: Chain,
    *,
    chain_run: ChainRun | None = None,
    params: dict[str, Any] | None = None,
    requested_by: User = None,
    on_step: StepCallback | None = None,
) -> ChainRun:
    """Run the chain's steps in order, stopping at the first step that does not succeed.

    The failing step's position is recorded as the failure point; later steps
    are not started. Whatever happens, the chain run is left finished.
    """
    steps = _steps_of(chain)
    if chain_run is None:
        chain_run = create_chain_run(chain, params=params, requested_by=requested_by, total_steps=len(steps))
    steps = [step for step in steps if step.position >= chain_run.start_position]
    if not chain.enabled:
        chain_run.finish(RunStatus.FAILURE, error=f"chain {chain.slug} is disabled")
        return chain_run
    if not chain_run.start():
        return chain_run  # cancelled before it started
    try:
        _run_steps(chain_run, steps, on_step)
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt | SystemExit)
        status = RunStatus.CANCELLED if interrupted else RunStatus.FAILURE
        chain_run.finish(
            status,
            error=f"runner {'interrupted' if interrupted else 'error'}: {exc!r}\n{traceback.format_exc()}",
        )
        log.error(
            f"chain {chain.slug} run {chain_run.pk} crashed: {exc}",
            workflow_id="",
            chain_id=chain.slug,
        )
        raise
    return chain_run


def _steps_of(chain: Chain) -> list[ChainStep]:
    steps = list(chain.steps.select_related("workflow").order_by("position"))
    if not steps:
        raise ChainExecutionError(f"chain {chain.slug} has no steps")
    return steps


def _run_steps(chain_run: ChainRun, steps: list[ChainStep], on_step: StepCallback | None) -> None:
    for step in steps:
        if not chain_run.heartbeat():
            return  # cancelled (or reaped) between steps: start nothing more
        run = run_workflow(
            step.workflow,
            params=chain_run.params,
            chain_run=chain_run,
            position=step.position,
            requested_by=chain_run.requested_by,
        )
        if on_step is not None:
            on_step(step, run)
        if run.status != RunStatus.SUCCESS:
            status = RunStatus.CANCELLED if run.status == RunStatus.CANCELLED else RunStatus.FAILURE
            error = f"step {step.position} ({step.workflow.slug}) {run.status}"
            chain_run.finish(
                status,
                failed_step=step.position,
                error=f"{error}: {run.error}" if run.error else error,
            )
            return
    chain_run.finish(RunStatus.SUCCESS)


def create_chain_run(
    chain: Chain,
    *,
    params: dict[str, Any] | None = None,
    requested_by: User = None,
    total_steps: int | None = None,
    trigger: Trigger | None = None,
) -> ChainRun:
    if total_steps is None:
        total_steps = len(_steps_of(chain))
    return ChainRun.objects.create(
        chain=chain,
        params=params or {},
        requested_by=real_user(requested_by),
        total_steps=total_steps,
        trigger=trigger,
    )


def enqueue_chain(
    chain: Chain,
    *,
    params: dict[str, Any] | None = None,
    requested_by: User = None,
    trigger: Trigger | None = None,
) -> ChainRun:
    """Create a queued chain run and its task, as one unit (chains.tasks.enqueue_run)."""
    with transaction.atomic():
        chain_run = create_chain_run(chain, params=params, requested_by=requested_by, trigger=trigger)
        enqueue_run(chain_run)
    return chain_run


def enqueue_workflow(
    workflow: Workflow,
    *,
    params: dict[str, Any] | None = None,
    requested_by: User = None,
    trigger: Trigger | None = None,
) -> WorkflowRun:
    """Create a queued workflow run and its task, as one unit (chains.tasks.enqueue_run)."""
    with transaction.atomic():
        run = WorkflowRun.objects.create(
            workflow=workflow, params=params or {}, requested_by=real_user(requested_by), trigger=trigger
        )
        enqueue_run(run)
    return run


def cancel_run(run: WorkflowRun | ChainRun, reason: str) -> bool:
    """Cancel a queued or running run; False when it had already finished.

    A running bot on this host gets SIGTERM at once; its runner (wherever it
    is) sees the run cancelled at its next heartbeat and escalates to SIGKILL
    after RPA_KILL_GRACE_SECONDS. A chain run's active step is cancelled too,
    and no later step starts.
    """
    if isinstance(run, ChainRun):
        cancelled = run.finish(RunStatus.CANCELLED, error=reason)
        for step_run in run.workflow_runs.active():
            cancel_run(step_run, reason)
        return cancelled
    was_running = run.status == RunStatus.RUNNING
    if not run.finish(RunStatus.CANCELLED, exit_code=run.exit_code, error=reason):
        return False
    if was_running:
        kill_orphaned_bot(run, signal.SIGTERM)
    log.warning(
        f"{run.workflow.slug} run {run.pk} cancelled: {reason}", workflow_id=run.workflow.slug, run_id=run.pk
    )
    return True


def resume_chain_run(chain_run: ChainRun, *, requested_by: User = None) -> ChainRun:
    """Queue a new chain run that starts at `chain_run`'s failure point (linked to it)."""
    if not chain_run.can_resume:
        raise ChainExecutionError(
            f"chain run {chain_run.pk} is {chain_run.status}; only a failed or cancelled run with a "
            "failure point can be resumed"
        )
    with transaction.atomic():  # the run and its task as one unit, as in enqueue_chain
        resumed = ChainRun.objects.create(
            chain=chain_run.chain,
            params=chain_run.params,
            requested_by=real_user(requested_by),
            total_steps=chain_run.total_steps,
            start_position=chain_run.failed_step or 1,
            resumed_from=chain_run,
        )
        enqueue_run(resumed)
    return resumed


def reap_stale_runs(now: datetime, lease_seconds: int) -> list[WorkflowRun]:
    """Mark running runs whose heartbeat is older than the lease as abandoned.

    Their worker died (kill -9, a crashed host): without this they would stay
    "running" forever. On the run's host, its orphaned bot is killed and what
    its runner had not stored of the spool is stored first, so the run ends
    with every line. The chain run fails at that step. Uses the partial index
    on running runs' heartbeat_at, so it costs O(running), not O(history).
    """
    cutoff = now - timedelta(seconds=lease_seconds)
    stale = WorkflowRun.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=cutoff)
    reaped = []
    for run in stale.select_related("workflow", "chain_run"):
        killed = kill_orphaned_bot(run)
        stored = store_spool_rest(run)
        error = (
            f"abandoned: no heartbeat since {run.heartbeat_at:%Y-%m-%d %H:%M:%S}Z "
            f"(lease {lease_seconds}s); last seen on host {run.host or '?'} pid {run.pid} "
            f"(runner pid {run.worker_pid})"
        )
        if not run.finish(RunStatus.ABANDONED, error=error):
            continue  # it finished (or was reaped by another host) meanwhile
        reaped.append(run)
        log.error(
            f"{error}; {'killed its orphaned process group' if killed else 'no local process to kill'}"
            f"; stored {stored} spooled line(s) its runner had not",
            workflow_id=run.workflow.slug, run_id=run.pk, host=run.host, pid=run.pid,
        )  # fmt: skip
        if run.chain_run is not None:
            step = f"step {run.position} ({run.workflow.slug}) abandoned"
            run.chain_run.finish(RunStatus.FAILURE, failed_step=run.position, error=f"{step}: {error}")
    _reap_stale_chain_runs(cutoff, lease_seconds)
    release_abandoned_tasks(since=cutoff)  # their task rows too (idempotent; the window covers a crash)
    _store_unread_spools(cutoff)
    return reaped


def _store_unread_spools(cutoff: datetime) -> None:
    """Finished runs of this host whose spool is still on disk: reaped from another host,
    cancelled while their runner was dead, or their runner died between finishing the run
    and removing the files. Finished before the cutoff, so no live runner still reads them."""
    for run in WorkflowRun.objects.with_unread_spool(socket.gethostname(), cutoff).select_related("workflow"):
        kill_orphaned_bot(run)
        store_spool_rest(run)


def _reap_stale_chain_runs(cutoff: datetime, lease_seconds: int) -> None:
    """Chain runs whose runner died between steps (or while waiting to retry) and left no
    running step for the reaper above to find: without this they, and a trigger's
    overlap policy, would wait for them forever."""
    stale = ChainRun.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=cutoff).select_related("chain")
    for chain_run in stale:
        done = chain_run.workflow_runs.order_by("-position").values_list("position", flat=True).first()
        error = (
            f"abandoned: the runner stopped renewing this chain run at "
            f"{chain_run.heartbeat_at:%Y-%m-%d %H:%M:%S}Z (lease {lease_seconds}s) "
            f"after step {done or 0} of {chain_run.total_steps}"
        )
        if chain_run.finish(RunStatus.ABANDONED, failed_step=done, error=error):
            log.error(error, chain_id=chain_run.chain.slug, chain_run_id=chain_run.pk)


def real_user(user: User) -> Any:
    """The user to record as requester: None for anonymous or missing."""
    return user if user is not None and getattr(user, "is_authenticated", False) else None
