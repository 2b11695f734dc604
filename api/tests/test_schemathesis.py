"""schemathesis against /api/openapi.json on a real HTTP server (issue 11: the schema says what is accepted).

Every operation gets the examples, coverage and fuzzing phases (a fixed number of
derandomized examples, so CI sees the same cases every run), sent over real HTTP to
pytest-django's live server as a superuser's API token. Each response must be no 5xx,
of a documented status and content type, match its documented schema; schema-invalid
requests must be refused and schema-valid ones accepted (see `accepts_valid_data`).
The live server's rows are flushed after the test (a transactional test), so nothing leaks.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from api.models import ApiToken
from api.views import api
from chains.models import Chain, Workflow
from credentials.models import Secret

MAX_EXAMPLES = 12  # per operation and phase: about a minute on this machine
STORED_VALUE = "correct horse battery staple"  # the value of the secret the fixture stores

# Refusals that depend on what is stored, which no schema can state: (field, what the error
# says). Slugs naming workflows or chains that do not exist, a chain slug already taken, a
# trigger's config (a file trigger's directory must exist, a schedule must ever fire), a cursor
# this API never handed out, a start after the end, a secret name already taken, group names
# that name no group. Any other 400 for schema-valid data is a
# schema that promises more than the API accepts.
STATE_REFUSALS = {
    "POST /api/chains": {("workflows", "unknown workflow"), ("slug", "already exists")},
    "POST /api/triggers": {("workflow", "unknown workflow"), ("chain", "unknown chain"), ("config", "")},
    "GET /api/logs": {("cursor", "not a cursor this API returned"), ("start", "is after end")},
    "GET /api/logs/download": {("start", "is after end")},
    "POST /api/secrets": {("name", "already exists"), ("allowed_groups", "unknown groups")},
    "PATCH /api/secrets/{name}": {("allowed_groups", "unknown groups")},
}


def accepts_valid_data(ctx: Any, response: Any, case: Any) -> bool | None:
    """schemathesis's positive_data_acceptance, but for the refusals in STATE_REFUSALS."""
    if response.status_code == 400:
        known = STATE_REFUSALS.get(case.operation.label, set())
        errors = response.json()["errors"]
        if all(any(e["field"] == f and text in e["error"] for f, text in known) for e in errors):
            return None
    return checks.positive_data_acceptance(ctx, response, case)


def never_shows_a_value(ctx: Any, response: Any, case: Any) -> bool | None:
    """No response holds a secret's value: the stored one, nor the one this request sent."""
    body = case.body if isinstance(case.body, dict) else {}
    values = {STORED_VALUE}
    sent = body.get("value")
    # Unless the request put the same text elsewhere (a name is echoed in its errors).
    elsewhere = json.dumps([v for k, v in body.items() if k != "value"]) + str(case.path_parameters)
    if isinstance(sent, str) and len(sent) >= 8 and sent not in elsewhere:
        values.add(sent)
    for value in values:
        for form in (value, json.dumps(value)[1:-1]):  # as is, and as JSON escapes it
            if form.encode(errors="surrogatepass") in response.content:  # downloads may be binary
                raise AssertionError(f"a secret's value is in the response: {response.content[:200]!r}")
    return None


CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
    accepts_valid_data,
    checks.missing_required_header,
    checks.unsupported_method,
    checks.ignored_auth,
    never_shows_a_value,
]


@pytest.fixture
def token(transactional_db: None) -> str:
    from django.contrib.auth.models import Group, User

    user = User.objects.create_superuser("schemathesis", "st@example.com", None)
    for slug in ("login", "submit"):
        Workflow.objects.create(slug=slug, name=slug, command=["true"])
    Chain.objects.create_with_steps("nightly", "Nightly", ["login", "submit"])
    Group.objects.create(name="operators")  # the example of a secret's allowed_groups
    secret = Secret(name="ERP_PASSWORD")  # the example name of /api/secrets/{name}
    secret.value = STORED_VALUE
    secret.save()
    Workflow.objects.get(slug="login").secrets.add(secret)
    return ApiToken.objects.issue(user, "schemathesis")[1]


# Loaded in-process at collection (so each operation is its own test); the test below checks
# that the live server serves this very schema at /api/openapi.json.
schema = schemathesis.openapi.from_dict(api.get_openapi_schema())


def test_it_serves_the_schema_under_test(live_server: Any) -> None:
    served = requests.get(f"{live_server.url}/api/openapi.json", timeout=30)
    assert served.status_code == 200
    assert served.json() == schema.raw_schema


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_it_answers_every_operation_as_its_openapi_schema_says(
    case: Any, live_server: Any, token: str
) -> None:
    case.call_and_validate(
        base_url=live_server.url, headers={"Authorization": f"Bearer {token}"}, checks=CHECKS
    )
