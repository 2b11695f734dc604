"""Structured logs: `get_logger(component)` is the way components log into LogEntry."""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["RPALogger", "get_logger"]

_loggers: dict[str, RPALogger] = {}


class RPALogger:
    """A component's logger: `log.info("msg", workflow_id="bot", node_id="step1", rows=3)`.

    Keyword arguments other than workflow_id, node_id and run_id are kept as the
    entry's metadata.
    """

    def __init__(self, component: str) -> None:
        self.component = component
        self.logger = logging.getLogger(f"rpa.{component}")

    def log(
        self,
        level: int,
        message: str,
        workflow_id: str | None = None,
        node_id: str | None = None,
        run_id: int | None = None,
        exc_info: Any = None,
        **metadata: Any,
    ) -> None:
        extra = {
            "component": self.component,
            "workflow_id": workflow_id or "",
            "node_id": node_id or "",
            "run_id": run_id,
            "metadata": metadata,
        }
        self.logger.log(level, message, extra=extra, exc_info=exc_info)

    def debug(
        self,
        message: str,
        workflow_id: str | None = None,
        node_id: str | None = None,
        **metadata: Any,
    ) -> None:
        self.log(logging.DEBUG, message, workflow_id, node_id, **metadata)

    def info(
        self,
        message: str,
        workflow_id: str | None = None,
        node_id: str | None = None,
        **metadata: Any,
    ) -> None:
        self.log(logging.INFO, message, workflow_id, node_id, **metadata)

    def warning(
        self,
        message: str,
        workflow_id: str | None = None,
        node_id: str | None = None,
        **metadata: Any,
    ) -> None:
        self.log(logging.WARNING, message, workflow_id, node_id, **metadata)

    def error(
        self,
        message: str,
        workflow_id: str | None = None,
        node_id: str | None = None,
        **metadata: Any,
    ) -> None:
        self.log(logging.ERROR, message, workflow_id, node_id, **metadata)

    def critical(
        self,
        message: str,
        workflow_id: str | None = None,
        node_id: str | None = None,
        **metadata: Any,
    ) -> None:
        self.log(logging.CRITICAL, message, workflow_id, node_id, **metadata)

    def exception(
        self,
        message: str,
        workflow_id: str | None = None,
        node_id: str | None = None,
        **metadata: Any,
    ) -> None:
        self.log(logging.ERROR, message, workflow_id, node_id, exc_info=True, **metadata)


def get_logger(component: str) -> RPALogger:
    """The logger for `component` (one instance per component)."""
    if component not in _loggers:
        _loggers[component] = RPALogger(component)
    return _loggers[component]
