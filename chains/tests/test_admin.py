"""The chains admin: bounded queries, workflow and chain forms, actions that enqueue."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from chains.models import (
    Chain,
    ChainRun,
    ChainRunCount,
    ChainStep,
    RunStatus,
    Workflow,
    WorkflowRun,
    WorkflowRunCount,
)
from logs.models import LogEntry
from rpa_monitor.test import manage

pytestmark = pytest.mark.django_db

PY = sys.executable

# Queries per page, whatever the number of rows: session, user, count, rows,
# filter choices, savepoints. An N+1 over 30 rows blows well past it.
MAX_QUERIES = 10


def command(slug: str, *argv: str, **fields: Any) -> Workflow:
    return Workflow.objects.create(slug=slug, name=slug, command=list(argv), **fields)


def finished_run(workflow: Workflow, status: str = RunStatus.SUCCESS, **fields: Any) -> WorkflowRun:
    now = timezone.now()
    run = WorkflowRun.objects.create(
        workflow=workflow,
        status=status,
        started_at=now - timedelta(seconds=3),
        finished_at=now,
        exit_code=0 if status == RunStatus.SUCCESS else 1,
        host="bot-host",
        pid=4242,
        **fields,
    )
    WorkflowRunCount.objects.bump(workflow.pk, status)
    return run


def finished_chain_run(chain: Chain, user: User | None, fail_at: int | None = None) -> ChainRun:
    steps = chain.ordered_steps()
    now = timezone.now()
    chain_run = ChainRun.objects.create(
        chain=chain,
        status=RunStatus.FAILURE if fail_at else RunStatus.SUCCESS,
        started_at=now - timedelta(seconds=10),
        finished_at=now,
        total_steps=len(steps),
        failed_step=fail_at,
        error=f"step {fail_at} failed\nexit code 1" if fail_at else "",
        requested_by=user,
    )
    for step in steps:
        failed = step.position == fail_at
        finished_run(
            step.workflow,
            RunStatus.FAILURE if failed else RunStatus.SUCCESS,
            chain_run=chain_run,
            position=step.position,
            error="boom\nexit code 1" if failed else "",
        )
        if failed:
            break
    ChainRunCount.objects.bump(chain.pk, chain_run.status)
    return chain_run


def populate(n: int) -> dict[str, Any]:
    """n workflows with runs, n chains of 3 steps with runs, and one chain of n steps."""
    user = User.objects.create_user("requester")
    workflows = [command(f"wf-{i:03d}", "true") for i in range(n)]
    for i, workflow in enumerate(workflows):
        finished_run(workflow, RunStatus.FAILURE if i % 4 == 0 else RunStatus.SUCCESS, requested_by=user)
    for i in range(n):
        slugs = [workflows[(i + k) % n].slug for k in range(3)]
        chain = Chain.objects.create_with_steps(f"chain-{i:03d}", f"chain {i}", slugs)
        finished_chain_run(chain, user if i % 2 else None, fail_at=2 if i % 3 == 0 else None)
    big = Chain.objects.create_with_steps("big", "big", [w.slug for w in workflows])
    big_run = finished_chain_run(big, user)
    return {"workflow": workflows[0], "chain": big, "chain_run": big_run, "step_run": big_run.step_runs()[-1]}


def change_url(obj: Any) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


CHANGELISTS = ["workflow", "chain", "chainrun", "workflowrun"]


@pytest.mark.parametrize("n", [5, 30])
@pytest.mark.parametrize("model", CHANGELISTS)
def test_it_renders_changelists_in_bounded_queries(
    admin_client: Client, django_assert_max_num_queries: Any, n: int, model: str
) -> None:
    populate(n)
    with django_assert_max_num_queries(MAX_QUERIES):
        response = admin_client.get(reverse(f"admin:chains_{model}_changelist"))
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) >= n


@pytest.mark.parametrize("n", [5, 30])
@pytest.mark.parametrize("key", ["workflow", "chain", "chain_run", "step_run"])
def test_it_renders_change_pages_in_bounded_queries(
    admin_client: Client, django_assert_max_num_queries: Any, n: int, key: str
) -> None:
    obj = populate(n)[key]
    with django_assert_max_num_queries(MAX_QUERIES):
        response = admin_client.get(change_url(obj))
    assert response.status_code == 200


def test_it_renders_the_add_pages(admin_client: Client) -> None:
    for model in ("workflow", "chain"):
        assert admin_client.get(reverse(f"admin:chains_{model}_add")).status_code == 200


def test_it_shows_the_chain_sequence_and_last_execution(admin_client: Client) -> None:
    for slug in ("a", "b", "c"):
        command(slug, "true")
    chain = Chain.objects.create_with_steps("abc", "abc", ["a", "b", "c"])
    chain_run = finished_chain_run(chain, None, fail_at=2)
    response = admin_client.get(reverse("admin:chains_chain_changelist"))
    assert "a → b → c" in response.content.decode()
    assert change_url(chain_run) in response.content.decode()
    assert "0%" in response.content.decode()  # one decided run, failed


# --- Workflow form ---------------------------------------------------------------


def workflow_data(**overrides: str) -> dict[str, str]:
    data = {
        "slug": "login",
        "name": "Login",
        "description": "",
        "enabled": "on",
        "kind": "command",
        "command": "python examples/login.py --fast",
        "callable": "",
        "working_dir": "",
        "environment": "{}",
        "timeout_seconds": "60",
        "max_retries": "0",
        "retry_delay_seconds": "0",
    }
    return data | overrides


def add_workflow(client: Client, **overrides: str) -> Any:
    return client.post(reverse("admin:chains_workflow_add"), workflow_data(**overrides))


def form_errors(response: Any) -> dict[str, list[str]]:
    assert response.status_code == 200, "the form was accepted"
    return dict(response.context["adminform"].form.errors)


def test_it_stores_a_typed_command_line_as_argv_and_shows_it_back(admin_client: Client) -> None:
    response = add_workflow(admin_client, command="sh -c 'echo hi there'  --fast")
    assert response.status_code == 302
    workflow = Workflow.objects.get(slug="login")
    assert workflow.command == ["sh", "-c", "echo hi there", "--fast"]
    form = admin_client.get(change_url(workflow)).context["adminform"].form
    assert form["command"].value() == "sh -c 'echo hi there' --fast"


def test_it_saves_the_example_command_line(admin_client: Client) -> None:
    assert add_workflow(admin_client).status_code == 302
    assert Workflow.objects.get().command == ["python", "examples/login.py", "--fast"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"command": ""}, "command"),
        ({"command": "python 'unclosed"}, "command"),
        ({"kind": "python", "command": "", "callable": "no_such_package.jobs:run"}, "callable"),
        ({"kind": "python", "command": "", "callable": "examples.python_jobs:no_such_function"}, "callable"),
        ({"kind": "python", "command": "", "callable": ""}, "callable"),
        ({"timeout_seconds": "-5"}, "timeout_seconds"),
        ({"timeout_seconds": "0"}, "timeout_seconds"),
        ({"environment": '{"TOKEN": 1}'}, "environment"),
        ({"environment": '{"TOKEN": '}, "environment"),
        ({"environment": '["TOKEN"]'}, "environment"),
        ({"working_dir": "no/such/dir"}, "working_dir"),
    ],
)
def test_it_refuses_invalid_workflows_naming_the_field(
    admin_client: Client, overrides: dict[str, str], field: str
) -> None:
    errors = form_errors(add_workflow(admin_client, **overrides))
    assert list(errors) == [field]
    assert not Workflow.objects.exists()


def test_it_saves_a_python_workflow_with_an_environment(admin_client: Client) -> None:
    response = add_workflow(
        admin_client,
        kind="python",
        command="",
        callable="examples.python_jobs:daily_report",
        environment='{"REGION": "eu"}',
    )
    assert response.status_code == 302
    workflow = Workflow.objects.get()
    assert (workflow.kind, workflow.environment) == ("python", {"REGION": "eu"})


# --- Chain form with inline steps ----------------------------------------------


def chain_data(*steps: tuple[int, Workflow | str], slug: str = "abc") -> dict[str, Any]:
    data: dict[str, Any] = {
        "slug": slug,
        "name": slug,
        "description": "",
        "enabled": "on",
        "steps-TOTAL_FORMS": str(len(steps)),
        "steps-INITIAL_FORMS": "0",
        "steps-MIN_NUM_FORMS": "1",
        "steps-MAX_NUM_FORMS": "1000",
    }
    for i, (position, workflow) in enumerate(steps):
        data[f"steps-{i}-position"] = str(position)
        data[f"steps-{i}-workflow"] = str(workflow.pk if isinstance(workflow, Workflow) else workflow)
    return data


def add_chain(client: Client, *steps: tuple[int, Workflow | str]) -> Any:
    return client.post(reverse("admin:chains_chain_add"), chain_data(*steps))


def abc() -> list[Workflow]:
    return [command(slug, "true") for slug in ("a", "b", "c")]


def step_errors(response: Any) -> str:
    assert response.status_code == 200, "the form was accepted"
    formset = response.context["inline_admin_formsets"][0].formset
    return str(formset.non_form_errors()) + str(formset.errors)


def test_it_saves_a_chain_with_its_steps_in_order(admin_client: Client) -> None:
    a, b, c = abc()
    response = add_chain(admin_client, (3, c), (1, a), (2, b))
    assert response.status_code == 302
    chain = Chain.objects.get(slug="abc")
    assert [(s.position, s.workflow.slug) for s in chain.ordered_steps()] == [(1, "a"), (2, "b"), (3, "c")]
    assert chain.sequence == "a → b → c"


def test_it_refuses_a_chain_without_steps(admin_client: Client) -> None:
    abc()
    assert "at least one step" in step_errors(add_chain(admin_client))
    assert not Chain.objects.exists()


def test_it_refuses_a_chain_whose_only_step_is_deleted(admin_client: Client) -> None:
    a, _, _ = abc()
    data = chain_data((1, a)) | {"steps-0-DELETE": "on"}
    response = admin_client.post(reverse("admin:chains_chain_add"), data)
    assert "at least one step" in step_errors(response)
    assert not Chain.objects.exists()


def test_it_refuses_an_unknown_workflow_and_keeps_the_chosen_ones(admin_client: Client) -> None:
    a, b, _ = abc()
    response = add_chain(admin_client, (1, a), (2, "999999"), (3, b))
    assert "Select a valid choice" in step_errors(response)
    assert not Chain.objects.exists()
    assert not ChainStep.objects.exists()
    # The re-rendered rows still show what was chosen.
    page = response.content.decode()
    assert f'<option value="{a.pk}" selected>a</option>' in page
    assert f'<option value="{b.pk}" selected>b</option>' in page


def test_it_refuses_two_steps_at_the_same_position(admin_client: Client) -> None:
    a, b, _ = abc()
    assert "duplicate" in step_errors(add_chain(admin_client, (1, a), (1, b)))
    assert not Chain.objects.exists()


def test_it_shows_the_saved_steps_on_the_chain_page(admin_client: Client) -> None:
    abc()
    chain = Chain.objects.create_with_steps("abc", "abc", ["c", "a", "b"])
    response = admin_client.get(change_url(chain))
    formset = response.context["inline_admin_formsets"][0].formset
    assert [str(form.instance.workflow) for form in formset.forms] == ["c", "a", "b"]
    for workflow in Workflow.objects.all():
        assert f'<option value="{workflow.pk}" selected>{workflow.slug}</option>' in response.content.decode()


# --- Actions enqueue; a real worker runs them -------------------------------------


def hello_chain() -> Chain:
    command("hello", PY, "-c", "print('hi')")
    command("done", "true")
    return Chain.objects.create_with_steps("hello", "hello", ["hello", "done"])


def execute_url(chain: Chain) -> str:
    return reverse("admin:chains_chain_execute", args=[chain.pk])


def run_action(client: Client, model: str, action: str, *objs: Any) -> Any:
    url = reverse(f"admin:chains_{model}_changelist")
    return client.post(url, {"action": action, "_selected_action": [o.pk for o in objs]})


def assert_queued_untouched(task_path: str, *run_ids: int) -> None:
    """Queued rows and task rows exist; nothing ran inside the request."""
    tasks = sorted((t.task_path, t.args_kwargs["args"], t.status) for t in DBTaskResult.objects.all())
    assert tasks == [(task_path, [run_id], "READY") for run_id in sorted(run_ids)]
    assert not WorkflowRun.objects.exclude(status=RunStatus.QUEUED).exists()
    assert not LogEntry.objects.filter(run__isnull=False).exists()


def test_it_queues_chains_from_the_execute_action(
    admin_client: Client, admin_user: User, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    chain = hello_chain()
    with django_capture_on_commit_callbacks(execute=True):
        response = run_action(admin_client, "chain", "execute", chain)
    assert response.status_code == 302
    chain_run = ChainRun.objects.get()
    assert (chain_run.status, chain_run.requested_by, chain_run.total_steps) == ("queued", admin_user, 2)
    assert not WorkflowRun.objects.exists()
    assert_queued_untouched("chains.tasks.execute_chain_run", chain_run.pk)


def test_it_queues_a_chain_from_the_execute_button(
    admin_client: Client, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    chain = hello_chain()
    page = admin_client.get(change_url(chain)).content.decode()
    assert f'action="{execute_url(chain)}"' in page
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(execute_url(chain))
    chain_run = ChainRun.objects.get()
    assert response["Location"] == change_url(chain_run)
    assert chain_run.status == RunStatus.QUEUED
    assert_queued_untouched("chains.tasks.execute_chain_run", chain_run.pk)


def test_it_refuses_to_execute_on_get(admin_client: Client) -> None:
    chain = hello_chain()
    assert admin_client.get(execute_url(chain)).status_code == 405
    assert not ChainRun.objects.exists()


def test_it_reports_a_chain_without_steps_on_the_chain_page(admin_client: Client) -> None:
    chain = Chain.objects.create(slug="empty", name="empty")
    response = admin_client.post(execute_url(chain), follow=True)
    assert response.redirect_chain == [(change_url(chain), 302)]
    assert "has no steps" in response.content.decode()
    assert not ChainRun.objects.exists()


def test_it_requires_a_staff_login_to_execute(client: Client) -> None:
    chain = hello_chain()
    response = client.post(execute_url(chain))
    assert response.status_code == 302
    assert "/login/" in response["Location"]
    assert not ChainRun.objects.exists()


def test_it_queues_workflows_from_the_run_now_action(
    admin_client: Client, admin_user: User, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    one, two = command("one", "true"), command("two", "true")
    with django_capture_on_commit_callbacks(execute=True):
        response = run_action(admin_client, "workflow", "run_now", one, two)
    assert response.status_code == 302
    runs = list(WorkflowRun.objects.order_by("id"))
    assert [(r.workflow, r.status, r.requested_by) for r in runs] == [
        (one, "queued", admin_user),
        (two, "queued", admin_user),
    ]
    assert_queued_untouched("chains.tasks.execute_workflow_run", *(r.pk for r in runs))


def drain_queue() -> None:
    result = manage("db_worker", "--batch", "--no-startup-delay", "--no-reload")
    assert result.returncode == 0, result.stderr
    assert set(DBTaskResult.objects.values_list("status", flat=True)) == {"SUCCESSFUL"}


@pytest.mark.django_db(transaction=True)
def test_it_runs_an_executed_chain_in_a_real_worker(admin_client: Client) -> None:
    chain = hello_chain()
    admin_client.post(execute_url(chain))
    chain_run = ChainRun.objects.get()
    assert chain_run.status == RunStatus.QUEUED
    assert DBTaskResult.objects.count() == 1  # enqueued when the request's work committed
    drain_queue()
    chain_run.refresh_from_db()
    assert chain_run.status == RunStatus.SUCCESS, chain_run.error
    assert [r.status for r in chain_run.step_runs()] == ["success", "success"]
    first = chain_run.step_runs()[0]
    assert LogEntry.objects.filter(run=first, message="hi", workflow_id="hello").exists()


@pytest.mark.django_db(transaction=True)
def test_it_runs_a_run_now_workflow_in_a_real_worker(admin_client: Client) -> None:
    workflow = command("hello", PY, "-c", "print('hi')")
    run_action(admin_client, "workflow", "run_now", workflow)
    run = WorkflowRun.objects.get()
    assert run.status == RunStatus.QUEUED
    drain_queue()
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCESS, run.error
    assert run.finished_at is not None
    assert list(LogEntry.objects.filter(run=run, component="bot").values_list("message", flat=True)) == ["hi"]


# --- Run admins: history, read-only ---------------------------------------------


@pytest.mark.parametrize("model", [ChainRun, WorkflowRun])
def test_it_keeps_run_admins_read_only(admin_client: Client, model: type[Any]) -> None:
    chain_run = finished_chain_run(hello_chain(), None)
    obj = chain_run if model is ChainRun else chain_run.step_runs()[0]
    name = f"admin:chains_{model._meta.model_name}"
    model_admin = admin.site._registry[model]
    assert model_admin.show_full_result_count is False
    assert model_admin.show_facets is admin.ShowFacets.NEVER
    assert admin_client.get(reverse(f"{name}_add")).status_code == 403
    assert admin_client.post(reverse(f"{name}_delete", args=[obj.pk]), {"post": "yes"}).status_code == 403
    assert admin_client.post(change_url(obj), {"status": "success"}).status_code == 403
    page = admin_client.get(change_url(obj)).content.decode()
    assert 'name="_save"' not in page
    assert model.objects.filter(pk=obj.pk).exists()


def test_it_filters_runs_by_status_and_date(admin_client: Client) -> None:
    workflow = command("w", "true")
    old = finished_run(workflow, RunStatus.FAILURE)
    WorkflowRun.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    recent_failure = finished_run(workflow, RunStatus.FAILURE)
    finished_run(workflow, RunStatus.SUCCESS)
    url = reverse("admin:chains_workflowrun_changelist")
    since = (timezone.localdate() - timedelta(days=1)).isoformat()
    response = admin_client.get(url, {"status__exact": "failure", "since": since})
    assert list(response.context["cl"].result_list) == [recent_failure]
    response = admin_client.get(url, {"status__exact": "failure", "until": since})
    assert list(response.context["cl"].result_list) == [old]
