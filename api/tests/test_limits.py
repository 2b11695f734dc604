"""What one API request may make the server hold or write (issue 11 defects 7 and 8, DESIGN §14, §20).

Chains of at most RPA_MAX_CHAIN_STEPS steps, bodies of at most DATA_UPLOAD_MAX_MEMORY_SIZE
(413), JSON nested at most 100 deep, finite numbers only and params of at most
RPA_MAX_PARAMS_BYTES: each refusal is a 4xx JSON error naming the field and the limit,
with nothing written.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django_tasks_db.models import DBTaskResult

from api.models import ApiToken
from api.tests.helpers import errors_of, post_json
from chains.models import Chain, ChainRun, ChainStep, Workflow
from rpa_monitor.asgi import application
from triggers.models import Trigger

pytestmark = pytest.mark.django_db


@pytest.fixture
def chain(workflows: list[Workflow]) -> Chain:
    return Chain.objects.create_with_steps("nightly", "Nightly", ["login", "submit"])


def post_raw(client: Client, url: str, body: str) -> Any:
    return client.generic("POST", url, body.encode(), content_type="application/json")


def nothing_written() -> bool:
    return (
        not ChainRun.objects.exists() and not DBTaskResult.objects.exists() and not Trigger.objects.exists()
    )


def trigger_body(**fields: Any) -> dict[str, Any]:
    return {"name": "t", "trigger_type": "manual", "chain": "nightly", **fields}


# -- defect 7: chain steps ---------------------------------------------------------


def test_it_refuses_a_chain_of_more_than_max_steps_naming_workflows_and_the_limit(
    api: Client, workflows: list[Workflow]
) -> None:
    body = {"slug": "long", "name": "Long", "workflows": ["login"] * 201}
    response = post_json(api, "/api/chains", body)
    assert response.status_code == 400
    error = errors_of(response)["workflows"]
    assert "200" in error
    assert "RPA_MAX_CHAIN_STEPS" in error
    assert not Chain.objects.filter(slug="long").exists()
    assert not ChainStep.objects.exists()


def test_it_refuses_a_chain_of_100000_steps_without_storing_any(
    api: Client, workflows: list[Workflow]
) -> None:
    body = {"slug": "huge", "name": "Huge", "workflows": ["login"] * 100_000}
    response = post_json(api, "/api/chains", body)
    assert response.status_code == 400
    assert "100,000 given" in errors_of(response)["workflows"]
    assert not ChainStep.objects.exists()


def test_it_creates_a_chain_of_exactly_max_steps(api: Client, workflows: list[Workflow]) -> None:
    body = {"slug": "full", "name": "Full", "workflows": ["login", "submit"] * 100}
    response = post_json(api, "/api/chains", body)
    assert response.status_code == 201
    assert ChainStep.objects.filter(chain__slug="full").count() == settings.RPA_MAX_CHAIN_STEPS


# -- defect 8: request size ---------------------------------------------------------


@pytest.mark.parametrize("url", ["/api/chains", "/api/chains/nightly/execute", "/api/triggers"])
def test_it_answers_a_body_over_the_upload_limit_with_413_json_naming_the_limit(
    api: Client, chain: Chain, url: str
) -> None:
    body = json.dumps({"params": {"x": "a" * 3_000_000}})
    response = post_raw(api, url, body)
    assert response.status_code == 413
    error = errors_of(response)["body"]
    assert "2,621,440 bytes" in error
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in error
    assert nothing_written()


def test_it_documents_413_for_every_operation() -> None:
    schema = Client().get("/api/openapi.json").json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert "413" in operation["responses"], (method, path)


def test_it_answers_a_chunked_body_over_the_limit_with_413_json(
    transactional_db: None, staff: User, chain: Chain
) -> None:
    # No Content-Length (chunked, over ASGI): Django finds it too big as the view reads it.
    # (Committed rows: the ASGI handler runs the view on a thread of its own.)
    _, key = ApiToken.objects.issue(staff, "chunked")
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/chains/nightly/execute",
        "query_string": b"",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", f"Bearer {key}".encode()),
            (b"content-type", b"application/json"),
        ],
    }

    async def call() -> tuple[dict[str, Any], dict[str, Any]]:
        communicator = ApplicationCommunicator(application, scope)
        for _ in range(3):
            await communicator.send_input(
                {"type": "http.request", "body": b" " * 1_000_000, "more_body": True}
            )
        await communicator.send_input({"type": "http.request", "body": b"{}", "more_body": False})
        return await communicator.receive_output(60), await communicator.receive_output(60)

    start, body = async_to_sync(call)()
    assert start["status"] == 413
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in json.loads(body["body"])["errors"][0]["error"]
    assert nothing_written()


def test_it_refuses_a_content_length_that_is_not_a_number(api: Client, chain: Chain) -> None:
    response = api.generic("POST", "/api/chains/nightly/execute", b"{}", CONTENT_LENGTH="12abc")
    assert response.status_code == 400
    assert "content-length" in errors_of(response)
    assert nothing_written()


# -- defect 8: nesting, non-finite numbers, params size -------------------------------


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [101, 800, 900, 5000, 100_000])
@pytest.mark.parametrize(
    ("url", "template", "field"),
    [
        ("/api/chains/nightly/execute", '{"params": {"x": %s}}', "params"),
        (
            "/api/triggers",
            '{"name": "t", "trigger_type": "manual", "chain": "nightly", "params": {"x": %s}}',
            "params",
        ),
        (
            "/api/triggers",
            '{"name": "t", "trigger_type": "manual", "chain": "nightly", "config": {"x": %s}}',
            "config",
        ),
    ],
)
def test_it_refuses_json_nested_too_deeply_with_400(
    api: Client, chain: Chain, depth: int, url: str, template: str, field: str
) -> None:
    response = post_raw(api, url, template % nested(depth))
    assert response.status_code == 400, response.content[:300]
    errors = errors_of(response)
    assert field in errors or "body" in errors, errors
    assert nothing_written()


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
@pytest.mark.parametrize(
    ("url", "template", "field"),
    [
        ("/api/chains/nightly/execute", '{"params": {"retries": %s}}', "params"),
        ("/api/chains/nightly/execute", '{"params": {"a": {"b": [1, %s]}}}', "params"),
        (
            "/api/triggers",
            '{"name": "t", "trigger_type": "manual", "chain": "nightly", "params": {"x": %s}}',
            "params",
        ),
        (
            "/api/triggers",
            '{"name": "t", "trigger_type": "schedule", "chain": "nightly", '
            '"config": {"interval_seconds": %s}}',
            "config",
        ),
        (
            "/api/triggers",
            '{"name": "t", "trigger_type": "manual", "chain": "nightly", "config": {"x": %s}}',
            "config",
        ),
    ],
)
def test_it_refuses_non_finite_numbers_naming_the_field(
    api: Client, chain: Chain, number: str, url: str, template: str, field: str
) -> None:
    response = post_raw(api, url, template % number)
    assert response.status_code == 400, response.content[:300]
    assert field in errors_of(response)
    assert nothing_written()


def params_of_size(size: int) -> dict[str, str]:
    """Params whose RPA_PARAMS (json.dumps) is exactly `size` bytes."""
    return {"x": "a" * (size - len(json.dumps({"x": ""})))}


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/api/chains/nightly/execute", lambda params: {"params": params}),
        ("/api/triggers", lambda params: trigger_body(params=params)),
    ],
)
def test_it_refuses_params_over_the_limit_naming_it(api: Client, chain: Chain, url: str, body: Any) -> None:
    response = post_json(api, url, body(params_of_size(65_537)))
    assert response.status_code == 400
    error = errors_of(response)["params"]
    assert "65,536" in error
    assert "RPA_MAX_PARAMS_BYTES" in error
    assert nothing_written()


def test_it_counts_params_as_the_bot_receives_them(api: Client, chain: Chain) -> None:
    # RPA_PARAMS escapes non-ASCII text: 11,000 "ü" are 66,000 bytes there.
    response = post_json(api, "/api/chains/nightly/execute", {"params": {"x": "ü" * 11_000}})
    assert response.status_code == 400
    assert "RPA_MAX_PARAMS_BYTES" in errors_of(response)["params"]


def test_it_accepts_params_of_exactly_the_limit(api: Client, chain: Chain) -> None:
    response = post_json(api, "/api/chains/nightly/execute", {"params": params_of_size(65_536)})
    assert response.status_code == 202
    assert len(json.dumps(ChainRun.objects.get().params)) == 65_536


# -- list query parameters ---------------------------------------------------------------


def test_it_refuses_a_filter_given_more_than_once(api: Client) -> None:
    response = api.get("/api/logs?level=INFO&level=ERROR&level=DEBUG")
    assert response.status_code == 400
    assert "3 times" in errors_of(response)["level"]
