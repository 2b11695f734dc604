"""/api/chain-runs/<id>/cancel|resume and /api/workflow-runs/<id>/cancel."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from api.tests.helpers import errors_of, post_json
from chains.models import Chain, ChainRun, RunStatus, Workflow, WorkflowRun
from chains.runner import create_chain_run, run_chain

pytestmark = pytest.mark.django_db


@pytest.fixture
def chain() -> Chain:
    Workflow.objects.create(slug="ok", name="ok", command=["true"])
    Workflow.objects.create(slug="bad", name="bad", command=["false"])
    return Chain.objects.create_with_steps("okbad", "ok then bad", ["ok", "bad"])


def test_it_cancels_a_queued_chain_run(api: Client, chain: Chain) -> None:
    chain_run = create_chain_run(chain)
    response = post_json(api, f"/api/chain-runs/{chain_run.pk}/cancel")
    assert (response.status_code, response.json()) == (200, {"id": chain_run.pk, "status": "cancelled"})
    chain_run.refresh_from_db()
    assert chain_run.status == RunStatus.CANCELLED
    again = post_json(api, f"/api/chain-runs/{chain_run.pk}/cancel")
    assert again.status_code == 409
    assert "already finished" in errors_of(again)["chain_run"]


def test_it_cancels_a_queued_workflow_run(api: Client, chain: Chain) -> None:
    run = WorkflowRun.objects.create(workflow=Workflow.objects.get(slug="ok"))
    response = post_json(api, f"/api/workflow-runs/{run.pk}/cancel")
    assert response.status_code == 200
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED


def test_it_resumes_a_failed_chain_run_from_its_failure_point(api: Client, chain: Chain) -> None:
    failed = run_chain(chain)
    response = post_json(api, f"/api/chain-runs/{failed.pk}/resume")
    assert response.status_code == 202
    body: dict[str, Any] = response.json()
    resumed = ChainRun.objects.get(pk=body["chain_run_id"])
    assert body == {
        "chain_run_id": resumed.pk,
        "status": "queued",
        "chain": "okbad",
        "resumed_from": failed.pk,
        "start_position": 2,
    }
    assert resumed.resumed_from_id == failed.pk


def test_it_refuses_to_resume_a_run_that_did_not_fail(api: Client, chain: Chain) -> None:
    queued = create_chain_run(chain)
    response = post_json(api, f"/api/chain-runs/{queued.pk}/resume")
    assert response.status_code == 409
    assert "chain_run" in errors_of(response)


@pytest.mark.parametrize(
    "url", ["/api/chain-runs/{}/cancel", "/api/chain-runs/{}/resume", "/api/workflow-runs/{}/cancel"]
)
@pytest.mark.parametrize("run_id", ["999999", "0", "99999999999999999999"])
def test_unknown_runs_are_404_naming_the_run(api: Client, url: str, run_id: str) -> None:
    response = post_json(api, url.format(run_id))
    assert response.status_code in (404, 422, 400)
    assert response.status_code != 500
    assert errors_of(response)


def test_anonymous_users_cannot_cancel(chain: Chain) -> None:
    chain_run = create_chain_run(chain)
    response = post_json(Client(), f"/api/chain-runs/{chain_run.pk}/cancel")
    assert response.status_code == 401
    chain_run.refresh_from_db()
    assert chain_run.status == RunStatus.QUEUED
