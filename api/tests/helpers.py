"""Helpers for the API tests: users with permissions, token clients, JSON error bodies."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.contrib.auth.models import Permission, User
from django.db import transaction
from django.test import Client

from api.models import ApiToken

API_PERMISSIONS = [
    "chains.view_chain",
    "chains.add_chain",
    "chains.execute",
    "triggers.view_trigger",
    "triggers.add_trigger",
    "triggers.change_trigger",
    "logs.view_logentry",
    "logs.export_logs",
]


def make_user(username: str, *permissions: str, is_staff: bool = True, **fields: Any) -> User:
    user = User.objects.create_user(username, password="pw-for-tests-only", is_staff=is_staff, **fields)
    for perm in permissions:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def token_client(user: User) -> Client:
    _, key = ApiToken.objects.issue(user, "tests")
    return Client(headers={"Authorization": f"Bearer {key}"})


POOL = ["login", "data-entry", "submit", "report"]


@contextmanager
def rolled_back() -> Iterator[None]:
    """Each hypothesis example starts from the test's tables and leaves nothing behind."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def errors_of(response: Any) -> dict[str, str]:
    """{field: error} of a JSON error response (asserting its shape)."""
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert set(body) == {"errors"}, body
    assert body["errors"], body
    for error in body["errors"]:
        assert set(error) == {"field", "error"}, error
        assert isinstance(error["field"], str)
        assert isinstance(error["error"], str)
        assert error["error"]
    return {error["field"]: error["error"] for error in body["errors"]}


def post_json(client: Client, url: str, body: Any = None) -> Any:
    """POST `body` as JSON; None sends no body at all (like `curl -X POST`)."""
    if body is None:
        return client.post(url, content_type="application/json")
    return client.post(url, body, content_type="application/json")
