"""/api/triggers: list, create (validated like the admin), toggle; chains.execute for what runs."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.contrib.admin.models import LogEntry as AdminLogEntry
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from api.tests.helpers import errors_of, make_user, post_json, token_client
from chains.models import Chain, ChainRun, Workflow, WorkflowRun
from triggers.models import Trigger
from triggers.scheduler import tick

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _tmp_path_is_a_file_trigger_root(settings: Settings, tmp_path: Path) -> None:
    """File triggers read only under RPA_FILE_TRIGGER_ROOTS: these tests watch tmp_path."""
    settings.RPA_FILE_TRIGGER_ROOTS = [str(tmp_path)]


@pytest.fixture
def nightly(workflows: list[Workflow]) -> Chain:
    return Chain.objects.create_with_steps("nightly", "Nightly", ["login", "submit"])


def create(client: Client, **body: Any) -> Any:
    return post_json(client, "/api/triggers", body)


def test_it_creates_a_schedule_trigger_for_a_chain(api: Client, nightly: Chain) -> None:
    response = create(
        api, name="every 5 min", trigger_type="schedule", chain="nightly", config={"interval_seconds": 300}
    )
    assert response.status_code == 201
    body = response.json()
    trigger = Trigger.objects.get()
    assert body["id"] == trigger.pk
    assert (body["chain"], body["workflow"], body["enabled"]) == ("nightly", None, True)
    assert body["config"] == {"interval_seconds": 300}
    assert trigger.next_fire_at is not None
    assert body["next_fire_at"] is not None


def test_it_creates_file_and_manual_triggers_for_a_workflow(
    api: Client, workflows: list[Workflow], tmp_path: Path
) -> None:
    file_body = {"path": str(tmp_path), "pattern": "*.csv"}
    response = create(
        api, name="inbox", trigger_type="file", workflow="login", config=file_body, enabled=False
    )
    assert response.status_code == 201
    assert response.json()["workflow"] == "login"
    response = create(api, name="by hand", trigger_type="manual", workflow="submit")
    assert response.status_code == 201
    assert list(Trigger.objects.order_by("name").values_list("name", "enabled", "workflow__slug")) == [
        ("by hand", True, "submit"),
        ("inbox", False, "login"),
    ]


def test_it_lists_triggers(api: Client, nightly: Chain, workflows: list[Workflow]) -> None:
    Trigger.objects.create(name="b", trigger_type="manual", workflow=workflows[0])
    Trigger.objects.create(name="a", trigger_type="schedule", chain=nightly, config={"cron": "0 2 * * *"})
    response = api.get("/api/triggers")
    assert response.status_code == 200
    listed = response.json()
    assert [(t["name"], t["trigger_type"], t["workflow"], t["chain"]) for t in listed] == [
        ("a", "schedule", None, "nightly"),
        ("b", "manual", "login", None),
    ]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"config": {"interval_seconds": 0}}, "config", "interval_seconds"),
        ({"config": {"cron": "* * *"}}, "config", "cron"),
        ({"config": {"interval_seconds": 60, "timezone": "Mars/Olympus"}}, "config", "timezone"),
        ({"config": {"interval_seconds": 60, "colour": "red"}}, "config", "colour"),
        ({"config": {}}, "config", ""),
        ({"config": [1, 2]}, "config", ""),
        ({"config": "every minute"}, "config", ""),
        ({"trigger_type": "file", "config": {"path": "/no/such/dir"}}, "config", "RPA_FILE_TRIGGER_ROOTS"),
        ({"trigger_type": "manual", "config": {"x": 1}}, "config", "no config"),
        ({"trigger_type": "sometimes"}, "trigger_type", ""),
        ({"chain": "nope"}, "chain", "nope"),
        ({"chain": "bad slug\x00"}, "chain", ""),
        ({"chain": None, "workflow": "ghost"}, "workflow", "ghost"),
        ({"chain": None}, "workflow", "exactly one target"),
        ({"workflow": "login"}, "workflow", "exactly one target"),
        ({"name": ""}, "name", ""),
        ({"name": "x" * 201}, "name", ""),
        ({"name": "nul\x00"}, "name", ""),
        ({"enabled": "perhaps"}, "enabled", ""),
        ({"overlap": "sometimes"}, "overlap", ""),
        ({"params": [1]}, "params", ""),
        ({"colour": "red"}, "colour", ""),
    ],
)
def test_it_refuses_bad_triggers_naming_the_field_and_stores_nothing(
    api: Client, nightly: Chain, body: dict[str, Any], field: str, words: str
) -> None:
    base = {"name": "t", "trigger_type": "schedule", "chain": "nightly", "config": {"interval_seconds": 60}}
    response = create(api, **{**base, **body})
    assert response.status_code == 400
    errors = errors_of(response)
    assert field in errors, errors
    assert words in errors[field]
    assert not Trigger.objects.exists()


def test_toggle_flips_enabled_and_persists(api: Client, nightly: Chain, staff: User) -> None:
    trigger = Trigger.objects.create(name="t", chain=nightly, config={"interval_seconds": 60})
    assert trigger.next_fire_at is not None
    response = post_json(api, f"/api/triggers/{trigger.pk}/toggle")
    assert response.status_code == 200
    assert response.json() == {"id": trigger.pk, "enabled": False, "next_fire_at": None}
    trigger.refresh_from_db()
    assert (trigger.enabled, trigger.next_fire_at) == (False, None)
    response = post_json(api, f"/api/triggers/{trigger.pk}/toggle")
    assert response.json()["enabled"] is True
    trigger.refresh_from_db()
    assert trigger.enabled
    assert trigger.next_fire_at is not None
    history = AdminLogEntry.objects.filter(object_id=str(trigger.pk)).order_by("id")
    assert [(e.user_id, e.change_message.split(" via ")[0]) for e in history] == [
        (staff.pk, "Disabled"),
        (staff.pk, "Enabled"),
    ]


@pytest.mark.parametrize("trigger_id", ["999", "0", "-1", str(2**63), "9" * 40])
def test_toggle_of_an_unknown_id_is_404_naming_it(api: Client, nightly: Chain, trigger_id: str) -> None:
    response = post_json(api, f"/api/triggers/{trigger_id}/toggle")
    assert response.status_code == 404
    assert trigger_id in errors_of(response)["trigger"]


@pytest.mark.parametrize("trigger_id", ["abc", "1.5", "%00"])
def test_toggle_of_a_non_numeric_id_is_400_naming_it(api: Client, trigger_id: str) -> None:
    response = post_json(api, f"/api/triggers/{trigger_id}/toggle")
    assert response.status_code == 400
    assert "trigger_id" in errors_of(response)


# -- chains.execute: a trigger starts runs (DESIGN §14) -----------------------------------------

TRIGGER_PERMISSIONS = ["triggers.view_trigger", "triggers.add_trigger", "triggers.change_trigger"]
SCHEDULE = {"name": "every minute", "trigger_type": "schedule", "config": {"interval_seconds": 60}}


@pytest.fixture
def editor() -> User:
    """Staff with the trigger permissions, but not chains.execute."""
    return make_user("editor", *TRIGGER_PERMISSIONS)


def test_it_refuses_a_create_without_execute_naming_the_permission(
    editor: User, workflows: list[Workflow], nightly: Chain
) -> None:
    for target in ({"workflow": "login"}, {"chain": "nightly"}):
        response = create(token_client(editor), **SCHEDULE, **target)
        assert response.status_code == 403
        assert "chains.execute" in errors_of(response)["permission"]
    assert not Trigger.objects.exists()


def test_a_tick_runs_nothing_for_a_trigger_a_non_executor_tried_to_create(
    editor: User, workflows: list[Workflow]
) -> None:
    create(token_client(editor), **SCHEDULE, workflow="login")
    later = timezone.now() + timedelta(minutes=5)
    with time_machine.travel(later, tick=False):
        tick(later)
    assert WorkflowRun.objects.count() + ChainRun.objects.count() == 0


def test_it_refuses_a_toggle_that_enables_without_execute(editor: User, nightly: Chain) -> None:
    trigger = Trigger.objects.create(name="t", chain=nightly, config={"interval_seconds": 60}, enabled=False)
    response = post_json(token_client(editor), f"/api/triggers/{trigger.pk}/toggle")
    assert response.status_code == 403
    assert "chains.execute" in errors_of(response)["permission"]
    trigger.refresh_from_db()
    assert (trigger.enabled, trigger.next_fire_at) == (False, None)


def test_it_lets_a_non_executor_disable_with_toggle(editor: User, nightly: Chain) -> None:
    trigger = Trigger.objects.create(name="t", chain=nightly, config={"interval_seconds": 60})
    response = post_json(token_client(editor), f"/api/triggers/{trigger.pk}/toggle")
    assert (response.status_code, response.json()["enabled"]) == (200, False)
