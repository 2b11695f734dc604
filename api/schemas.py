"""Request and response bodies (DESIGN §8), validated by pydantic, documented in the OpenAPI schema."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any, Literal

from ninja import Field, Schema
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, model_validator

from api.errors import ApiError
from chains.models import SLUG_RE, Chain, Workflow
from logs.models import LogEntry
from rpa_monitor.errors import WorkflowNotFoundError
from rpa_monitor.lib.text import is_storable
from triggers.models import Trigger

MAX_ID = 2**63 - 1  # the largest id any supported database stores
LevelName = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


FilterText = Annotated[str, Field(max_length=500), AfterValidator(_no_nul)]


class FieldError(Schema):
    field: str = Field(description="The field at fault (a body key, query parameter or path part).")
    error: str


class ErrorsOut(Schema):
    errors: list[FieldError]


def responses(ok: dict[int, Any], *errors: int) -> dict[int, Any]:
    """The responses of an operation: `ok` plus ErrorsOut for 400, 401, 403 and `errors`."""
    return {**ok, **{status: ErrorsOut for status in sorted({400, 401, 403, *errors})}}


class Input(BaseModel):
    # A misspelt field is an error naming it, not silently ignored. (Plain pydantic: ninja's
    # Schema hands validators a getter object, not the dict `_blank_means_unset` cleans.)
    model_config = ConfigDict(extra="forbid")


# -- chains --------------------------------------------------------------------


class ChainIn(Input):
    slug: str = Field(description="The chain_id: letters, digits, - and _.")
    name: str
    workflows: list[str] = Field(description="Workflow slugs, in the order the steps run.")
    description: str = ""
    enabled: bool = True


class ChainOut(Schema):
    slug: str
    name: str
    description: str
    enabled: bool
    workflows: list[str] = Field(description="Workflow slugs, in step order.")

    @staticmethod
    def resolve_workflows(obj: Chain) -> list[str]:
        return [step.workflow.slug for step in obj.ordered_steps()]


def _storable(value: Any) -> Any:
    if not is_storable(value):
        raise ValueError("must not contain NUL characters or invalid Unicode (lone surrogates)")
    return value


class ExecuteIn(Input):
    params: Annotated[dict[str, Any], AfterValidator(_storable)] = Field(
        default_factory=dict, description="Passed to every step as RPA_PARAMS."
    )


class ExecuteOut(Schema):
    chain_run_id: int
    status: str
    chain: str


class RunStateOut(Schema):
    id: int
    status: str


class ResumeOut(ExecuteOut):
    resumed_from: int
    start_position: int


# -- triggers ------------------------------------------------------------------


class TriggerIn(Input):
    name: str
    trigger_type: Literal["schedule", "file", "manual"]
    workflow: str | None = Field(None, description="A workflow slug (or give `chain`).")
    chain: str | None = Field(None, description="A chain slug (or give `workflow`).")
    config: dict[str, Any] = Field(
        default_factory=dict,
        description='schedule: {"interval_seconds": 900} or {"cron": "30 2 * * 1-5"}, optional '
        '"start_time"/"end_time", "weekdays", "timezone"; file: {"path", "pattern", '
        '"settle_seconds"}; manual: {}.',
    )
    params: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True
    overlap: Literal["skip", "allow"] = "skip"

    def to_trigger(self) -> Trigger:
        """The (unsaved, not yet validated) trigger; unknown target slugs are errors naming the field."""
        trigger = Trigger(
            name=self.name,
            trigger_type=self.trigger_type,
            config=self.config,
            params=self.params,
            enabled=self.enabled,
            overlap=self.overlap,
        )
        if self.workflow is not None:
            workflow = (
                Workflow.objects.filter(slug=self.workflow).first() if _is_slug(self.workflow) else None
            )
            if workflow is None:
                raise WorkflowNotFoundError([self.workflow], "workflow")
            trigger.workflow = workflow
        if self.chain is not None:
            chain = Chain.objects.filter(slug=self.chain).first() if _is_slug(self.chain) else None
            if chain is None:
                raise ApiError(400, "chain", f"unknown chain: {self.chain}")
            trigger.chain = chain
        return trigger


def _is_slug(value: str) -> bool:
    # Only well-formed slugs can exist; the rest (NUL, surrogates) never reach the database.
    return bool(SLUG_RE.match(value))


class TriggerOut(Schema):
    id: int
    name: str
    trigger_type: str
    workflow: str | None
    chain: str | None
    config: Any
    params: Any
    enabled: bool
    overlap: str
    created_at: datetime
    last_fired: datetime | None
    next_fire_at: datetime | None
    problem: str

    @staticmethod
    def resolve_workflow(obj: Trigger) -> str | None:
        return obj.workflow.slug if obj.workflow is not None else None

    @staticmethod
    def resolve_chain(obj: Trigger) -> str | None:
        return obj.chain.slug if obj.chain is not None else None


class ToggleOut(Schema):
    id: int
    enabled: bool
    next_fire_at: datetime | None


# -- logs ----------------------------------------------------------------------


class LogRangeFilters(Input):
    """The filters shared by the listing and the download."""

    level: Annotated[LevelName, BeforeValidator(_upper)] | None = None
    component: FilterText | None = None
    workflow_id: FilterText | None = None
    run_id: int | None = Field(None, ge=1, le=MAX_ID)
    q: FilterText | None = Field(None, description="Text the message contains (case-insensitive).")
    start: str | None = Field(None, description="ISO date or datetime (naive means the server's TIME_ZONE).")
    end: str | None = Field(None, description="ISO date or datetime; a bare date includes that whole day.")

    @model_validator(mode="before")
    @classmethod
    def _blank_means_unset(cls, data: Any) -> Any:
        # An empty form field (`?level=`) is no filter, as in the admin.
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value != ""}
        return data


class LogFilters(LogRangeFilters):
    limit: int = Field(100, ge=1, le=1000, description="Entries per page (at most 1000).")
    cursor: str | None = Field(None, description="`next_cursor` of the previous page.")


class LogEntryOut(Schema):
    id: int
    timestamp: datetime
    level: str
    component: str
    message: str
    workflow_id: str
    node_id: str
    run_id: int | None
    metadata: Any


class LogPage(Schema):
    items: list[LogEntryOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null at the end."
    )


def encode_cursor(entry: LogEntry) -> str:
    """Where the next page starts: after this entry in (timestamp, id) descending order."""
    raw = f"{entry.timestamp.isoformat()}|{entry.pk}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        timestamp, pk = raw.split("|")
        moment, number = datetime.fromisoformat(timestamp), int(pk)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(400, "cursor", "not a cursor this API returned") from None
    if moment.tzinfo is None or not 1 <= number <= MAX_ID:
        raise ApiError(400, "cursor", "not a cursor this API returned")
    return moment, number
