from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chains.models import SLUG_RE, Chain, ChainStep, RunStatus, WorkflowRun
from chains.runner import run_chain
from rpa_monitor.errors import ChainExecutionError, ChainNotFoundError
from rpa_monitor.lib.cli import describe_run, parse_params, shown, sigterm_raises


class Command(BaseCommand):
    help = "Run a chain in the foreground; exit 0 when every step succeeded, 1 at the first failure."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("chain_id", help="the chain's slug")
        parser.add_argument("--params", default="{}", help="JSON object passed to every step as RPA_PARAMS")

    def handle(self, *args: Any, chain_id: str, params: str, **options: Any) -> str:
        try:
            # Only a well-formed slug can exist: undecodable bytes (lone surrogates) or a
            # NUL would make the database driver raise instead of finding nothing.
            chain = Chain.objects.get(slug=chain_id) if SLUG_RE.match(chain_id) else None
        except Chain.DoesNotExist:
            chain = None
        if chain is None:
            raise CommandError(ChainNotFoundError(shown(chain_id)).message)
        try:
            with sigterm_raises():
                chain_run = run_chain(chain, params=parse_params(params), on_step=self._report_step)
        except ChainExecutionError as exc:
            raise CommandError(exc.message) from None
        seconds = chain_run.duration.total_seconds() if chain_run.duration else 0.0
        if chain_run.status != RunStatus.SUCCESS:
            raise CommandError(
                f"chain {chain.slug} run {chain_run.pk} {chain_run.status} at step {chain_run.failed_step}: "
                f"{chain_run.error.splitlines()[0] if chain_run.error else ''}",
                returncode=1,
            )
        return (
            f"chain {chain.slug} run {chain_run.pk} success: {chain_run.total_steps} steps in {seconds:.2f}s"
        )

    def _report_step(self, step: ChainStep, run: WorkflowRun) -> None:
        self.stdout.write(f"step {step.position} {describe_run(run)}")
        self.stdout.flush()
