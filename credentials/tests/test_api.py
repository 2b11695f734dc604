"""/api/secrets: create, list, change and delete secrets; no response ever holds a value."""

from __future__ import annotations

import itertools
import json
import string
from typing import Any
from urllib.parse import quote

import jsonschema_rs
import pytest
from django.contrib.admin.models import LogEntry as AdminLogEntry
from django.contrib.auth.models import Group, User
from django.test import Client
from hypothesis import given, settings
from hypothesis import strategies as st

from api.tests.helpers import errors_of, rolled_back, token_client
from api.views import api as ninja_api
from chains.models import Workflow
from credentials.models import Secret
from credentials.tests.helpers import VALUE, make_secret, make_user, raw_ciphertext

pytestmark = pytest.mark.django_db

URL = "/api/secrets"
FIELDS = {"name", "description", "allowed_groups", "workflows", "created_at", "updated_at", "rotated_at"}


@pytest.fixture
def api(superuser: User) -> Client:
    return token_client(superuser)


def create(api: Client, **body: Any) -> Any:
    return api.post(URL, {"name": "ERP_PASSWORD", "value": VALUE, **body}, content_type="application/json")


def assert_no_value(response: Any, *secrets: Secret) -> None:
    text = response.content.decode()
    assert VALUE not in text
    for secret in secrets:
        assert raw_ciphertext(secret)[:20] not in text


def test_it_creates_a_secret_and_answers_without_its_value(api: Client) -> None:
    response = create(api, description="ERP robot login")
    assert response.status_code == 201
    secret = Secret.objects.get()
    assert_no_value(response, secret)
    body = response.json()
    assert set(body) == FIELDS
    assert (body["name"], body["description"], body["workflows"]) == ("ERP_PASSWORD", "ERP robot login", [])
    assert secret.reveal() == VALUE
    assert VALUE not in raw_ciphertext(secret)


def test_it_lists_names_never_values_a_page_at_a_time(api: Client) -> None:
    for name in ("B_TOKEN", "A_TOKEN", "C_TOKEN"):
        create(api, name=name)
    Workflow.objects.create(slug="erp-login", name="ERP", command=["true"]).secrets.add(
        Secret.objects.get(name="A_TOKEN")
    )
    first = api.get(URL, {"limit": 2})
    assert_no_value(first, *Secret.objects.all())
    page = first.json()
    assert [item["name"] for item in page["items"]] == ["A_TOKEN", "B_TOKEN"]
    assert page["items"][0]["workflows"] == ["erp-login"]
    assert all(set(item) == FIELDS for item in page["items"])
    rest = api.get(URL, {"limit": 2, "cursor": page["next_cursor"]}).json()
    assert ([item["name"] for item in rest["items"]], rest["next_cursor"]) == (["C_TOKEN"], None)


def test_it_shows_one_secret_without_its_value(api: Client) -> None:
    create(api)
    response = api.get(f"{URL}/ERP_PASSWORD")
    assert response.status_code == 200
    assert response.json()["name"] == "ERP_PASSWORD"
    assert_no_value(response, Secret.objects.get())


def test_it_changes_the_value_and_description(api: Client) -> None:
    create(api)
    before = Secret.objects.get().rotated_at
    body = {"value": "a brand new passphrase", "description": "rotated"}
    response = api.patch(f"{URL}/ERP_PASSWORD", body, content_type="application/json")
    assert response.status_code == 200
    assert "a brand new passphrase" not in response.content.decode()
    secret = Secret.objects.get()
    assert (secret.reveal(), secret.description) == ("a brand new passphrase", "rotated")
    assert secret.rotated_at > before


def test_it_keeps_the_value_when_a_patch_omits_it(api: Client) -> None:
    create(api)
    before = raw_ciphertext(Secret.objects.get())
    group = Group.objects.create(name="finance")
    response = api.patch(
        f"{URL}/ERP_PASSWORD", {"allowed_groups": ["finance"]}, content_type="application/json"
    )
    assert response.json()["allowed_groups"] == ["finance"]
    secret = Secret.objects.get()
    assert (raw_ciphertext(secret), list(secret.allowed_groups.all())) == (before, [group])


def test_it_deletes_a_secret(api: Client) -> None:
    create(api)
    assert api.delete(f"{URL}/ERP_PASSWORD").status_code == 204
    assert not Secret.objects.exists()
    assert errors_of(api.delete(f"{URL}/ERP_PASSWORD")) == {"name": "secret ERP_PASSWORD does not exist"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "1BAD"}, "name"),
        ({"name": "BAD-NAME"}, "name"),
        ({"name": "RPA_RUN_ID"}, "name"),
        ({"value": "abc"}, "value"),
        ({"value": "with\u0000nul"}, "value"),
        ({"allowed_groups": ["nobody"]}, "allowed_groups"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_it_refuses_bad_input_naming_the_field(api: Client, body: dict[str, Any], field: str) -> None:
    response = create(api, **body)
    assert response.status_code == 400
    assert list(errors_of(response)) == [field]
    assert VALUE not in response.content.decode()
    assert not Secret.objects.exists()


def test_it_refuses_a_second_secret_of_the_same_name(api: Client) -> None:
    create(api)
    response = create(api, value="another value")
    assert response.status_code == 400
    assert list(errors_of(response)) == ["name"]
    assert Secret.objects.get().reveal() == VALUE


def test_it_answers_404_for_a_name_that_cannot_exist(api: Client) -> None:
    assert errors_of(api.get(f"{URL}/NO%00NAME")) == {"name": "secret NO\x00NAME does not exist"}


def test_it_needs_the_secret_permissions() -> None:
    viewer = token_client(make_user("viewer", "credentials.view_secret"))
    assert viewer.get(URL).status_code == 200
    refused = [
        viewer.post(URL, {"name": "X_TOKEN", "value": VALUE}, content_type="application/json"),
        viewer.patch(f"{URL}/X_TOKEN", {"value": VALUE}, content_type="application/json"),
        viewer.delete(f"{URL}/X_TOKEN"),
        token_client(make_user("nobody")).get(URL),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403, 403]
    assert "credentials.add_secret" in errors_of(refused[0])["permission"]


def test_it_records_who_changed_a_secret_without_the_value(api: Client) -> None:
    create(api)
    api.patch(f"{URL}/ERP_PASSWORD", {"value": "a brand new passphrase"}, content_type="application/json")
    messages = list(AdminLogEntry.objects.order_by("id").values_list("change_message", flat=True))
    assert [m.split(" via ")[0] for m in messages] == ["Added", "Changed value"]
    assert not any(VALUE in m or "brand new" in m for m in messages)


TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT)
BODIES = st.one_of(
    st.dictionaries(
        st.sampled_from(["name", "value", "description", "allowed_groups"]),
        SCALARS | st.lists(SCALARS, max_size=3) | st.sampled_from(["ERP_PASSWORD", "long-enough"]),
        max_size=4,
    ),
    st.lists(SCALARS, max_size=3),
    SCALARS,
)


@given(st.sampled_from(["post", "patch"]), st.sampled_from(["ERP_PASSWORD"]) | TEXT, BODIES)
def test_property_hostile_input_is_a_json_error_naming_a_field_never_a_500(
    api: Client, method: str, name: str, body: Any
) -> None:
    with rolled_back():
        make_secret("ERP_PASSWORD", VALUE)
        url = URL if method == "post" else f"{URL}/{quote(name, safe='')}"
        response = getattr(api, method)(url, json.dumps(body), content_type="application/json")
        assert response.status_code in (200, 201, 400, 404), response.content
        if response.status_code >= 400:
            errors_of(response)
        assert VALUE not in response.content.decode()


# -- the OpenAPI schema says exactly what is accepted (issue 11) ---------------------------

SCHEMAS = ninja_api.get_openapi_schema()["components"]["schemas"]
ALMOST_NAMES = st.text(st.sampled_from("RrPpAa_1Z-\n"), max_size=6)
NAMES = st.sampled_from(["SAP_TOKEN", "", "_", "A" * 100, "A" * 101, "rpa_x", "É"]) | ALMOST_NAMES
VALUES = st.builds(
    lambda char, count: char * count,
    st.sampled_from(["a", "€", "\U0001f600", "\n", "\x00"]),  # 1, 3 and 4 bytes of UTF-8; NUL
    st.sampled_from([0, 3, 4, 16_384, 16_385]),
) | st.text(st.characters(exclude_categories=["Cs"]), max_size=8)
GROUP_NAMES = st.sampled_from(["finance", "", "f" * 150, "f" * 151, "fin\x00ance"])
FIELDS_IN = {
    "name": NAMES,
    "value": VALUES,
    "description": st.sampled_from(["", "ERP robot", "no\x00pe"]),
    "allowed_groups": st.lists(GROUP_NAMES, max_size=3) | st.just(["finance"] * 101) | st.none(),
}


def bodies(required: list[str], optional: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {key: FIELDS_IN[key] for key in required}, optional={key: FIELDS_IN[key] for key in optional}
    )


def assert_schema_says_it(schema: str, body: dict[str, Any], response: Any, ok: int) -> None:
    """Schema-valid: `ok`, or refused only for a group that does not exist; else 400."""
    if jsonschema_rs.validator_for(SCHEMAS[schema]).is_valid(body):
        if response.status_code != ok:
            assert errors_of(response).keys() == {"allowed_groups"}, response.content
            assert errors_of(response)["allowed_groups"].startswith("unknown groups")
    else:
        assert response.status_code == 400, response.content
        errors_of(response)


@given(bodies(["name", "value"], ["description", "allowed_groups"]))
@settings(max_examples=150)
def test_property_it_creates_exactly_the_secrets_its_schema_allows(api: Client, body: dict[str, Any]) -> None:
    with rolled_back():
        Group.objects.create(name="finance")
        response = api.post(URL, body, content_type="application/json")
        assert_schema_says_it("SecretIn", body, response, 201)


@given(bodies([], ["value", "description", "allowed_groups"]))
@settings(max_examples=100)
def test_property_it_changes_exactly_what_its_schema_allows(api: Client, body: dict[str, Any]) -> None:
    with rolled_back():
        Group.objects.create(name="finance")
        make_secret("ERP_PASSWORD", VALUE)
        response = api.patch(f"{URL}/ERP_PASSWORD", body, content_type="application/json")
        assert_schema_says_it("SecretPatch", body, response, 200)


def test_it_refuses_a_list_of_groups_beyond_its_bound(api: Client) -> None:
    # 250,001 names (1.7 MB) in one IN (...) were more variables than SQLite allows: a 500.
    names = ["".join(chars) for chars in itertools.product(string.ascii_letters + string.digits, repeat=3)]
    names += [f"{name}_" for name in names[: 250_001 - len(names)]]
    response = create(api, allowed_groups=names)
    assert response.status_code == 400
    assert "at most 100" in errors_of(response)["allowed_groups"]
    assert not Secret.objects.exists()
