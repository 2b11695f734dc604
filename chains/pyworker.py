"""Child-process entry point of `python` workflows: `python -m chains.pyworker pkg.mod:func`.

The function is called as `function(ctx)`. Everything it reports travels to
the supervising runner as JSON lines on stdout (the same protocol command
bots use), so python workflows get the same isolation, timeout kill and log
capture as commands. An exception prints its traceback as an ERROR entry and
exits 1, which fails the run with that traceback.

Unlike a `command` bot, whose environment is an allow-list, this child keeps
the worker's environment (see `chains.executors.build_env`): the function is
the deployment's own code, and Django needs its settings and database here.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import traceback
from types import FrameType
from typing import Any

_write_lock = threading.Lock()


def _emit(obj: dict[str, Any]) -> None:
    line = json.dumps(obj, default=str)
    with _write_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class RunLog:
    """`ctx.log("message", level="INFO", node_id=None, **metadata)`, or ctx.log.info(...)."""

    def __call__(
        self, message: str, level: str = "INFO", node_id: str | None = None, **metadata: Any
    ) -> None:
        _emit({**metadata, "level": level, "message": str(message), "node_id": node_id or ""})

    def debug(self, message: str, node_id: str | None = None, **metadata: Any) -> None:
        self(message, "DEBUG", node_id, **metadata)

    def info(self, message: str, node_id: str | None = None, **metadata: Any) -> None:
        self(message, "INFO", node_id, **metadata)

    def warning(self, message: str, node_id: str | None = None, **metadata: Any) -> None:
        self(message, "WARNING", node_id, **metadata)

    def error(self, message: str, node_id: str | None = None, **metadata: Any) -> None:
        self(message, "ERROR", node_id, **metadata)


class Context:
    """What a python workflow gets: its run's identity, params, a logger, progress."""

    def __init__(self, environ: dict[str, str]) -> None:
        self.run_id = int(environ.get("RPA_RUN_ID") or 0)
        self.workflow_id = environ.get("RPA_WORKFLOW_ID", "")
        self.chain_id = environ.get("RPA_CHAIN_ID", "")
        self.attempt = int(environ.get("RPA_ATTEMPT") or 1)
        self.params: dict[str, Any] = json.loads(environ.get("RPA_PARAMS") or "{}")
        self.log = RunLog()

    def progress(self, done: int, total: int) -> None:
        _emit({"progress": [int(done), int(total)]})


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # A timeout or a cancel sends SIGTERM: exit through SystemExit so atexit runs and
    # whatever the function logged through logs.get_logger is flushed, not lost.
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m chains.pyworker package.module:function", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    _setup_django()
    from rpa_monitor.lib.callables import CallableError, resolve_callable

    try:
        function = resolve_callable(argv[0])
    except CallableError as exc:
        _emit({"level": "ERROR", "message": str(exc), "component": "runner"})
        return 2
    try:
        result = function(Context(dict(os.environ)))
    except BaseException as exc:
        if isinstance(exc, SystemExit) and exc.code in (None, 0):
            return 0
        _emit(
            {
                "level": "ERROR",
                "message": traceback.format_exc().rstrip(),
                "exception": type(exc).__name__,
            }
        )
        return exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 1
    if result is not None:
        _emit({"level": "INFO", "message": f"returned {result!r}"[:2000], "result": result})
    return 0


def _setup_django() -> None:
    # Callables may use the ORM and logs.get_logger; give them a configured Django.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rpa_monitor.settings")
    import django

    django.setup()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
