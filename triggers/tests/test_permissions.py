"""Admin: trigger writes that decide what runs (create, enable, change target/type/config/params/overlap)
need chains.execute on every path, beside the trigger permission (DESIGN §14); renaming and
disabling do not."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from api.tests.helpers import make_user
from chains.models import Workflow, WorkflowRun
from triggers.models import Trigger

pytestmark = pytest.mark.django_db

TRIGGER_PERMISSIONS = [
    "triggers.view_trigger",
    "triggers.add_trigger",
    "triggers.change_trigger",
    "triggers.delete_trigger",
    "chains.view_workflow",
    "chains.view_chain",
]
SCHEDULE = {"name": "every minute", "trigger_type": "schedule", "config": {"interval_seconds": 60}}


@pytest.fixture
def workflow() -> Workflow:
    return Workflow.objects.create(slug="bot", name="bot", command=["true"])


@pytest.fixture
def other(workflow: Workflow) -> Workflow:
    return Workflow.objects.create(slug="other", name="other", command=["true"])


@pytest.fixture
def editor() -> User:
    """Staff with every trigger permission, but not chains.execute."""
    return make_user("editor", *TRIGGER_PERMISSIONS)


@pytest.fixture
def executor() -> User:
    return make_user("executor", *TRIGGER_PERMISSIONS, "chains.execute")


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def trigger_of(workflow: Workflow, **fields: Any) -> Trigger:
    fields = {"name": "every minute", "config": {"interval_seconds": 60}, **fields}
    return Trigger.objects.create(workflow=workflow, **fields)


# --- Admin ----------------------------------------------------------------------------------


def admin_add(client: Client, workflow: Workflow) -> Any:
    data = {
        "name": "every minute",
        "trigger_type": "schedule",
        "workflow": str(workflow.pk),
        "config": '{"interval_seconds": 60}',
        "params": "{}",
        "overlap": "skip",
        "enabled": "on",
    }
    return client.post(reverse("admin:triggers_trigger_add"), data)


def admin_change(client: Client, trigger: Trigger, **changes: str) -> Any:
    data = {
        "name": trigger.name,
        "trigger_type": trigger.trigger_type,
        "workflow": str(trigger.workflow_id),
        "config": '{"interval_seconds": 60}',
        "params": "{}",
        "overlap": trigger.overlap,
        **({"enabled": "on"} if trigger.enabled else {}),
        **changes,
    }
    return client.post(reverse("admin:triggers_trigger_change", args=[trigger.pk]), data)


def test_it_refuses_an_admin_add_without_execute_with_a_clear_error(editor: User, workflow: Workflow) -> None:
    response = admin_add(logged_in(editor), workflow)
    assert response.status_code == 200
    html = response.content.decode()
    assert "errornote" in html
    assert "chains.execute" in html
    assert not Trigger.objects.exists()


def test_it_adds_in_the_admin_with_execute(executor: User, workflow: Workflow) -> None:
    assert admin_add(logged_in(executor), workflow).status_code == 302
    assert Trigger.objects.count() == 1


@pytest.mark.parametrize(
    "changes",
    [
        {"config": '{"interval_seconds": 5}'},
        # The admin's hidden "initial" inputs come from the client: they prove nothing.
        {"config": '{"interval_seconds": 5}', "initial-config": '{"interval_seconds": 5}'},
        {"params": '{"amount": 1000000}'},
        {"trigger_type": "manual", "config": "{}"},
        {"overlap": "allow"},
    ],
)
def test_it_refuses_admin_changes_of_what_runs_without_execute(
    editor: User, workflow: Workflow, changes: dict[str, str]
) -> None:
    trigger = trigger_of(workflow)
    response = admin_change(logged_in(editor), trigger, **changes)
    assert response.status_code == 200
    assert "chains.execute" in response.content.decode()
    stored = Trigger.objects.get()
    assert (stored.config, stored.params, stored.trigger_type, stored.overlap) == (
        {"interval_seconds": 60},
        {},
        "schedule",
        "skip",
    )


def test_it_refuses_an_admin_change_of_target_without_execute(
    editor: User, workflow: Workflow, other: Workflow
) -> None:
    trigger = trigger_of(workflow)
    response = admin_change(logged_in(editor), trigger, workflow=str(other.pk))
    assert "chains.execute" in response.content.decode()
    assert Trigger.objects.get().workflow == workflow


def test_it_refuses_enabling_in_the_admin_form_without_execute(editor: User, workflow: Workflow) -> None:
    trigger = trigger_of(workflow, enabled=False)
    response = admin_change(logged_in(editor), trigger, enabled="on")
    assert "chains.execute" in response.content.decode()
    assert not Trigger.objects.get().enabled


def test_it_lets_a_non_executor_rename_and_disable_in_the_admin(editor: User, workflow: Workflow) -> None:
    trigger = trigger_of(workflow)
    response = admin_change(logged_in(editor), trigger, name="renamed")
    assert response.status_code == 302, response.content.decode()[
        response.content.decode().find("errornote") :
    ][:600]
    trigger.refresh_from_db()
    assert trigger.name == "renamed"
    response = logged_in(editor).post(
        reverse("admin:triggers_trigger_changelist"),
        {"action": "disable", "_selected_action": [trigger.pk]},
    )
    assert response.status_code == 302
    assert not Trigger.objects.get().enabled


def test_it_refuses_the_enable_action_without_execute_with_a_message(
    editor: User, workflow: Workflow
) -> None:
    trigger = trigger_of(workflow, enabled=False)
    response = logged_in(editor).post(
        reverse("admin:triggers_trigger_changelist"),
        {"action": "enable", "_selected_action": [trigger.pk]},
        follow=True,
    )
    assert "chains.execute" in response.content.decode()
    trigger.refresh_from_db()
    assert (trigger.enabled, trigger.next_fire_at) == (False, None)


def test_it_enables_with_the_action_with_execute(executor: User, workflow: Workflow) -> None:
    trigger = trigger_of(workflow, enabled=False)
    logged_in(executor).post(
        reverse("admin:triggers_trigger_changelist"), {"action": "enable", "_selected_action": [trigger.pk]}
    )
    assert Trigger.objects.get().enabled


def test_it_does_not_offer_fire_now_without_execute(editor: User, workflow: Workflow) -> None:
    trigger = trigger_of(workflow, trigger_type=Trigger.Type.MANUAL, config={})
    response = logged_in(editor).post(
        reverse("admin:triggers_trigger_changelist"),
        {"action": "fire_selected", "_selected_action": [trigger.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert not WorkflowRun.objects.exists()
    assert not Trigger.objects.get().fires.exists()
