"""Small helpers shared by the management commands."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any

from django.core.management.base import CommandError

if TYPE_CHECKING:
    from chains.models import WorkflowRun


def parse_params(text: str) -> dict[str, Any]:
    try:
        params = json.loads(text)
    except ValueError as exc:
        raise CommandError(f"--params is not valid JSON: {exc}") from None
    if not isinstance(params, dict):
        raise CommandError("--params must be a JSON object")
    return params


def describe_run(run: WorkflowRun) -> str:
    """`login run 12 success in 1.20s (exit 0)`, plus the first error line if any."""
    seconds = run.duration.total_seconds() if run.duration else 0.0
    text = f"{run.workflow.slug} run {run.pk} {run.status} in {seconds:.2f}s (exit {run.exit_code})"
    if run.attempt > 1:
        text += f" attempt {run.attempt}"
    if run.error:
        text += f": {run.error.strip().splitlines()[-1][:300]}"
    return text


class Terminated(SystemExit):
    """Raised in the main thread when the process gets SIGTERM."""


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into an exception so a foreground run cleans up (kills its
    bot, stores its logs, records the run as cancelled) instead of dying silently."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
