"""Nothing a bot printed or a component logged is lost when a process dies or is stopped."""

from __future__ import annotations

import sys

import pytest

from chains.models import RunStatus, Workflow
from chains.runner import run_workflow
from logs.models import LogEntry
from rpa_monitor.test import database_env

PY = sys.executable


@pytest.mark.django_db
def test_lines_printed_just_before_a_crash_are_stored() -> None:
    code = (
        "import os, signal\n"
        "for i in range(2000):\n"
        "    print(f'line {i}')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    workflow = Workflow.objects.create(slug="crasher", name="crasher", command=[PY, "-c", code])
    run = run_workflow(workflow)
    assert run.status == RunStatus.FAILURE
    assert run.error.startswith("killed by signal SIGKILL")
    messages = set(LogEntry.objects.filter(run=run, component="bot").values_list("message", flat=True))
    assert messages == {f"line {i}" for i in range(2000)}


@pytest.mark.django_db(transaction=True)
def test_a_python_workflow_stopped_by_its_timeout_keeps_what_it_logged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The child logs through the batched database handler (flushed at exit, not per line):
    # the timeout's SIGTERM must end it through a normal exit so the buffer is written.
    for key, value in database_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("RPA_LOG_HANDLER_FLUSH_SECONDS", "3600")  # only the exit flush can store them
    workflow = Workflow.objects.create(
        slug="slow-logger",
        name="slow logger",
        kind=Workflow.Kind.PYTHON,
        callable="examples.python_jobs:slow_logger",
        timeout_seconds=3,
    )
    run = run_workflow(workflow, params={"lines": 7, "sleep": 60})
    assert run.status == RunStatus.TIMEOUT
    notes = LogEntry.objects.filter(component="slow_logger", workflow_id="slow-logger")
    assert sorted(notes.values_list("message", flat=True)) == [f"progress note {n}" for n in range(7)]
