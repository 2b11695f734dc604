"""File triggers read only under RPA_FILE_TRIGGER_ROOTS (DESIGN §14, §20): paths are resolved at
save and again at every scan; symlinks leaving the roots are skipped and recorded, never read."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from pytest_django.fixtures import Settings

from api.tests.helpers import API_PERMISSIONS, errors_of, make_user, post_json, token_client
from chains.models import Workflow, WorkflowRun
from triggers.models import SeenFile, Trigger, TriggerFire
from triggers.scheduler import tick

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


@pytest.fixture
def inbox(tmp_path: Path, settings: Settings) -> Path:
    inbox = tmp_path / "data" / "inbox"
    inbox.mkdir(parents=True)
    settings.RPA_FILE_TRIGGER_ROOTS = [str(inbox)]
    return inbox


@pytest.fixture
def workflow() -> Workflow:
    return Workflow.objects.create(slug="bot", name="bot", command=["true"])


def file_trigger(workflow: Workflow, path: Path | str, **config: Any) -> Trigger:
    """Saved without validation (as before the roots existed); every file gets its run at once."""
    return Trigger.objects.create(
        name="inbox",
        trigger_type=Trigger.Type.FILE,
        workflow=workflow,
        config={"path": str(path), **config},
        overlap=Trigger.Overlap.ALLOW,
    )


def scans(count: int) -> list[TriggerFire]:
    fires: list[TriggerFire] = []
    for n in range(count):
        now = T0 + timedelta(minutes=n)
        with time_machine.travel(now, tick=False):
            fires += tick(now).fires
    return fires


def config_error(workflow: Workflow, path: str) -> str:
    trigger = Trigger(name="t", trigger_type=Trigger.Type.FILE, workflow=workflow, config={"path": path})
    with pytest.raises(ValidationError) as excinfo:
        trigger.full_clean()
    return " ".join(excinfo.value.message_dict["config"])


# --- At save --------------------------------------------------------------------------------


def test_it_refuses_a_path_that_climbs_out_of_the_roots_naming_the_field_and_the_roots(
    inbox: Path, workflow: Workflow
) -> None:
    climbing = f"{inbox}/{os.path.relpath('/etc', inbox)}"  # <inbox>/../../(...)/etc
    error = config_error(workflow, climbing)
    assert "path" in error
    assert "RPA_FILE_TRIGGER_ROOTS" in error
    assert str(inbox) in error


def test_it_refuses_a_symlinked_directory_leaving_the_roots(inbox: Path, workflow: Workflow) -> None:
    (inbox / "etc").symlink_to("/etc")
    assert "RPA_FILE_TRIGGER_ROOTS" in config_error(workflow, str(inbox / "etc"))


def test_it_accepts_a_directory_under_a_root(inbox: Path, workflow: Workflow) -> None:
    (inbox / "invoices").mkdir()
    for path in (inbox, inbox / "invoices", f"{inbox}/invoices/../invoices"):
        Trigger(
            name="t", trigger_type=Trigger.Type.FILE, workflow=workflow, config={"path": str(path)}
        ).full_clean()


def test_it_refuses_an_outside_path_in_the_api(inbox: Path, workflow: Workflow) -> None:
    climbing = f"{inbox}/{os.path.relpath('/etc', inbox)}"
    body = {"name": "t", "trigger_type": "file", "workflow": "bot", "config": {"path": climbing}}
    response = post_json(token_client(make_user("staff", *API_PERMISSIONS)), "/api/triggers", body)
    assert response.status_code == 400
    assert "RPA_FILE_TRIGGER_ROOTS" in errors_of(response)["config"]
    assert not Trigger.objects.exists()


def test_it_refuses_an_outside_path_in_the_admin(
    inbox: Path, workflow: Workflow, admin_client: Client
) -> None:
    data = {
        "name": "t",
        "trigger_type": "file",
        "workflow": str(workflow.pk),
        "config": '{"path": "/etc"}',
        "params": "{}",
        "overlap": "skip",
    }
    response = admin_client.post(reverse("admin:triggers_trigger_add"), data)
    assert response.status_code == 200
    assert "RPA_FILE_TRIGGER_ROOTS" in response.content.decode()
    assert not Trigger.objects.exists()


# --- At scan --------------------------------------------------------------------------------


def test_it_records_one_error_fire_for_a_stored_trigger_outside_the_roots(
    inbox: Path, workflow: Workflow, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret.csv").write_text("x")
    trigger = file_trigger(workflow, elsewhere)
    fires = scans(4)
    assert [(f.outcome, "RPA_FILE_TRIGGER_ROOTS" in f.detail) for f in fires] == [("error", True)]
    trigger.refresh_from_db()
    assert trigger.enabled
    assert "RPA_FILE_TRIGGER_ROOTS" in trigger.problem
    assert not SeenFile.objects.exists()  # nothing of it was read
    assert not WorkflowRun.objects.exists()


def test_it_stops_reading_a_directory_whose_root_was_removed(
    inbox: Path, workflow: Workflow, settings: Settings, tmp_path: Path
) -> None:
    file_trigger(workflow, inbox)
    settings.RPA_FILE_TRIGGER_ROOTS = [str(tmp_path / "other")]
    (inbox / "a.csv").write_text("x")
    assert [f.outcome for f in scans(3)] == ["error"]
    assert not WorkflowRun.objects.exists()


def test_it_never_fires_a_symlink_leaving_the_roots_and_records_it_once(
    inbox: Path, workflow: Workflow
) -> None:
    (inbox / "passwd.csv").symlink_to("/etc/passwd")
    (inbox / "orders.csv").write_text("a,b\n")
    file_trigger(workflow, inbox)
    fires = scans(4)
    started = [f.workflow_run.params["file"] for f in fires if f.outcome == "started" and f.workflow_run]
    assert started == [str(inbox / "orders.csv")]
    [skipped] = [f for f in fires if f.outcome == "skipped"]
    assert "/etc/passwd" in skipped.detail
    assert "RPA_FILE_TRIGGER_ROOTS" in skipped.detail
    link = SeenFile.objects.get(path=str(inbox / "passwd.csv"))
    assert link.size != os.stat("/etc/passwd").st_size  # its size was never read
    assert link.fire == skipped


def test_it_fires_a_symlink_that_stays_within_the_roots(inbox: Path, workflow: Workflow) -> None:
    (inbox / "archive").mkdir()
    (inbox / "archive" / "real.csv").write_text("x")
    (inbox / "link.csv").symlink_to(inbox / "archive" / "real.csv")
    file_trigger(workflow, inbox, pattern="*.csv")
    assert [f.outcome for f in scans(2)] == ["started"]


def test_it_records_one_error_for_a_vanished_directory_with_a_long_path(
    inbox: Path, workflow: Workflow
) -> None:
    deep = inbox
    while len(str(deep)) <= 520:  # the stored problem is cut at 500 characters
        deep = deep / ("d" * 100)
    deep.mkdir(parents=True)
    trigger = file_trigger(workflow, deep)
    deep.rmdir()
    fires = scans(4)
    assert [f.outcome for f in fires] == ["error"]
    assert str(deep) in fires[0].detail
    assert Trigger.objects.get(pk=trigger.pk).problem
