"""Who may call the API: anonymous 401, non-staff 403, staff session or token OK, permissions apply."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from api.models import ApiToken, hash_key
from api.tests.helpers import API_PERMISSIONS, errors_of, make_user, post_json, token_client
from chains.models import Chain, ChainRun, Workflow
from triggers.models import Trigger

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(workflows: list[Workflow]) -> dict[str, Any]:
    chain = Chain.objects.create_with_steps("nightly", "Nightly", ["login"])
    trigger = Trigger.objects.create(name="t", trigger_type="manual", chain=chain)
    return {"chain": chain, "trigger": trigger}


def requests(setup: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(method, url, JSON body) for every endpoint."""
    trigger = setup["trigger"]
    return [
        ("get", "/api/chains", None),
        ("post", "/api/chains", {"slug": "new", "name": "new", "workflows": ["login"]}),
        ("post", "/api/chains/nightly/execute", None),
        ("get", "/api/triggers", None),
        ("post", "/api/triggers", {"name": "n", "trigger_type": "manual", "workflow": "login"}),
        ("post", f"/api/triggers/{trigger.pk}/toggle", None),
        ("get", "/api/logs", None),
        ("get", "/api/logs/download", None),
    ]


def call(client: Client, method: str, url: str, body: Any) -> Any:
    if method == "get":
        return client.get(url)
    return post_json(client, url, body)


def assert_nothing_written(setup: dict[str, Any]) -> None:
    assert list(Chain.objects.values_list("slug", flat=True)) == ["nightly"]
    assert list(Trigger.objects.values_list("name", "enabled")) == [("t", True)]
    assert not ChainRun.objects.exists()


def test_anonymous_requests_get_401_and_no_data(setup: dict[str, Any]) -> None:
    client = Client()
    for method, url, body in requests(setup):
        response = call(client, method, url, body)
        assert response.status_code == 401, url
        assert "authentication required" in errors_of(response)["authorization"]
        assert response["WWW-Authenticate"] == "Bearer"
    assert_nothing_written(setup)


def test_non_staff_users_get_403_by_session_and_by_token(setup: dict[str, Any]) -> None:
    user = make_user("outsider", *API_PERMISSIONS, is_staff=False)
    session = Client()
    session.force_login(user)
    for client in (session, token_client(user)):
        for method, url, body in requests(setup):
            response = call(client, method, url, body)
            assert response.status_code == 403, url
            assert "staff" in errors_of(response)["permission"]
    assert_nothing_written(setup)


def test_a_staff_session_may_call_everything(setup: dict[str, Any], staff: User) -> None:
    client = Client()
    client.force_login(staff)
    statuses = [call(client, *request).status_code for request in requests(setup)]
    assert statuses == [200, 201, 202, 200, 201, 200, 200, 200]


def test_a_token_may_call_everything_its_user_may(setup: dict[str, Any], api: Client) -> None:
    statuses = [call(api, *request).status_code for request in requests(setup)]
    assert statuses == [200, 201, 202, 200, 201, 200, 200, 200]


def test_a_superuser_session_may_call_everything(setup: dict[str, Any], admin_client: Client) -> None:
    statuses = [call(admin_client, *request).status_code for request in requests(setup)]
    assert statuses == [200, 201, 202, 200, 201, 200, 200, 200]


@pytest.mark.parametrize(
    ("missing", "index"),
    [
        ("chains.view_chain", 0),
        ("chains.add_chain", 1),
        ("chains.execute", 2),
        ("chains.view_chain", 2),
        ("triggers.view_trigger", 3),
        ("triggers.add_trigger", 4),
        ("triggers.change_trigger", 5),
        ("logs.view_logentry", 6),
        ("logs.view_logentry", 7),
    ],
)
def test_a_token_of_a_user_lacking_a_permission_gets_403(
    setup: dict[str, Any], missing: str, index: int
) -> None:
    user = make_user("limited", *[perm for perm in API_PERMISSIONS if perm != missing])
    response = call(token_client(user), *requests(setup)[index])
    assert response.status_code == 403
    assert missing in errors_of(response)["permission"]
    assert_nothing_written(setup)


def test_a_revoked_token_gets_401(setup: dict[str, Any], staff: User) -> None:
    token, key = ApiToken.objects.issue(staff, "script")
    client = Client(headers={"Authorization": f"Bearer {key}"})
    assert client.get("/api/chains").status_code == 200
    assert token.revoke()
    for method, url, body in requests(setup):
        response = call(client, method, url, body)
        assert response.status_code == 401, url
        assert "revoked" in errors_of(response)["authorization"]
    assert_nothing_written(setup)


def test_a_token_of_an_inactive_user_gets_401(setup: dict[str, Any], staff: User, api: Client) -> None:
    User.objects.filter(pk=staff.pk).update(is_active=False)
    assert api.get("/api/chains").status_code == 401


@pytest.mark.parametrize(
    "header",
    [
        "Bearer ",
        "Bearer nonsense",
        "Bearer rpa_" + "x" * 43,
        "Token abc",
        "Basic dXNlcjpwdw==",
        "Bearer \x7f",
    ],
)
def test_wrong_credentials_get_401(setup: dict[str, Any], staff: User, header: str) -> None:
    ApiToken.objects.issue(staff, "real one")
    response = Client(headers={"Authorization": header}).get("/api/chains")
    assert response.status_code == 401
    assert "authorization" in errors_of(response)


def test_a_bad_token_is_not_rescued_by_a_session(setup: dict[str, Any], staff: User) -> None:
    client = Client(headers={"Authorization": "Bearer rpa_wrong"})
    client.force_login(staff)
    assert client.get("/api/chains").status_code == 401


def test_session_posts_need_the_csrf_token(setup: dict[str, Any], staff: User) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    assert client.get("/api/chains").status_code == 200  # safe methods need none
    for method, url, body in requests(setup):
        if method == "post":
            response = call(client, method, url, body)
            assert response.status_code == 403, url
            assert "CSRF" in errors_of(response)["csrf"]
    assert_nothing_written(setup)
    # With the token from the cookie in the header, as the admin's JavaScript would send it:
    client.get("/admin/")  # sets the csrftoken cookie
    csrf = client.cookies["csrftoken"].value
    response = client.post(
        "/api/chains/nightly/execute", content_type="application/json", headers={"X-CSRFToken": csrf}
    )
    assert response.status_code == 202


def test_tokens_need_no_csrf_token(setup: dict[str, Any], staff: User) -> None:
    _, key = ApiToken.objects.issue(staff, "script")
    client = Client(enforce_csrf_checks=True, headers={"Authorization": f"Bearer {key}"})
    assert post_json(client, "/api/chains/nightly/execute").status_code == 202


def test_tokens_are_stored_hashed_and_record_their_last_use(staff: User) -> None:
    token, key = ApiToken.objects.issue(staff, "script")
    assert key.startswith("rpa_")
    assert len(key) > 40
    stored = ApiToken.objects.values().get(pk=token.pk)
    assert key not in {str(value) for value in stored.values()}
    assert stored["key_hash"] == hash_key(key)
    assert stored["prefix"] == key[:12]
    assert stored["last_used_at"] is None
    Client(headers={"Authorization": f"Bearer {key}"}).get("/api/chains")
    token.refresh_from_db()
    assert token.last_used_at is not None
    # Within the resolution, further uses do not write.
    used = token.last_used_at
    Client(headers={"Authorization": f"Bearer {key}"}).get("/api/chains")
    token.refresh_from_db()
    assert token.last_used_at == used
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=used - timedelta(minutes=5))
    Client(headers={"Authorization": f"Bearer {key}"}).get("/api/chains")
    token.refresh_from_db()
    assert token.last_used_at > used - timedelta(minutes=5)
    assert token.last_used_at <= timezone.now()


def test_two_tokens_never_share_a_key(staff: User) -> None:
    keys = {ApiToken.objects.issue(staff, f"t{n}")[1] for n in range(20)}
    assert len(keys) == 20
