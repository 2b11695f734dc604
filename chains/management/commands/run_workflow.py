from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chains.models import SLUG_RE, RunStatus, Workflow
from chains.runner import run_workflow
from rpa_monitor.errors import WorkflowNotFoundError
from rpa_monitor.lib.cli import describe_run, parse_params, shown, sigterm_raises


class Command(BaseCommand):
    help = "Run one workflow in the foreground (with its retries); exit 0 on success, 1 on failure."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("workflow_id", help="the workflow's slug")
        parser.add_argument("--params", default="{}", help="JSON object passed as RPA_PARAMS")

    def handle(self, *args: Any, workflow_id: str, params: str, **options: Any) -> str:
        try:
            # Only a well-formed slug can exist (see run_chain).
            workflow = Workflow.objects.get(slug=workflow_id) if SLUG_RE.match(workflow_id) else None
        except Workflow.DoesNotExist:
            workflow = None
        if workflow is None:
            raise CommandError(WorkflowNotFoundError([shown(workflow_id)], "workflow_id").message)
        with sigterm_raises():
            run = run_workflow(workflow, params=parse_params(params))
        if run.status != RunStatus.SUCCESS:
            raise CommandError(describe_run(run), returncode=1)
        return describe_run(run)
