"""Workflow and chain validation, the step order constraint, and the run_chain / run_workflow commands."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from chains.models import Chain, ChainRun, ChainStep, RunStatus, Workflow, WorkflowRun
from rpa_monitor.errors import WorkflowNotFoundError
from rpa_monitor.test import manage


def workflow(**fields: Any) -> Workflow:
    return Workflow(**{"slug": "bot", "name": "bot", "command": ["true"], **fields})


def python_workflow(callable_path: str) -> Workflow:
    return workflow(kind=Workflow.Kind.PYTHON, command=[], callable=callable_path)


def validation_errors(instance: Workflow | Chain) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as excinfo:
        instance.full_clean()
    return excinfo.value.message_dict


def stored_fields(instance: Workflow) -> dict[str, Any]:
    """The values a person gives a workflow (every editable column)."""
    return {
        f.attname: f.value_from_object(instance)
        for f in Workflow._meta.concrete_fields
        if f.editable and not f.primary_key
    }


def command(slug: str, *argv: str) -> Workflow:
    return Workflow.objects.create(slug=slug, name=slug, command=list(argv))


# --- Validation -----------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "instance",
    [
        workflow(),
        workflow(command=["python", "-m", "examples.login"], environment={"PORTAL_URL": "x", "_RETRY_2": ""}),
        workflow(working_dir="examples"),
        python_workflow("examples.python_jobs:daily_report"),
    ],
)
def test_it_accepts_valid_workflows(instance: Workflow) -> None:
    given = stored_fields(instance)
    instance.full_clean()  # a refusal raises ValidationError
    instance.save()
    assert stored_fields(Workflow.objects.get(slug=instance.slug)) == given


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("instance", "field"),
    [
        (workflow(command=[]), "command"),
        (workflow(command=["echo", 1]), "command"),
        (workflow(command="echo hello"), "command"),
        (workflow(command=[" "]), "command"),
        (workflow(command=["echo", "a\x00b"]), "command"),
        (python_workflow(""), "callable"),
        (python_workflow("no_such_package_xyz.jobs:run"), "callable"),
        (python_workflow("examples.python_jobs:no_such_function"), "callable"),
        (python_workflow("chains.models:ENV_NAME_CHARS"), "callable"),  # a frozenset
        (python_workflow("not a dotted path"), "callable"),
        (workflow(timeout_seconds=0), "timeout_seconds"),
        (workflow(timeout_seconds=-5), "timeout_seconds"),
        (workflow(environment={"1ST": "x"}), "environment"),
        (workflow(environment={"BAD-NAME": "x"}), "environment"),
        (workflow(environment={"A B": "x"}), "environment"),
        (workflow(environment={"": "x"}), "environment"),
        (workflow(environment={"RETRIES": 3}), "environment"),
        (workflow(environment={"TOKEN": None}), "environment"),
        (workflow(environment={"TOKEN": "a\x00b"}), "environment"),
        (workflow(environment=["A=1"]), "environment"),
        (workflow(working_dir="/no/such/directory"), "working_dir"),
        (workflow(working_dir="no-such-subdirectory"), "working_dir"),
    ],
)
def test_it_refuses_invalid_workflows_naming_the_field(instance: Workflow, field: str) -> None:
    assert set(validation_errors(instance)) == {field}


@pytest.mark.django_db
def test_it_names_the_offending_value_in_environment_and_working_dir_errors() -> None:
    assert "'BAD-NAME'" in validation_errors(workflow(environment={"BAD-NAME": "x"}))["environment"][0]
    assert "RETRIES" in validation_errors(workflow(environment={"RETRIES": 3}))["environment"][0]
    assert (
        "/no/such/directory"
        in validation_errors(workflow(working_dir="/no/such/directory"))["working_dir"][0]
    )


@pytest.mark.django_db
def test_it_refuses_a_chain_without_workflows() -> None:
    with pytest.raises(ValidationError) as excinfo:
        Chain.objects.create_with_steps("empty", "empty", [])
    assert "workflows" in excinfo.value.message_dict
    assert not Chain.objects.exists()


@pytest.mark.django_db
def test_it_refuses_workflows_given_as_anything_but_slugs() -> None:
    command("one", "true")
    with pytest.raises(ValidationError) as excinfo:
        Chain.objects.create_with_steps("ids", "ids", [1])  # type: ignore[list-item]
    assert "workflows" in excinfo.value.message_dict
    assert not Chain.objects.exists()


@pytest.mark.django_db
def test_it_refuses_bad_chain_fields_without_writing_rows() -> None:
    command("one", "true")
    Chain.objects.create_with_steps("taken", "taken", ["one"])
    for slug, name in [("not a slug!", "x"), ("taken", "again"), ("fine", "")]:
        with pytest.raises(ValidationError):
            Chain.objects.create_with_steps(slug, name, ["one"])
    assert list(Chain.objects.values_list("slug", flat=True)) == ["taken"]
    assert ChainStep.objects.count() == 1


@pytest.mark.django_db
def test_it_names_unknown_workflow_slugs_holding_nul_bytes() -> None:
    # Regression, PostgreSQL (chains/models.py resolve_workflows): the slug__in query with a
    # NUL byte raises psycopg.DataError ("PostgreSQL text fields cannot contain NUL")
    # instead of WorkflowNotFoundError, so the API answers 500. Passes on SQLite.
    command("login", "true")
    with pytest.raises(WorkflowNotFoundError) as excinfo:
        Chain.objects.create_with_steps("nul", "nul", ["login", "bad\x00slug"])
    assert excinfo.value.slugs == ["bad\x00slug"]
    assert not Chain.objects.exists()


# Regression (chains/models.py ChainManager.create_with_steps / resolve_workflows): JSON input
# can carry a lone surrogate (the JSON escape \ud800 decodes to one). It passes full_clean
# and the slug lookup, then the database driver raises UnicodeEncodeError: a 500 instead of
# WorkflowNotFoundError / ValidationError (DESIGN §10: bad input never yields a 500).
@pytest.mark.django_db
def test_it_names_unknown_workflow_slugs_holding_lone_surrogates() -> None:
    command("one", "true")
    with pytest.raises(WorkflowNotFoundError):
        Chain.objects.create_with_steps("s", "s", ["one", "x\ud800"])
    assert not Chain.objects.exists()


@pytest.mark.django_db
def test_it_refuses_chain_names_holding_lone_surrogates() -> None:
    command("one", "true")
    with pytest.raises(ValidationError):
        Chain.objects.create_with_steps("s", "\ud800", ["one"])
    assert not Chain.objects.exists()


@pytest.mark.django_db
def test_it_shows_the_chain_sequence_in_step_order() -> None:
    for slug in ("a", "b", "c"):
        command(slug, "true")
    assert Chain.objects.create_with_steps("abc", "abc", ["a", "b", "c"]).sequence == "a → b → c"
    Chain.objects.create_with_steps("cab", "cab", ["c", "a", "b", "a"])
    prefetched = Chain.objects.prefetch_related("steps__workflow").get(slug="cab")
    assert prefetched.sequence == "c → a → b → a"


@pytest.mark.django_db
def test_it_refuses_two_steps_in_the_same_position_in_the_database() -> None:
    one, two = command("one", "true"), command("two", "true")
    chain = Chain.objects.create_with_steps("pair", "pair", ["one"])
    with pytest.raises(IntegrityError), transaction.atomic():
        ChainStep.objects.create(chain=chain, position=1, workflow=two)
    with pytest.raises(IntegrityError), transaction.atomic():
        ChainStep.objects.bulk_create([ChainStep(chain=chain, position=2, workflow=w) for w in (one, two)])
    assert [(s.position, s.workflow.slug) for s in chain.ordered_steps()] == [(1, "one")]


# --- Commands, as real processes --------------------------------------------------------------


def chain_of(slug: str, *programs: str) -> Chain:
    slugs = [f"{slug}-{i}" for i in range(1, len(programs) + 1)]
    for step_slug, program in zip(slugs, programs, strict=True):
        command(step_slug, program)
    return Chain.objects.create_with_steps(slug, slug, slugs)


def test_it_runs_a_chain_command_printing_one_line_per_step(transactional_db: None) -> None:
    chain_of("good", "true", "true", "true")
    result = manage("run_chain", "good")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    chain_run = ChainRun.objects.get()
    assert [line.split(" run ")[0] for line in lines[:-1]] == [
        "step 1 good-1",
        "step 2 good-2",
        "step 3 good-3",
    ]
    assert all(" success " in line for line in lines[:-1])
    assert lines[-1].startswith(f"chain good run {chain_run.pk} success: 3 steps")
    assert chain_run.status == RunStatus.SUCCESS


def test_it_exits_1_from_run_chain_naming_the_failure_point(transactional_db: None) -> None:
    chain_of("bad", "true", "false", "true")
    result = manage("run_chain", "bad")
    assert result.returncode == 1
    chain_run = ChainRun.objects.get()
    assert (
        f"CommandError: chain bad run {chain_run.pk} failure at step 2: step 2 (bad-2) failure"
        in result.stderr
    )
    assert [line.split(" run ")[0] for line in result.stdout.splitlines()] == ["step 1 bad-1", "step 2 bad-2"]
    assert chain_run.failed_step == 2
    assert not WorkflowRun.objects.filter(workflow__slug="bad-3").exists()


@pytest.mark.parametrize(
    ("name", "missing"), [("run_chain", "chain nope does not exist"), ("run_workflow", "nope")]
)
def test_it_refuses_an_unknown_id_in_one_line(transactional_db: None, name: str, missing: str) -> None:
    result = manage(name, "nope")
    assert result.returncode != 0
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("CommandError: ")
    assert missing in line


@pytest.mark.parametrize("name", ["run_chain", "run_workflow"])
@pytest.mark.parametrize(
    ("params", "error"),
    [("{not json", "--params is not valid JSON"), ("[1, 2]", "--params must be a JSON object")],
)
def test_it_refuses_bad_params_json(transactional_db: None, name: str, params: str, error: str) -> None:
    chain_of("target", "true")
    target = "target" if name == "run_chain" else "target-1"
    result = manage(name, target, "--params", params)
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"CommandError: {error}")
    assert not ChainRun.objects.exists()
    assert not WorkflowRun.objects.exists()


def test_it_runs_a_workflow_command_with_params(transactional_db: None) -> None:
    code = "import os, sys; sys.exit(0 if os.environ['RPA_PARAMS'] == '{\"day\": \"mon\"}' else 5)"
    command("params", "python", "-c", code)
    result = manage("run_workflow", "params", "--params", '{"day": "mon"}')
    assert result.returncode == 0, result.stderr
    run = WorkflowRun.objects.get()
    assert result.stdout.strip().startswith(f"params run {run.pk} success in ")
    assert run.params == {"day": "mon"}


def test_it_exits_1_from_run_workflow_with_the_reason(transactional_db: None) -> None:
    command("broken", "python", "-c", "import sys; print('no login', file=sys.stderr); sys.exit(4)")
    result = manage("run_workflow", "broken")
    assert result.returncode == 1
    run = WorkflowRun.objects.get()
    assert f"CommandError: broken run {run.pk} failure in " in result.stderr
    assert "(exit 4): exit code 4: no login" in result.stderr
    assert run.status == RunStatus.FAILURE
