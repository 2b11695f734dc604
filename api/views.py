"""The JSON API (DESIGN §8). Views are thin: parse, check permissions, call the model layer, report.

Permissions (the user must also be active staff; a token acts as its user):

| endpoint                          | permissions                              |
|-----------------------------------|------------------------------------------|
| GET  /api/chains                  | chains.view_chain                        |
| POST /api/chains                  | chains.add_chain                         |
| POST /api/chains/{id}/execute     | chains.view_chain + chains.execute       |
| POST /api/chain-runs/{id}/cancel  | chains.view_chain + chains.execute       |
| POST /api/chain-runs/{id}/resume  | chains.view_chain + chains.execute       |
| POST /api/workflow-runs/{id}/cancel | chains.view_chain + chains.execute     |
| GET  /api/triggers                | triggers.view_trigger                    |
| POST /api/triggers                | triggers.add_trigger + chains.execute    |
| POST /api/triggers/{id}/toggle    | triggers.change_trigger (+ chains.execute to enable) |
| GET  /api/logs                    | logs.view_logentry                       |
| GET  /api/logs/download           | logs.view_logentry + logs.export_logs    |
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin.models import ADDITION, CHANGE
from django.contrib.admin.models import LogEntry as AdminLogEntry
from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.http import HttpRequest, StreamingHttpResponse
from ninja import NinjaAPI, Query, Status
from pydantic import BaseModel

from api.auth import AUTH, require
from api.errors import ApiError, install_handlers
from api.schemas import (
    MAX_ID,
    ChainIn,
    ChainOut,
    ExecuteIn,
    ExecuteOut,
    LogFilters,
    LogPage,
    LogRangeFilters,
    ResumeOut,
    RunStateOut,
    ToggleOut,
    TriggerIn,
    TriggerOut,
    decode_cursor,
    encode_cursor,
    responses,
    with_json_value,
)
from chains.models import SLUG_RE, Chain, ChainRun, WorkflowRun
from chains.runner import cancel_run, enqueue_chain, resume_chain_run
from logs.export import filename, stream_zip
from logs.models import LogEntry, LogEntryQuerySet
from rpa_monitor.errors import ChainExecutionError, ChainNotFoundError, TriggerNotFoundError
from rpa_monitor.lib.dates import DateRange
from triggers.models import EXECUTE_PERMISSION, Trigger, execute_refusal

# Executing starts work on the servers: the admin's own rule (chains.execute), not just viewing.
EXECUTE_PERMISSIONS = ("chains.view_chain", "chains.execute")


class RPAMonitorAPI(NinjaAPI):
    def get_openapi_operation_id(self, operation: Any) -> str:
        return str(operation.view_func.__name__)  # list_chains, not api_views_list_chains

    def get_openapi_schema(self, *args: Any, **kwargs: Any) -> Any:
        return with_json_value(super().get_openapi_schema(*args, **kwargs))


api = RPAMonitorAPI(
    title="RPA Monitor API",
    version="1",
    description=(
        "Chains, triggers and logs of RPA Monitor. Authenticate with a staff session "
        "(unsafe methods need the CSRF token) or `Authorization: Bearer <API token>` "
        "(tokens are created in the admin and act as their user). Errors are "
        '`{"errors": [{"field": ..., "error": ...}]}`.'
    ),
    auth=AUTH,
    urls_namespace="api",
)
install_handlers(api)


def audit(request: HttpRequest, obj: models.Model, flag: int, message: str) -> None:
    """Record who did it in the object's admin history, beside the admin's own actions."""
    token = getattr(request, "api_token", None)
    via = f"via API token {token.name!r} ({token.prefix}…)" if token else "via API (session)"
    AdminLogEntry.objects.log_actions(
        user_id=request.auth.pk,  # type: ignore[attr-defined]
        queryset=[obj],
        action_flag=flag,
        change_message=f"{message} {via}",
    )


# -- chains --------------------------------------------------------------------


@api.get("/chains", response=responses({200: list[ChainOut]}), tags=["chains"])
def list_chains(request: HttpRequest) -> Any:
    require(request, "chains.view_chain")
    return Chain.objects.prefetch_related("steps__workflow").order_by("slug")


@api.post("/chains", response=responses({201: ChainOut}), tags=["chains"])
def create_chain(request: HttpRequest, payload: ChainIn) -> Any:
    require(request, "chains.add_chain")
    try:
        with transaction.atomic():
            chain = Chain.objects.create_with_steps(**payload.model_dump())
            audit(request, chain, ADDITION, "Added")
    except IntegrityError:
        # Lost a race with a concurrent create of the same slug (full_clean checked before).
        raise ApiError(400, "slug", f"chain {payload.slug} already exists") from None
    return Status(201, chain)


@api.post("/chains/{chain_id}/execute", response=responses({202: ExecuteOut}, 404, 409), tags=["chains"])
def execute_chain(request: HttpRequest, chain_id: str, payload: ExecuteIn | None = None) -> Any:
    user = require(request, *EXECUTE_PERMISSIONS)
    chain = Chain.objects.filter(slug=chain_id).first() if SLUG_RE.match(chain_id) else None
    if chain is None:
        raise ChainNotFoundError(chain_id)
    if not chain.enabled:
        raise ApiError(409, "chain", f"chain {chain.slug} is disabled")
    try:
        with transaction.atomic():
            chain_run = enqueue_chain(chain, params=payload.params if payload else None, requested_by=user)
            audit(request, chain, CHANGE, f"Executed: queued chain run #{chain_run.pk}")
    except ChainExecutionError as exc:
        raise ApiError(409, exc.field, exc.message) from None
    return Status(202, {"chain_run_id": chain_run.pk, "status": chain_run.status, "chain": chain.slug})


# -- runs: cancel and resume -----------------------------------------------------


def _run_or_404(model: type[ChainRun] | type[WorkflowRun], run_id: int, field: str) -> Any:
    run = model.objects.filter(pk=run_id).first() if 1 <= run_id <= MAX_ID else None
    if run is None:
        raise ApiError(404, field, f"{field.replace('_', ' ')} {run_id} does not exist")
    return run


def _cancel(request: HttpRequest, run: ChainRun | WorkflowRun, field: str) -> dict[str, Any]:
    user = request.auth  # type: ignore[attr-defined]
    if not cancel_run(run, f"cancelled by {user} through the API"):
        raise ApiError(409, field, f"run {run.pk} already finished ({run.status})")
    audit(request, run, CHANGE, "Cancelled")
    return {"id": run.pk, "status": run.status}


@api.post("/chain-runs/{run_id}/cancel", response=responses({200: RunStateOut}, 404, 409), tags=["runs"])
def cancel_chain_run(request: HttpRequest, run_id: int) -> Any:
    require(request, *EXECUTE_PERMISSIONS)
    return _cancel(request, _run_or_404(ChainRun, run_id, "chain_run"), "chain_run")


@api.post("/workflow-runs/{run_id}/cancel", response=responses({200: RunStateOut}, 404, 409), tags=["runs"])
def cancel_workflow_run(request: HttpRequest, run_id: int) -> Any:
    require(request, *EXECUTE_PERMISSIONS)
    return _cancel(request, _run_or_404(WorkflowRun, run_id, "workflow_run"), "workflow_run")


@api.post("/chain-runs/{run_id}/resume", response=responses({202: ResumeOut}, 404, 409), tags=["runs"])
def resume_chain(request: HttpRequest, run_id: int) -> Any:
    user = require(request, *EXECUTE_PERMISSIONS)
    failed = _run_or_404(ChainRun, run_id, "chain_run")
    try:
        with transaction.atomic():
            resumed = resume_chain_run(failed, requested_by=user)
            audit(request, failed, CHANGE, f"Resumed from step {resumed.start_position} as #{resumed.pk}")
    except ChainExecutionError as exc:
        raise ApiError(409, "chain_run", exc.message) from None
    body = {"chain_run_id": resumed.pk, "status": resumed.status, "chain": failed.chain.slug}
    return Status(202, {**body, "resumed_from": failed.pk, "start_position": resumed.start_position})


# -- triggers ------------------------------------------------------------------


@api.get("/triggers", response=responses({200: list[TriggerOut]}), tags=["triggers"])
def list_triggers(request: HttpRequest) -> Any:
    require(request, "triggers.view_trigger")
    return Trigger.objects.select_related("workflow", "chain").order_by("name", "id")


@api.post("/triggers", response=responses({201: TriggerOut}), tags=["triggers"])
def create_trigger(request: HttpRequest, payload: TriggerIn) -> Any:
    # A trigger starts runs: creating one is executing, later (DESIGN §14).
    require(request, "triggers.add_trigger", EXECUTE_PERMISSION)
    trigger = payload.to_trigger()
    trigger.full_clean()
    with transaction.atomic():
        trigger.save()
        audit(request, trigger, ADDITION, "Added")
    return Status(201, trigger)


@api.post("/triggers/{trigger_id}/toggle", response=responses({200: ToggleOut}, 404), tags=["triggers"])
def toggle_trigger(request: HttpRequest, trigger_id: int) -> Any:
    user = require(request, "triggers.change_trigger")
    if not 1 <= trigger_id <= MAX_ID:
        raise TriggerNotFoundError(trigger_id)
    with transaction.atomic():
        # Locked, so two concurrent toggles flip twice instead of both writing the same value.
        trigger = Trigger.objects.select_for_update().filter(pk=trigger_id).first()
        if trigger is None:
            raise TriggerNotFoundError(trigger_id)
        if not trigger.enabled and not user.has_perm(EXECUTE_PERMISSION):  # disabling needs no more
            refusal = execute_refusal(["enabling a trigger"])
            raise ApiError(403, "permission", f"missing permission: {EXECUTE_PERMISSION}. {refusal}")
        trigger.set_enabled(not trigger.enabled)
        audit(request, trigger, CHANGE, "Enabled" if trigger.enabled else "Disabled")
    return trigger


# -- logs ----------------------------------------------------------------------


def refuse_unknown_parameters(request: HttpRequest, schema: type[BaseModel]) -> None:
    """A misspelt filter (`?levle=ERROR`) is an error, not a silently unfiltered answer."""
    unknown = sorted(set(request.GET) - set(schema.model_fields))
    if unknown:
        allowed = ", ".join(schema.model_fields)
        raise ApiError(400, unknown[0], f"unknown parameter {unknown[0]!r}; the filters are: {allowed}")
    # Each filter takes one value: `?level=INFO&level=ERROR` silently used the last one.
    repeated = sorted(name for name, values in request.GET.lists() if len(values) > 1)
    if repeated:
        count = len(request.GET.getlist(repeated[0]))
        raise ApiError(400, repeated[0], f"given {count} times; each filter takes one value")


def matching_entries(filters: LogRangeFilters) -> tuple[DateRange, LogEntryQuerySet]:
    date_range = DateRange.parse(filters.start, filters.end)
    entries = LogEntry.objects.matching(
        level=filters.level,
        component=filters.component,
        workflow_id=filters.workflow_id,
        run_id=filters.run_id,
        q=filters.q,
        start=date_range.start,
        end=date_range.end,
    )
    return date_range, entries


@api.get("/logs", response=responses({200: LogPage}), tags=["logs"])
def list_logs(request: HttpRequest, filters: Query[LogFilters]) -> Any:
    """Entries matching every filter given, newest first, a page at a time."""
    require(request, "logs.view_logentry")
    refuse_unknown_parameters(request, LogFilters)
    _, entries = matching_entries(filters)
    if filters.cursor:
        timestamp, pk = decode_cursor(filters.cursor)
        entries = entries.filter(Q(timestamp__lt=timestamp) | Q(timestamp=timestamp, id__lt=pk))
    page = list(entries.order_by("-timestamp", "-id")[: filters.limit + 1])
    more = len(page) > filters.limit
    page = page[: filters.limit]
    return {"items": page, "next_cursor": encode_cursor(page[-1]) if more else None}


ZIP_RESPONSE = {
    "description": "A ZIP of execution_logs.json, error_logs.json and metrics.json",
    "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
}


@api.get(
    "/logs/download",
    response=responses({}),
    tags=["logs"],
    openapi_extra={"responses": {200: ZIP_RESPONSE}},
)
def download_logs(request: HttpRequest, filters: Query[LogRangeFilters]) -> StreamingHttpResponse:
    """The ZIP export (execution_logs.json, error_logs.json, metrics.json), streamed."""
    require(request, "logs.view_logentry", "logs.export_logs")
    refuse_unknown_parameters(request, LogRangeFilters)
    date_range, entries = matching_entries(filters)
    response = StreamingHttpResponse(stream_zip(date_range, entries), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{filename(date_range)}"'
    return response


api.add_router("/secrets", "credentials.api.router")  # GET/POST /api/secrets, .../{name}
