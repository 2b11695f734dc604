"""Request and response bodies (DESIGN §8), validated by pydantic, documented in the OpenAPI schema."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any, Literal

from django.conf import settings
from ninja import Field, Schema
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, model_validator
from pydantic.json_schema import JsonDict

from api.errors import ApiError
from chains.models import SLUG_RE, Chain, Workflow
from logs.models import LogEntry
from rpa_monitor.errors import WorkflowNotFoundError
from rpa_monitor.lib.limits import MAX_JSON_DEPTH, json_problem, params_problem
from rpa_monitor.lib.text import is_storable
from triggers.models import Trigger

MAX_ID = 2**63 - 1  # the largest id any supported database stores
LevelName = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

# What the schema documents, so that clients (and schemathesis) send what is accepted: the
# patterns are checked by the validators below and the models, with messages naming the field.
NO_NUL = r"^[^\x00]*$"  # lone surrogates are refused too; JSON Schema strings cannot hold them
SLUG_PATTERN = r"^[-a-zA-Z0-9_]+$"
# parse_moment's ISO dates and datetimes (minutes at least; seconds, fraction and zone optional),
# calendar days only, years 1000-8999 (so that no zone offset takes it out of Python's range).
_LEAP = r"[1-8][0-9](0[48]|[2468][048]|[13579][26])|(1[26]|[2468][048]|[3579][26])00"
_MONTH_DAY = r"(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31"
_DAY = rf"([1-8][0-9]{{3}}-({_MONTH_DAY})|({_LEAP})-02-29)"
_TIME = r"[T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?(Z|[+-](0[0-9]|1[0-4]):[0-5][0-9])?"
MOMENT_PATTERN = rf"^{_DAY}({_TIME})?$"


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _storable_text(value: str) -> str:
    if not is_storable(value):
        raise ValueError("must not contain NUL characters or invalid Unicode (lone surrogates)")
    return value


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _json_object(value: dict[str, Any]) -> dict[str, Any]:
    problem = json_problem(value)  # NaN, Infinity, 1e400, NUL, nested too deep
    if problem:
        raise ValueError(problem)
    return value


def _params(value: dict[str, Any]) -> dict[str, Any]:
    problem = params_problem(value)  # as above, and at most RPA_MAX_PARAMS_BYTES
    if problem:
        raise ValueError(problem)
    return value


FilterText = Annotated[
    str, Field(max_length=500, json_schema_extra={"pattern": NO_NUL}), AfterValidator(_no_nul)
]
Text = Annotated[str, Field(json_schema_extra={"pattern": NO_NUL}), AfterValidator(_storable_text)]
Name = Annotated[
    str,
    Field(min_length=1, max_length=200, json_schema_extra={"pattern": NO_NUL}),
    AfterValidator(_storable_text),
]
# Checked against the database (unknown or malformed: an error naming the field), documented here.
SlugRef = Annotated[str, Field(json_schema_extra={"pattern": SLUG_PATTERN, "minLength": 1, "maxLength": 100})]
# Any JSON whose strings (keys too) hold no NUL: what params and configs may contain. The API
# adds it to the schema's components and puts the $ref where JSON_VALUE_MARK stands (pydantic
# refuses a $ref to a definition it does not know): see `with_json_value`.
JSON_VALUE_REF = {"$ref": "#/components/schemas/JsonValue"}
JSON_VALUE_MARK = {"x-rpa-json-value": True}
JSON_VALUE = {
    "title": "JsonValue",
    "description": f"Any JSON value without NUL characters, nested at most {MAX_JSON_DEPTH} levels.",
    "anyOf": [
        {"type": "null"},
        {"type": "boolean"},
        {"type": "number"},
        {"type": "string", "pattern": NO_NUL},
        {"type": "array", "items": JSON_VALUE_REF},
        {"type": "object", "propertyNames": {"pattern": NO_NUL}, "additionalProperties": JSON_VALUE_REF},
    ],
}
_JSON_OBJECT_SCHEMA = {"propertyNames": {"pattern": NO_NUL}, "additionalProperties": JSON_VALUE_MARK}


def with_json_value(schema: Any) -> Any:
    """The OpenAPI schema with JsonValue defined and referenced where JSON_VALUE_MARK stands."""

    def swap(node: Any) -> Any:
        if node == JSON_VALUE_MARK:
            return JSON_VALUE_REF
        if isinstance(node, dict):
            return {key: swap(value) for key, value in node.items()}
        if isinstance(node, list):
            return [swap(value) for value in node]
        return node

    schema = swap(schema)
    schema["components"]["schemas"]["JsonValue"] = JSON_VALUE
    return schema


JsonObject = Annotated[
    dict[str, Any], AfterValidator(_json_object), Field(json_schema_extra=_JSON_OBJECT_SCHEMA)
]
Params = Annotated[
    dict[str, Any],
    AfterValidator(_params),
    Field(
        description="Passed to the runs as RPA_PARAMS: a JSON object of at most RPA_MAX_PARAMS_BYTES "
        f"({settings.RPA_MAX_PARAMS_BYTES:,}) bytes as JSON, finite numbers only.",
        json_schema_extra=_JSON_OBJECT_SCHEMA,
    ),
]


class FieldError(Schema):
    field: str = Field(description="The field at fault (a body key, query parameter or path part).")
    error: str


class ErrorsOut(Schema):
    errors: list[FieldError]


def responses(ok: dict[int, Any], *errors: int) -> dict[int, Any]:
    """The responses of an operation: `ok` plus ErrorsOut for 400, 401, 403, 413 and `errors`.

    (413: any request with a body over DATA_UPLOAD_MAX_MEMORY_SIZE, see rpa_monitor.middleware.)
    """
    return {**ok, **{status: ErrorsOut for status in sorted({400, 401, 403, 413, *errors})}}


class Input(BaseModel):
    # A misspelt field is an error naming it, not silently ignored. (Plain pydantic: ninja's
    # Schema hands validators a getter object, not the dict `_blank_means_unset` cleans.)
    model_config = ConfigDict(extra="forbid")


# -- chains --------------------------------------------------------------------


class ChainIn(Input):
    slug: SlugRef = Field(description="The chain_id: letters, digits, - and _.")
    name: Name
    workflows: list[SlugRef] = Field(
        description="Workflow slugs, in the order the steps run (at most RPA_MAX_CHAIN_STEPS).",
        json_schema_extra={"minItems": 1, "maxItems": settings.RPA_MAX_CHAIN_STEPS},
    )
    description: Text = ""
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


class ExecuteIn(Input):
    params: Params = Field(default_factory=dict)


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


# A trigger starts exactly one thing: `workflow` or `chain` is a slug, the other absent or null.
EXACTLY_ONE_TARGET: JsonDict = {
    "oneOf": [
        {"required": [given], "properties": {given: {"type": "string"}, other: {"type": "null"}}}
        for given, other in (("workflow", "chain"), ("chain", "workflow"))
    ]
}


class TriggerIn(Input):
    model_config = ConfigDict(extra="forbid", json_schema_extra=EXACTLY_ONE_TARGET)

    name: Name
    trigger_type: Literal["schedule", "file", "manual"]
    workflow: SlugRef | None = Field(None, description="A workflow slug (or give `chain`).")
    chain: SlugRef | None = Field(None, description="A chain slug (or give `workflow`).")
    config: JsonObject = Field(
        default_factory=dict,
        description='schedule: {"interval_seconds": 900} or {"cron": "30 2 * * 1-5"}, optional '
        '"start_time"/"end_time", "weekdays", "timezone"; file: {"path", "pattern", '
        '"settle_seconds"}; manual: {}.',
    )
    params: Params = Field(default_factory=dict)
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


_CONSTRAINTS = ("type", "enum", "pattern", "minimum", "maximum", "minLength", "maxLength", "format")


def _blank_is_unset(schema: dict[str, Any]) -> None:
    """Document what `_blank_means_unset` does: every parameter may also be given empty.

    A filter is absent, a value or empty (never JSON null: a query string has none).
    """
    for prop in schema.get("properties", {}).values():
        outer = {key: prop.pop(key) for key in _CONSTRAINTS if key in prop}
        variants = [{**v, **outer} for v in prop.pop("anyOf", [{}]) if v.get("type") != "null"]
        prop["anyOf"] = [*variants, {"type": "string", "maxLength": 0}]


class LogRangeFilters(Input):
    """The filters shared by the listing and the download."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_blank_is_unset)

    level: Annotated[LevelName, BeforeValidator(_upper)] | None = None
    component: FilterText | None = None
    workflow_id: FilterText | None = None
    run_id: int | None = Field(None, ge=1, le=MAX_ID)
    q: FilterText | None = Field(None, description="Text the message contains (case-insensitive).")
    start: str | None = Field(
        None,
        description="ISO date or datetime (naive means the server's TIME_ZONE), e.g. 2026-11-24 or "
        "2026-11-24T08:00; not after `end`.",
        json_schema_extra={"pattern": MOMENT_PATTERN},
    )
    end: str | None = Field(
        None,
        description="ISO date or datetime; a bare date includes that whole day.",
        json_schema_extra={"pattern": MOMENT_PATTERN},
    )

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
