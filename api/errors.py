"""Every API error is JSON: `{"errors": [{"field": ..., "error": ...}]}` (DESIGN §10).

Installed on the NinjaAPI for our named errors, Django's ValidationError and
ninja's own (auth, bad JSON, request validation); `json_errors` wraps the URL
views so that even what happens outside an operation (405, 404) answers JSON.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from functools import wraps
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ObjectDoesNotExist, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from ninja import errors as ninja_errors

from rpa_monitor.errors import ChainNotFoundError, RPAMonitorError, TriggerNotFoundError
from rpa_monitor.middleware import too_big_response

if TYPE_CHECKING:
    from ninja import NinjaAPI

log = logging.getLogger("rpa.api")

ErrorList = list[dict[str, str]]


class ApiError(Exception):
    """An error response decided by a view: its status and the fields at fault."""

    def __init__(self, status: int, field: str, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.errors: ErrorList = [{"field": field, "error": error}]


def error_response(status: int, errors: ErrorList, headers: dict[str, str] | None = None) -> JsonResponse:
    return JsonResponse({"errors": errors}, status=status, headers=headers)


def validation_errors(exc: DjangoValidationError) -> ErrorList:
    """A Django ValidationError as field errors (a model's non-field errors name no field)."""
    if not hasattr(exc, "error_dict"):
        return [{"field": "", "error": message} for message in exc.messages]
    return [
        {"field": "" if field == NON_FIELD_ERRORS else field, "error": message}
        for field, messages in exc.message_dict.items()
        for message in messages
    ]


def request_errors(errors: Iterable[dict[str, Any]]) -> ErrorList:
    """ninja's request validation errors (pydantic's, with the location first)."""
    result = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        # ("body", "payload", "workflows", "0") names workflows.0; ("query", "level") names level.
        parts = loc[2:] if loc[:1] == ["body"] and len(loc) > 2 else loc[1:]
        message = str(error.get("msg")).removeprefix("Value error, ")  # our validators' ValueErrors
        result.append({"field": ".".join(parts) or (loc[0] if loc else ""), "error": message})
    return result


def install_handlers(api: NinjaAPI) -> None:
    @api.exception_handler(ApiError)
    def on_api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
        return error_response(exc.status, exc.errors)

    @api.exception_handler(RPAMonitorError)
    def on_named_error(request: HttpRequest, exc: RPAMonitorError) -> HttpResponse:
        # Views raise the not-found errors only for the object in the URL.
        status = 404 if isinstance(exc, ChainNotFoundError | TriggerNotFoundError) else 400
        return error_response(status, [exc.as_dict()])

    @api.exception_handler(DjangoValidationError)
    def on_validation_error(request: HttpRequest, exc: DjangoValidationError) -> HttpResponse:
        return error_response(400, validation_errors(exc))

    @api.exception_handler(ninja_errors.ValidationError)
    def on_request_error(request: HttpRequest, exc: ninja_errors.ValidationError) -> HttpResponse:
        return error_response(400, request_errors(exc.errors))

    @api.exception_handler(ninja_errors.AuthenticationError)
    def on_unauthenticated(request: HttpRequest, exc: ninja_errors.AuthenticationError) -> HttpResponse:
        error = "authentication required: a staff session or `Authorization: Bearer <API token>`"
        if "authorization" in request.headers:
            error = "invalid, revoked or inactive-user API token"
        return error_response(
            401, [{"field": "authorization", "error": error}], {"WWW-Authenticate": "Bearer"}
        )

    @api.exception_handler(ninja_errors.HttpError)
    def on_http_error(request: HttpRequest, exc: ninja_errors.HttpError) -> HttpResponse:
        # ninja raises these for an unparseable body ("Cannot parse request body").
        field = "body" if exc.status_code == 400 else ""
        return error_response(exc.status_code, [{"field": field, "error": exc.message}])

    @api.exception_handler(Http404)
    def on_not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
        return error_response(404, [{"field": "path", "error": f"no such API path: {request.path}"}])

    @api.exception_handler(ObjectDoesNotExist)
    def on_missing_object(request: HttpRequest, exc: ObjectDoesNotExist) -> HttpResponse:
        return error_response(404, [{"field": "", "error": str(exc)}])

    @api.exception_handler(RequestDataTooBig)
    def on_too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
        # A body without a Content-Length, found too big as it was read (the middleware
        # answers the declared ones before this).
        return too_big_response(request, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)

    @api.exception_handler(RecursionError)
    def on_too_deep(request: HttpRequest, exc: RecursionError) -> HttpResponse:
        # JSON nested so deep that walking it ran out of stack: bad input, not a bug.
        return error_response(400, [{"field": "body", "error": "the JSON body is nested too deeply"}])

    @api.exception_handler(Exception)
    def on_unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
        # A bug, not bad input: logged with its traceback; the client still gets JSON.
        log.exception("API %s %s failed", request.method, request.path)
        return error_response(500, [{"field": "", "error": "internal error; see the server log"}])


def json_errors(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wrap a URL view so its 404 and 405 (answered outside any operation) are JSON too."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            response = view(request, *args, **kwargs)
        except Http404:
            return not_found(request)
        if isinstance(response, HttpResponseNotAllowed):
            allowed = response["Allow"]
            error = f"{request.method} is not allowed here; allowed: {allowed}"
            return error_response(405, [{"field": "method", "error": error}], {"Allow": allowed})
        return response

    return wrapper


def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    return error_response(404, [{"field": "path", "error": f"no such API path: {request.path}"}])
