"""Control of work: cancel queued and running runs, resume a chain from its failure point, permissions."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from django.contrib.admin.models import LogEntry as AdminLogEntry
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from chains.models import Chain, ChainRun, RunStatus, Workflow, WorkflowRun
from chains.runner import cancel_run, create_chain_run, resume_chain_run, run_chain
from rpa_monitor.errors import ChainExecutionError
from rpa_monitor.test import start_manage, wait_for_running_run

PY = sys.executable


def command(slug: str, *argv: str) -> Workflow:
    return Workflow.objects.create(slug=slug, name=slug, command=list(argv))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def staff_without_execute(db: None) -> Client:
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    for codename in ("view_chain", "view_chainrun", "view_workflow", "view_workflowrun"):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_it_cancels_a_queued_chain_run_from_the_admin_and_records_who(admin_client: Client) -> None:
    command("one", "true")
    chain = Chain.objects.create_with_steps("c", "c", ["one"])
    chain_run = create_chain_run(chain)
    url = reverse("admin:chains_chainrun_changelist")
    admin_client.post(url, {"action": "cancel", "_selected_action": [chain_run.pk]})
    chain_run.refresh_from_db()
    assert chain_run.status == RunStatus.CANCELLED
    assert "cancelled by admin" in chain_run.error
    entry = AdminLogEntry.objects.get(object_id=str(chain_run.pk))
    assert (entry.user_id, entry.change_message) == (User.objects.get(username="admin").pk, "Cancelled")
    assert (
        run_chain(chain, chain_run=chain_run).status == RunStatus.CANCELLED
    )  # the worker then starts nothing
    assert not WorkflowRun.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_cancelling_a_running_chain_stops_its_bot_and_starts_no_later_step() -> None:
    command("slow", "sleep", "30")
    command("after", "true")
    Chain.objects.create_with_steps("slowchain", "slow", ["slow", "after"])
    proc = start_manage("run_chain", "slowchain")
    run = wait_for_running_run("slow")
    assert run.pid is not None
    chain_run = ChainRun.objects.get()
    started = time.monotonic()
    assert cancel_run(chain_run, "cancelled by test")
    proc.communicate(timeout=30)
    assert time.monotonic() - started < 15
    assert proc.returncode == 1
    run.refresh_from_db()
    chain_run.refresh_from_db()
    assert (run.status, chain_run.status) == (RunStatus.CANCELLED, RunStatus.CANCELLED)
    assert not _alive(run.pid)
    assert not WorkflowRun.objects.filter(workflow__slug="after").exists()


@pytest.mark.django_db
def test_it_resumes_a_failed_chain_from_the_failed_step(tmp_path: Path) -> None:
    flag = tmp_path / "fixed"
    command("first", "true")
    command("second", "test", "-e", str(flag))
    command("third", "true")
    chain = Chain.objects.create_with_steps("abc", "abc", ["first", "second", "third"])
    failed = run_chain(chain)
    assert (failed.status, failed.failed_step) == (RunStatus.FAILURE, 2)
    flag.write_text("ok")
    resumed = resume_chain_run(failed)
    assert (resumed.start_position, resumed.resumed_from) == (2, failed)
    resumed = run_chain(chain, chain_run=resumed)
    assert resumed.status == RunStatus.SUCCESS
    assert [r.workflow.slug for r in resumed.step_runs()] == ["second", "third"]
    with pytest.raises(ChainExecutionError):
        resume_chain_run(resumed)  # a successful run has nothing to resume


@pytest.mark.django_db
def test_the_resume_action_queues_a_linked_run(admin_client: Client) -> None:
    command("bad", "false")
    chain = Chain.objects.create_with_steps("bad", "bad", ["bad"])
    failed = run_chain(chain)
    admin_client.post(
        reverse("admin:chains_chainrun_changelist"), {"action": "resume", "_selected_action": [failed.pk]}
    )
    resumed = ChainRun.objects.get(resumed_from=failed)
    assert (resumed.status, resumed.start_position) == (RunStatus.QUEUED, 1)
    assert AdminLogEntry.objects.filter(
        object_id=str(failed.pk), change_message__startswith="Resumed"
    ).exists()


@pytest.mark.django_db
def test_staff_without_the_execute_permission_gets_no_execute_or_cancel(
    staff_without_execute: Client,
) -> None:
    command("one", "true")
    chain = Chain.objects.create_with_steps("c", "c", ["one"])
    for name in ("chains_chain", "chains_workflow", "chains_chainrun", "chains_workflowrun"):
        html = staff_without_execute.get(reverse(f"admin:{name}_changelist")).content.decode()
        for action in ('value="execute"', 'value="run_now"', 'value="cancel"', 'value="resume"'):
            assert action not in html, (name, action)
    page = staff_without_execute.get(reverse("admin:chains_chain_change", args=[chain.pk])).content.decode()
    assert reverse("admin:chains_chain_execute", args=[chain.pk]) not in page  # no Execute button
    response = staff_without_execute.post(reverse("admin:chains_chain_execute", args=[chain.pk]))
    assert response.status_code == 403
    assert not ChainRun.objects.exists()


@pytest.mark.django_db
def test_what_a_workflow_executes_needs_its_own_permission() -> None:
    workflow = command("bot", "true")
    user = User.objects.create_user("editor", password="pw", is_staff=True)
    for codename in ("view_workflow", "change_workflow", "add_workflow"):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client()
    client.force_login(user)
    url = reverse("admin:chains_workflow_change", args=[workflow.pk])
    form = {
        "slug": "bot",
        "name": "renamed",
        "timeout_seconds": "60",
        "max_retries": "0",
        "retry_delay_seconds": "0",
    }
    response = client.post(url, {**form, "command": "rm -rf /tmp/x", "kind": "command"})
    assert response.status_code == 302
    workflow.refresh_from_db()
    assert (workflow.name, workflow.command) == ("renamed", ["true"])  # the name changed, the command did not
    assert client.get(reverse("admin:chains_workflow_add")).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="change_execution"))
    client.force_login(User.objects.get(pk=user.pk))
    client.post(url, {**form, "command": "echo hi", "kind": "command", "environment": "{}"})
    workflow.refresh_from_db()
    assert workflow.command == ["echo", "hi"]
