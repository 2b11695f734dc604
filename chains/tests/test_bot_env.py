"""A command bot's environment is an allow-list: nothing else of the worker's reaches it."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from chains.models import RunStatus, Workflow
from chains.runner import run_workflow
from logs.models import LogEntry

pytestmark = pytest.mark.django_db

WORKER_SECRETS = {
    "SECRET_KEY": "worker-secret-key-value",
    "DATABASE_URL": "postgres://rpa:database-password@db:5432/rpa",
    "EMAIL_HOST_PASSWORD": "smtp-password-value",
    "RPA_SECRET_KEYS": "worker-fernet-key-value",
}


@pytest.fixture
def worker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in WORKER_SECRETS.items():
        monkeypatch.setenv(name, value)


def printed_env(workflow: Workflow, **params: object) -> dict[str, str]:
    """Run a real `env` bot and read its environment back from the stored log lines."""
    run = run_workflow(workflow, params=params)
    assert run.status == RunStatus.SUCCESS, run.error
    lines = LogEntry.objects.filter(run=run, component="bot").values_list("message", flat=True)
    return dict(line.split("=", 1) for line in lines if "=" in line)


def env_bot(slug: str = "env", **fields: object) -> Workflow:
    return Workflow.objects.create(slug=slug, name=slug, command=["env"], **fields)


def test_it_stores_none_of_the_workers_secrets(worker_env: None) -> None:
    run = run_workflow(env_bot())
    stored = " ".join(LogEntry.objects.filter(run=run).values_list("message", flat=True))
    assert "PATH=" in stored
    for name, value in WORKER_SECRETS.items():
        assert f"{name}=" not in stored
        assert value not in stored


def test_it_gives_the_bot_the_allow_list_the_run_variables_and_its_environment(
    worker_env: None, monkeypatch: pytest.MonkeyPatch, settings
) -> None:
    settings.RPA_BOT_ENV_PASSTHROUGH = ["PATH", "ROBOT_LICENSE_SERVER"]
    monkeypatch.setenv("ROBOT_LICENSE_SERVER", "lic.example:27000")
    monkeypatch.setenv("HOME", "/home/worker")
    monkeypatch.setenv("TRACEPARENT", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "rpa-worker")
    env = printed_env(env_bot(environment={"PORTAL": "https://portal.example"}), day="2026-11-24")
    assert set(env) == {
        "PATH",
        "ROBOT_LICENSE_SERVER",
        "TRACEPARENT",
        "OTEL_SERVICE_NAME",
        "PORTAL",
        "PYTHONUNBUFFERED",
        "RPA_RUN_ID",
        "RPA_WORKFLOW_ID",
        "RPA_CHAIN_ID",
        "RPA_CHAIN_RUN_ID",
        "RPA_ATTEMPT",
        "RPA_PARAMS",
    }
    assert env["ROBOT_LICENSE_SERVER"] == "lic.example:27000"
    assert env["PORTAL"] == "https://portal.example"
    assert env["RPA_PARAMS"] == '{"day": "2026-11-24"}'


def test_it_passes_the_default_allow_list_when_the_worker_has_those_names(
    worker_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME"):
        monkeypatch.setenv(name, f"value-of-{name}")
    env = printed_env(env_bot())
    for name in ("HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME"):
        assert env[name] == f"value-of-{name}"
    assert "PATH" in env


def report_environment(ctx: Any) -> None:
    """A python workflow (run by chains.pyworker in the child) that logs its environment's names."""
    import os

    ctx.log("env", names=sorted(os.environ), settings=os.environ.get("DJANGO_SETTINGS_MODULE"))


def test_python_workflows_keep_what_django_needs(worker_env: None) -> None:
    # The deployment's own code: chains.pyworker sets up Django (database, settings) in the
    # child, so it keeps the worker's environment; it is not an arbitrary bot.
    workflow = Workflow.objects.create(
        slug="py-env", name="py env", kind=Workflow.Kind.PYTHON, callable=f"{__name__}:report_environment"
    )
    run = run_workflow(workflow)
    assert run.status == RunStatus.SUCCESS, run.error
    entry = LogEntry.objects.get(run=run, message="env")
    assert {"DATABASE_URL", "SECRET_KEY", "RPA_RUN_ID"} <= set(entry.metadata["names"])
    assert entry.metadata["settings"] == "rpa_monitor.settings"


def test_a_python_bot_in_a_command_sees_no_worker_secret(worker_env: None) -> None:
    code = "import json, os; print(json.dumps({'message': 'env', 'names': sorted(os.environ)}))"
    workflow = Workflow.objects.create(slug="pyenv", name="pyenv", command=[sys.executable, "-c", code])
    run = run_workflow(workflow)
    names = LogEntry.objects.get(run=run, message="env").metadata["names"]
    assert not set(names) & set(WORKER_SECRETS)
    assert "DJANGO_SETTINGS_MODULE" not in names
