"""Demo python workflows: called as function(ctx) in a supervised child process."""

from __future__ import annotations

import time
from typing import Any


def daily_report(ctx: Any) -> dict[str, int]:
    """Build a pretend report, logging progress as it goes."""
    sections = ["sales", "returns", "inventory", "staffing"]
    for done, section in enumerate(sections, start=1):
        ctx.log(f"building section {section}", node_id=section)
        ctx.progress(done, len(sections))
        time.sleep(0.5)
    ctx.log("report ready", node_id="publish", sections=len(sections))
    return {"sections": len(sections)}


def flaky_check(ctx: Any) -> None:
    """Raises, to show how a python failure looks (the traceback becomes the error)."""
    ctx.log.warning("checking upstream system", node_id="probe")
    raise ConnectionError("upstream system did not answer")


def slow_logger(ctx: Any) -> None:
    """Logs through logs.get_logger (batched, flushed at exit) and then works too long."""
    from logs import get_logger

    log = get_logger("slow_logger")
    for n in range(int(ctx.params.get("lines", 5))):
        log.info(f"progress note {n}", workflow_id=ctx.workflow_id, n=n)
    time.sleep(float(ctx.params.get("sleep", 60)))
