"""Background tasks (Django's Tasks API): what admin actions and the API enqueue."""

from __future__ import annotations

from django_tasks import task

from chains.models import ChainRun, WorkflowRun


@task()
def execute_chain_run(chain_run_id: int) -> str:
    from chains.runner import run_chain

    chain_run = ChainRun.objects.select_related("chain", "requested_by").get(pk=chain_run_id)
    chain_run = run_chain(chain_run.chain, chain_run=chain_run)
    return chain_run.status


@task()
def execute_workflow_run(workflow_run_id: int) -> str:
    from chains.runner import run_workflow

    run = WorkflowRun.objects.select_related("workflow").get(pk=workflow_run_id)
    run = run_workflow(run.workflow, params=run.params, requested_by=run.requested_by, run=run)
    return run.status
