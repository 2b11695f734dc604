"""/api/chains: list, create (all or nothing), execute (enqueued, never run in the request)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry as AdminLogEntry
from django.test import Client
from django_tasks_db.models import DBTaskResult

from api.models import ApiToken
from api.tests.helpers import errors_of, post_json
from chains.models import Chain, ChainRun, ChainStep, Workflow

pytestmark = pytest.mark.django_db


def api_prefix(user: Any) -> str:
    return ApiToken.objects.get(user=user).prefix


def create(client: Client, body: Any) -> Any:
    return post_json(client, "/api/chains", body)


def test_it_lists_chains_with_their_workflows_in_order(api: Client, workflows: list[Workflow]) -> None:
    Chain.objects.create_with_steps("nightly", "Nightly", ["submit", "login", "report"])
    Chain.objects.create_with_steps("adhoc", "Ad hoc", ["login"], enabled=False)
    response = api.get("/api/chains")
    assert response.status_code == 200
    assert response.json() == [
        {"slug": "adhoc", "name": "Ad hoc", "description": "", "enabled": False, "workflows": ["login"]},
        {
            "slug": "nightly",
            "name": "Nightly",
            "description": "",
            "enabled": True,
            "workflows": ["submit", "login", "report"],
        },
    ]


def test_it_lists_in_a_bounded_number_of_queries(
    api: Client, workflows: list[Workflow], django_assert_max_num_queries: Any
) -> None:
    for n in range(20):
        Chain.objects.create_with_steps(f"c{n}", f"c{n}", ["login", "submit"])
    with django_assert_max_num_queries(8):
        assert len(api.get("/api/chains").json()) == 20


def test_it_creates_a_chain_with_its_steps(api: Client, workflows: list[Workflow]) -> None:
    response = create(
        api, {"slug": "invoices", "name": "Invoices", "workflows": ["login", "submit", "login"]}
    )
    assert response.status_code == 201
    assert response.json()["workflows"] == ["login", "submit", "login"]
    chain = Chain.objects.get(slug="invoices")
    assert [s.workflow.slug for s in chain.ordered_steps()] == ["login", "submit", "login"]


def test_it_refuses_unknown_workflows_naming_them_and_writes_nothing(
    api: Client, workflows: list[Workflow]
) -> None:
    response = create(api, {"slug": "x", "name": "x", "workflows": ["login", "nope", "gone"]})
    assert response.status_code == 400
    errors = errors_of(response)
    assert "nope" in errors["workflows"]
    assert "gone" in errors["workflows"]
    assert not Chain.objects.exists()
    assert not ChainStep.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"slug": "has space", "name": "x", "workflows": ["login"]}, "slug"),
        ({"slug": "", "name": "x", "workflows": ["login"]}, "slug"),
        ({"slug": "a" * 101, "name": "x", "workflows": ["login"]}, "slug"),
        ({"slug": "ok", "name": "", "workflows": ["login"]}, "name"),
        ({"slug": "ok", "name": "nul\x00", "workflows": ["login"]}, "name"),
        ({"slug": "ok", "name": "x", "workflows": []}, "workflows"),
        ({"slug": "ok", "name": "x", "workflows": "login"}, "workflows"),
        ({"slug": "ok", "name": "x", "workflows": [1]}, "workflows.0"),
        ({"slug": "ok", "name": "x"}, "workflows"),
        ({"name": "x", "workflows": ["login"]}, "slug"),
        ({"slug": "ok", "name": "x", "workflows": ["login"], "colour": "red"}, "colour"),
        ({"slug": "ok", "name": "x", "workflows": ["login"], "enabled": "maybe"}, "enabled"),
        (["slug", "name"], ""),
    ],
)
def test_it_refuses_bad_chains_naming_the_field(
    api: Client, workflows: list[Workflow], body: Any, field: str
) -> None:
    response = create(api, body)
    assert response.status_code == 400
    if field:
        assert field in errors_of(response)
    else:
        errors_of(response)
    assert not Chain.objects.exists()


def test_it_refuses_a_duplicate_slug(api: Client, workflows: list[Workflow]) -> None:
    Chain.objects.create_with_steps("dup", "first", ["login"])
    response = create(api, {"slug": "dup", "name": "second", "workflows": ["submit"]})
    assert response.status_code == 400
    assert "already exists" in errors_of(response)["slug"]
    assert Chain.objects.get().name == "first"
    assert ChainStep.objects.count() == 1


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b'{"slug": "x",'])
def test_it_answers_400_to_a_body_that_is_not_json(api: Client, body: bytes) -> None:
    response = api.post("/api/chains", body, content_type="application/json")
    assert response.status_code == 400
    assert "body" in errors_of(response)


@pytest.fixture
def nightly(workflows: list[Workflow]) -> Chain:
    return Chain.objects.create_with_steps("nightly", "Nightly", ["login", "submit"])


def test_execute_enqueues_a_run_and_answers_202(
    api: Client, nightly: Chain, staff: Any, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = post_json(api, "/api/chains/nightly/execute")
    assert response.status_code == 202
    body = response.json()
    assert body == {"chain_run_id": body["chain_run_id"], "status": "queued", "chain": "nightly"}
    run = ChainRun.objects.get(pk=body["chain_run_id"])
    assert (run.status, run.requested_by, run.total_steps) == ("queued", staff, 2)
    task = DBTaskResult.objects.get()
    assert task.task_path == "chains.tasks.execute_chain_run"
    assert task.args_kwargs["args"] == [run.pk]
    assert not run.workflow_runs.exists()  # nothing ran inside the request
    # Who did it is in the chain's admin history.
    entry = AdminLogEntry.objects.get(object_id=str(nightly.pk))
    assert entry.user == staff
    assert (
        entry.change_message
        == f"Executed: queued chain run #{run.pk} via API token 'tests' ({api_prefix(staff)}…)"
    )


def test_execute_passes_params(api: Client, nightly: Chain) -> None:
    response = post_json(api, "/api/chains/nightly/execute", {"params": {"file": "/in/a.csv"}})
    assert response.status_code == 202
    assert ChainRun.objects.get().params == {"file": "/in/a.csv"}


@pytest.mark.parametrize("chain_id", ["missing", "bad slug", "%00", "ünïcode", "9" * 30])
def test_execute_of_an_unknown_chain_is_404_naming_it(api: Client, nightly: Chain, chain_id: str) -> None:
    response = post_json(api, f"/api/chains/{chain_id}/execute")
    assert response.status_code == 404
    assert "does not exist" in errors_of(response)["chain"]
    assert not ChainRun.objects.exists()


def test_execute_of_a_disabled_chain_is_refused(api: Client, nightly: Chain) -> None:
    Chain.objects.filter(pk=nightly.pk).update(enabled=False)
    response = post_json(api, "/api/chains/nightly/execute")
    assert response.status_code == 409
    assert "disabled" in errors_of(response)["chain"]
    assert not ChainRun.objects.exists()


def test_execute_of_a_chain_without_steps_is_refused(api: Client) -> None:
    Chain.objects.create(slug="empty", name="empty")
    response = post_json(api, "/api/chains/empty/execute")
    assert response.status_code == 409
    assert "no steps" in errors_of(response)["chain"]
    assert not ChainRun.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"params": "x"},
        {"params": {"file": "a\x00b"}},
        {"params": {"a\x00": 1}},
        {"params": {"nested": ["\ud800"]}},
        {"params": {}, "colour": "red"},
    ],
)
def test_execute_refuses_a_bad_body(api: Client, nightly: Chain, body: dict[str, Any]) -> None:
    response = api.post("/api/chains/nightly/execute", json.dumps(body), content_type="application/json")
    assert response.status_code == 400
    assert {"params", "colour"} & set(errors_of(response))
    assert not ChainRun.objects.exists()
