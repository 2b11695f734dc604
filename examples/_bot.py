"""Tiny helpers the demo bots share: structured JSON-line logging and progress."""

from __future__ import annotations

import json
import os
import sys
import time


def log(message: str, level: str = "INFO", node_id: str = "", **metadata: object) -> None:
    print(json.dumps({"level": level, "message": message, "node_id": node_id, **metadata}), flush=True)


def progress(done: int, total: int) -> None:
    print(json.dumps({"progress": [done, total]}), flush=True)


def work(steps: list[str], seconds: float) -> None:
    """Pretend to do `steps`, spread over `seconds` (RPA_DEMO_SPEED scales it)."""
    pause = seconds * float(os.environ.get("RPA_DEMO_SPEED", "1")) / max(len(steps), 1)
    for done, step in enumerate(steps, start=1):
        log(f"{step}", node_id=step.split()[0].lower())
        progress(done, len(steps))
        time.sleep(pause)


def params() -> dict[str, object]:
    return json.loads(os.environ.get("RPA_PARAMS") or "{}")


def fail(message: str, code: int = 1) -> None:
    log(message, level="ERROR", node_id="error")
    print(f"Error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)
