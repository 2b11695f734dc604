"""API tokens in the admin: the key is shown once, only its hash is stored, revoking works."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from api.models import ApiToken, hash_key
from api.tests.helpers import make_user

pytestmark = pytest.mark.django_db

ADD_URL = reverse("admin:api_apitoken_add")
LIST_URL = reverse("admin:api_apitoken_changelist")


def shown_key(html: str) -> str:
    match = re.search(r'<code id="api-token-key"[^>]*>(rpa_[^<]+)</code>', html)
    assert match, html
    return match.group(1)


def test_creating_a_token_shows_the_key_once_and_stores_its_hash(
    admin_client: Client, admin_user: User
) -> None:
    response = admin_client.post(ADD_URL, {"user": admin_user.pk, "name": "export script"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    key = shown_key(response.content.decode())
    token = ApiToken.objects.get()
    assert (token.user, token.name, token.key_hash, token.prefix) == (
        admin_user,
        "export script",
        hash_key(key),
        key[:12],
    )
    # Never again: not on the list, not on the token's page, not in a message or cookie.
    for url in (LIST_URL, reverse("admin:api_apitoken_change", args=[token.pk])):
        html = admin_client.get(url).content.decode()
        assert key not in html
        assert token.prefix in html
    assert all(key not in cookie.value for cookie in admin_client.cookies.values())
    # And it works.
    assert Client(headers={"Authorization": f"Bearer {key}"}).get("/api/chains").status_code == 200


def test_the_revoke_action_revokes_and_the_key_stops_working(admin_client: Client, admin_user: User) -> None:
    token, key = ApiToken.objects.issue(admin_user, "old")
    other, other_key = ApiToken.objects.issue(admin_user, "kept")
    response = admin_client.post(LIST_URL, {"action": "revoke", "_selected_action": [token.pk]}, follow=True)
    assert "Revoked 1 token(s)." in response.content.decode()
    token.refresh_from_db()
    other.refresh_from_db()
    assert token.is_revoked
    assert not other.is_revoked
    assert Client(headers={"Authorization": f"Bearer {key}"}).get("/api/chains").status_code == 401
    assert Client(headers={"Authorization": f"Bearer {other_key}"}).get("/api/chains").status_code == 200
    assert "revoked" in admin_client.get(LIST_URL).content.decode()


def test_staff_mint_tokens_only_for_themselves(admin_user: User) -> None:
    clerk = make_user("clerk", "api.add_apitoken", "api.view_apitoken", "api.change_apitoken")
    client = Client()
    client.force_login(clerk)
    ApiToken.objects.issue(admin_user, "the superuser's")
    # The superuser is not a choice, and the user field cannot be forced to it.
    response = client.post(ADD_URL, {"user": admin_user.pk, "name": "escalate"})
    assert response.status_code == 200
    assert not ApiToken.objects.filter(name="escalate").exists()
    assert "errornote" in response.content.decode()
    response = client.post(ADD_URL, {"user": clerk.pk, "name": "mine"})
    assert ApiToken.objects.get(name="mine").user == clerk
    # They see only their own tokens.
    html = client.get(LIST_URL).content.decode()
    assert "mine" in html
    assert "the superuser&#x27;s" not in html


def test_the_user_of_a_token_cannot_be_changed(admin_client: Client, admin_user: User) -> None:
    other = make_user("other")
    token, _ = ApiToken.objects.issue(other, "t")
    url = reverse("admin:api_apitoken_change", args=[token.pk])
    admin_client.post(url, {"user": admin_user.pk, "name": "renamed"})
    token.refresh_from_db()
    assert (token.user, token.name) == (other, "renamed")
