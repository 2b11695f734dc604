"""Small helpers shared by the management commands."""

from __future__ import annotations

import json
import math
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any

from django.core.management.base import CommandError

from rpa_monitor.lib.limits import params_problem
from rpa_monitor.lib.text import is_storable

if TYPE_CHECKING:
    from chains.models import WorkflowRun


def parse_params(text: str) -> dict[str, Any]:
    """--params as a JSON object every database stores (RPA_PARAMS of the runs)."""
    try:
        params = json.loads(text, parse_constant=_not_json, parse_float=_finite)
    except (ValueError, RecursionError) as exc:  # RecursionError: arrays nested thousands deep
        raise CommandError(f"--params is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(params, dict):
        raise CommandError("--params must be a JSON object")
    if not is_storable(params):
        raise CommandError("--params must not contain NUL characters or invalid Unicode (lone surrogates)")
    problem = params_problem(params)  # too deep, or too big for the bot's environment
    if problem:
        raise CommandError(f"--params: {problem}")
    return params


def _not_json(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: PostgreSQL's jsonb refuses the infinity it becomes
        raise ValueError(f"{text} is out of range")
    return value


def shown(value: str, limit: int = 100) -> str:
    """A command-line value fit for a one-line message: escaped when it holds control
    characters, NUL or undecodable bytes, and cut short."""
    text = value if value and is_storable(value) and value.isprintable() else ascii(value)
    return text if len(text) <= limit else f"{text[:limit]}…"


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
