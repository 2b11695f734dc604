"""Who may call the API: a logged-in staff session (with CSRF) or an API token.

Authentication (401 when it fails) answers "who is this": a session user, or the
active user behind an unrevoked token. Authorization (403) answers "may they":
the user must be staff and hold the Django permissions each endpoint names
(`require`), exactly as in the admin. A token never grants more than its user has.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from ninja.security import APIKeyCookie, HttpBearer
from ninja.utils import check_csrf

from api.errors import ApiError
from api.models import ApiToken

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class TokenAuth(HttpBearer):
    """`Authorization: Bearer rpa_…` (an ApiToken key)."""

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        api_token = ApiToken.objects.authenticate(token)
        if api_token is None or not api_token.user.is_active:
            return None
        # Code that records who did something (runs' requested_by, audit) reads request.user.
        request.user = api_token.user
        request.api_token = api_token  # type: ignore[attr-defined]
        return api_token.user


class SessionAuth(APIKeyCookie):
    """The admin's login session. Unsafe methods must carry the CSRF token, as in the admin."""

    param_name = settings.SESSION_COOKIE_NAME

    def __call__(self, request: HttpRequest) -> Any:
        if "authorization" in request.headers:
            return None  # a client that sends credentials is judged by them alone
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        if request.method not in SAFE_METHODS and check_csrf(request) is not None:
            raise ApiError(
                403, "csrf", "CSRF check failed: send the X-CSRFToken header with the csrftoken cookie"
            )
        return user

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:  # pragma: no cover - see __call__
        return None


AUTH = [TokenAuth(), SessionAuth()]


def require(request: HttpRequest, *permissions: str) -> Any:
    """The authenticated user, if staff with every permission named; else a 403 ApiError."""
    user: Any = request.auth  # type: ignore[attr-defined]
    if not user.is_staff:
        raise ApiError(403, "permission", "the API is for staff users only")
    missing = [perm for perm in permissions if not user.has_perm(perm)]
    if missing:
        raise ApiError(403, "permission", f"missing permission: {', '.join(missing)}")
    return user
