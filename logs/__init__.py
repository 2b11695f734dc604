"""Structured logs: `get_logger(component)` is the way components log into LogEntry."""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["RPALogger", "get_logger"]

_loggers: dict[str, RPALogger] = {}


class RPALogger:
    """A component's logger: `log.info("msg", workflow_id="bot", node_id="step1", rows=3)`.

    Keyword arguments other than workflow_id, node_id and run_id are kept as
    the entry's metadata (any name, `level` and `message` included: the first
    parameters are positional-only).
    """

    def __init__(self, component: str) -> None:
        if not isinstance(component, str) or not component:
            raise ValueError(f"a log component must be a non-empty string, got {component!r}")
        self.component = component
        # Dots would make a logging hierarchy (a leading dot even escapes "rpa"):
        # one flat logger per component; the component itself travels in `extra`.
        self.logger = logging.getLogger("rpa." + component.replace(".", "_"))

    def log(
        self,
        level: int,
        message: str,
        /,
        workflow_id: str | None = None,
        node_id: str | None = None,
        run_id: int | None = None,
        **metadata: Any,
    ) -> None:
        self._emit(level, message, workflow_id, node_id, run_id, metadata)

    def debug(self, message: str, /, workflow_id: str | None = None, node_id: str | None = None,
              run_id: int | None = None, **metadata: Any) -> None:  # fmt: skip
        self._emit(logging.DEBUG, message, workflow_id, node_id, run_id, metadata)

    def info(self, message: str, /, workflow_id: str | None = None, node_id: str | None = None,
             run_id: int | None = None, **metadata: Any) -> None:  # fmt: skip
        self._emit(logging.INFO, message, workflow_id, node_id, run_id, metadata)

    def warning(self, message: str, /, workflow_id: str | None = None, node_id: str | None = None,
                run_id: int | None = None, **metadata: Any) -> None:  # fmt: skip
        self._emit(logging.WARNING, message, workflow_id, node_id, run_id, metadata)

    def error(self, message: str, /, workflow_id: str | None = None, node_id: str | None = None,
              run_id: int | None = None, **metadata: Any) -> None:  # fmt: skip
        self._emit(logging.ERROR, message, workflow_id, node_id, run_id, metadata)

    def critical(self, message: str, /, workflow_id: str | None = None, node_id: str | None = None,
                 run_id: int | None = None, **metadata: Any) -> None:  # fmt: skip
        self._emit(logging.CRITICAL, message, workflow_id, node_id, run_id, metadata)

    def exception(self, message: str, /, workflow_id: str | None = None, node_id: str | None = None,
                  run_id: int | None = None, **metadata: Any) -> None:  # fmt: skip
        """An ERROR entry that keeps the current exception's traceback in metadata."""
        self._emit(logging.ERROR, message, workflow_id, node_id, run_id, metadata, exc_info=True)

    def _emit(
        self,
        level: int,
        message: str,
        workflow_id: str | None,
        node_id: str | None,
        run_id: int | None,
        metadata: dict[str, Any],
        exc_info: bool = False,
    ) -> None:
        extra = {
            "component": self.component,
            "workflow_id": workflow_id or "",
            "node_id": node_id or "",
            "run_id": run_id,
            "metadata": metadata,
        }
        # stacklevel: the record points at the caller, not at this module.
        self.logger.log(level, message, extra=extra, exc_info=exc_info, stacklevel=3)


def get_logger(component: str) -> RPALogger:
    """The logger for `component` (one instance per component)."""
    if component not in _loggers:
        _loggers[component] = RPALogger(component)
    return _loggers[component]
