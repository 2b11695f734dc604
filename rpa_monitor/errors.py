"""Named errors (DESIGN §10): each names the field and the offending value.

Views turn them into 4xx JSON, commands into CommandError, the admin into form errors.
"""

from __future__ import annotations

from collections.abc import Iterable


class RPAMonitorError(Exception):
    field: str = ""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if field is not None:
            self.field = field

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "error": self.message}


class ChainNotFoundError(RPAMonitorError):
    field = "chain"

    def __init__(self, chain_id: object) -> None:
        super().__init__(f"chain {chain_id!s} does not exist")
        self.chain_id = chain_id


class WorkflowNotFoundError(RPAMonitorError):
    field = "workflows"

    def __init__(self, slugs: Iterable[str], field: str | None = None) -> None:
        self.slugs = sorted(set(slugs))
        noun = "workflow" if len(self.slugs) == 1 else "workflows"
        super().__init__(f"unknown {noun}: {', '.join(self.slugs)}", field)


class ChainExecutionError(RPAMonitorError):
    field = "chain"


class TriggerNotFoundError(RPAMonitorError):
    field = "trigger"

    def __init__(self, trigger_id: object) -> None:
        super().__init__(f"trigger {trigger_id!s} does not exist")
        self.trigger_id = trigger_id


class InvalidTriggerConfigError(RPAMonitorError):
    field = "config"


class LogExportError(RPAMonitorError):
    field = "range"


class InvalidDateRangeError(LogExportError):
    field = "start"
