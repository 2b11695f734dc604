"""Background tasks (Django's Tasks API): what admin actions, the API and triggers enqueue.

A queued run and its task are one unit:

* with the database backend (django-tasks-db, the default) the task row is written in
  the transaction that creates the run (and the trigger fire that asked for it), so a
  process killed at any point leaves all of them or none;
* a backend outside the database (RQ) can only be called once that transaction has
  committed; a crash in between leaves a queued run with no task. Every scheduler tick
  repairs that (`requeue_lost_runs`): a queued run whose task is missing, finished or
  failed in the backend is enqueued again once, then abandoned with the reason.

A run the reaper abandons (its worker died) also finishes its task row
(`release_abandoned_tasks`), which django-tasks-db would otherwise show RUNNING forever.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django_tasks import task
from django_tasks.base import Task, TaskResultStatus
from django_tasks.exceptions import TaskResultDoesNotExist
from django_tasks_db.backend import DatabaseBackend
from django_tasks_db.models import DBTaskResult

from chains.models import ChainRun, RunStatus, WorkflowRun
from logs import get_logger

log = get_logger("runner")

Run = WorkflowRun | ChainRun
FINISHED_TASK = (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED)
SWEEP_PAGE = 500


class TaskAbandoned(Exception):
    """What a released task row failed with: its run was abandoned (its worker died)."""


@task()
def execute_chain_run(chain_run_id: int) -> str:
    from chains.runner import run_chain

    chain_run = ChainRun.objects.select_related("chain", "requested_by").get(pk=chain_run_id)
    if chain_run.status != RunStatus.QUEUED:
        return chain_run.status  # a second task for it (enqueued again): it ran, or was cancelled
    chain_run = run_chain(chain_run.chain, chain_run=chain_run)
    return chain_run.status


@task()
def execute_workflow_run(workflow_run_id: int) -> str:
    from chains.runner import run_workflow

    run = WorkflowRun.objects.select_related("workflow").get(pk=workflow_run_id)
    if run.status != RunStatus.QUEUED:
        return run.status  # never start the bot of a run that already ran
    run = run_workflow(run.workflow, params=run.params, requested_by=run.requested_by, run=run)
    return run.status


def task_of(run: Run) -> Task[[int], str]:
    return execute_chain_run if isinstance(run, ChainRun) else execute_workflow_run


def in_database(run_task: Task[[int], str]) -> bool:
    """Does this task's backend store tasks in our database (so in our transactions)?"""
    return isinstance(run_task.get_backend(), DatabaseBackend)


def enqueue_run(run: Run) -> None:
    """Hand a queued run to its task, recording the task's id on the run.

    Call inside the transaction that created the run: with the database backend the
    task row commits (or rolls back) with it; another backend is called on commit.
    """
    run_task = task_of(run)
    if in_database(run_task):
        _record_task(run, str(run_task.enqueue(run.pk).id))
    else:
        # robust: a backend that is down must not undo the committed fire; the tick's sweep enqueues it.
        transaction.on_commit(lambda: _record_task(run, str(run_task.enqueue(run.pk).id)), robust=True)


def _record_task(run: Run, task_id: str) -> None:
    type(run).objects.filter(pk=run.pk).update(task_id=task_id)
    run.task_id = task_id


# -- repairs (each scheduler tick) ---------------------------------------------------------------


def requeue_lost_runs(now: datetime, grace_seconds: int) -> list[Run]:
    """Queued runs whose task the backend lost: enqueue each again once, then abandon it.

    Only runs queued (or enqueued again) longer than `grace_seconds` are looked at,
    so a task that a backend outside the database receives on commit is never taken
    for lost. Costs O(queued runs): the status indexes find them.
    """
    cutoff = now - timedelta(seconds=grace_seconds)
    old_enough = Q(status=RunStatus.QUEUED, created_at__lt=cutoff) & ~Q(task_requeued_at__gte=cutoff)
    repaired: list[Run] = []
    # Steps of a chain run have no task of their own: the chain run's task runs them.
    workflow_runs = WorkflowRun.objects.filter(old_enough, chain_run__isnull=True).select_related("workflow")
    for queued in (workflow_runs, ChainRun.objects.filter(old_enough).select_related("chain")):
        for runs in _pages(queued):
            for run, reason in _lost_tasks(runs).items():
                if _repair(run, reason, now):
                    repaired.append(run)
    return repaired


def _pages(queued: QuerySet[Any]) -> Iterator[list[Run]]:
    """In pages by id: a backlog of queued runs is never loaded (or asked about) at once."""
    last_pk = 0
    while runs := list(queued.filter(pk__gt=last_pk).order_by("pk")[:SWEEP_PAGE]):
        last_pk = runs[-1].pk
        yield runs


def _lost_tasks(runs: Sequence[Run]) -> dict[Run, str]:
    """{run: why its task is lost} for those of `runs` whose task will never run them."""
    if not runs:
        return {}
    run_task = task_of(runs[0])
    if in_database(run_task):
        return _lost_in_database(run_task, runs)
    lost = {}
    for run in runs:
        reason = _lost_elsewhere(run_task, run)
        if reason:
            lost[run] = reason
    return lost


def _lost_in_database(run_task: Task[[int], str], runs: Sequence[Run]) -> dict[Run, str]:
    ids = {run: _uuid(run.task_id) for run in runs}
    statuses = dict(
        DBTaskResult.objects.filter(id__in=[i for i in ids.values() if i]).values_list("id", "status")
    )
    lost = {}
    for run, task_id in ids.items():
        if task_id is None:
            # Queued before tasks were recorded on runs: adopt its task if there is one.
            found = _find_task_row(run_task, run)
            if found is None:
                lost[run] = "no task was ever enqueued for it"
                continue
            task_id, statuses[task_id] = found
            _record_task(run, str(task_id))
        status = statuses.get(task_id)
        if status is None:
            lost[run] = f"its task {task_id} is missing from the task backend"
        elif status in FINISHED_TASK:
            lost[run] = f"its task {task_id} ended ({status}) without running it"
    return lost


def _find_task_row(run_task: Task[[int], str], run: Run) -> tuple[uuid.UUID, str] | None:
    """(id, status) of the newest task row for `run`, if there is one."""
    rows = DBTaskResult.objects.filter(task_path=run_task.module_path, args_kwargs__args__0=run.pk)
    return rows.order_by("-enqueued_at").values_list("id", "status").first()


def _lost_elsewhere(run_task: Task[[int], str], run: Run) -> str:
    if not run.task_id:
        return "no task was ever enqueued for it"
    try:
        status = run_task.get_backend().get_result(run.task_id).status
    except TaskResultDoesNotExist:
        return f"its task {run.task_id} is missing from the task backend"
    except NotImplementedError:
        return ""  # a backend that cannot tell: nothing to repair from here
    return f"its task {run.task_id} ended ({status}) without running it" if status in FINISHED_TASK else ""


def _repair(run: Run, reason: str, now: datetime) -> bool:
    what = f"{type(run).__name__} {run.pk}"
    if run.task_requeued_at is None:
        with transaction.atomic():
            # Claimed by a compare-and-set, so concurrent ticks enqueue it again once in all.
            claimed = type(run).objects.filter(
                pk=run.pk, status=RunStatus.QUEUED, task_requeued_at__isnull=True
            )
            if not claimed.update(task_requeued_at=now):
                return False
            run.task_requeued_at = now
            enqueue_run(run)
        log.warning(f"{what} was queued but {reason}: enqueued again (once)", **_log_fields(run))
        return True
    error = (
        f"abandoned: queued, but {reason}; it had been enqueued again once, at "
        f"{run.task_requeued_at:%Y-%m-%d %H:%M:%S}Z, for a task lost before"
    )
    if not run.finish(RunStatus.ABANDONED, error=error):
        return False
    log.error(f"{what} {error}", **_log_fields(run))
    return True


def _log_fields(run: Run) -> dict[str, Any]:
    if isinstance(run, ChainRun):
        return {"chain_id": run.chain.slug, "chain_run_id": run.pk}
    return {"workflow_id": run.workflow.slug, "run_id": run.pk}


def release_abandoned_tasks(since: datetime) -> int:
    """Finish the task rows of runs abandoned since `since` (their worker died mid-task).

    django-tasks-db only: other backends track their own dead workers (RQ moves their
    jobs to its failed registry). Idempotent, so a window wider than one tick is safe.
    """
    if not in_database(execute_workflow_run):
        return 0
    abandoned = WorkflowRun.objects.filter(status=RunStatus.ABANDONED, finished_at__gte=since)
    task_ids = {
        *abandoned.values_list("task_id", flat=True),
        *abandoned.filter(chain_run__isnull=False).values_list("chain_run__task_id", flat=True),
        *ChainRun.objects.filter(status=RunStatus.ABANDONED, finished_at__gte=since).values_list(
            "task_id", flat=True
        ),
    }
    ids = [task_id for task_id in map(_uuid, task_ids) if task_id is not None]
    return DBTaskResult.objects.filter(id__in=ids, status=TaskResultStatus.RUNNING).update(
        status=TaskResultStatus.FAILED,
        finished_at=timezone.now(),
        exception_class_path=f"{TaskAbandoned.__module__}.{TaskAbandoned.__qualname__}",
        traceback="TaskAbandoned: the run was abandoned: its worker stopped renewing the heartbeat (reaped)",
        return_value=None,
    )


def _uuid(task_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(task_id) if task_id else None
    except ValueError:
        return None
