"""End to end: a real bot gets its secrets as environment variables, and what it prints of them
is stored as ****. The runner (chains/executors.py) calls `environment_for` and `Redactor`."""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

import pytest
from cryptography.fernet import Fernet

from chains.executors import store_spool_rest
from chains.models import RunStatus, Workflow, WorkflowRun
from chains.runner import run_workflow
from chains.spool import Spool
from credentials.models import Secret
from credentials.tests.helpers import VALUE, make_secret
from logs.models import LogEntry

pytestmark = pytest.mark.django_db

BOT = """
import json, os, sys
value = os.environ["ERP_PASSWORD"]
print("logging in with " + value)
print(json.dumps({"message": "json line", "level": "INFO", "password": value, "pin": value}))
print("failed for " + value, file=sys.stderr)
sys.exit(1)
"""


def test_it_gives_a_bot_its_secret_and_stores_what_it_prints_of_it_as_stars() -> None:
    workflow = Workflow.objects.create(
        slug="erp-login", name="ERP login", command=[sys.executable, "-c", BOT]
    )
    workflow.secrets.add(make_secret("ERP_PASSWORD", VALUE))
    run = run_workflow(workflow)
    entries = list(LogEntry.objects.filter(run=run).order_by("id").values_list("message", "metadata"))
    stored = repr(entries) + run.error
    assert "logging in with ****" in stored
    assert "failed for ****" in stored
    assert VALUE not in stored


def test_it_fails_a_run_whose_secret_no_key_decrypts_without_starting_its_bot(tmp_path: Any) -> None:
    marker = tmp_path / "started"
    workflow = Workflow.objects.create(
        slug="erp-undecryptable",
        name="ERP",
        command=[sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"],
    )
    secret = make_secret("ERP_PASSWORD", VALUE)
    workflow.secrets.add(secret)
    Secret.objects.filter(pk=secret.pk).update(
        ciphertext=Fernet(Fernet.generate_key()).encrypt(b"x").decode()
    )
    run = run_workflow(workflow)
    assert run.status == RunStatus.FAILURE
    assert "secret ERP_PASSWORD cannot be decrypted" in run.error
    assert not marker.exists()


def test_it_masks_the_lines_the_reaper_stores_after_the_runner_died() -> None:
    workflow = Workflow.objects.create(slug="erp-spool", name="ERP", command=["true"])
    workflow.secrets.add(make_secret("ERP_PASSWORD", VALUE))
    run = WorkflowRun.objects.create(workflow=workflow, status=RunStatus.RUNNING, host=socket.gethostname())
    spool = Spool.new(run.pk)
    stdout, stderr = spool.create()
    os.write(stdout, f"left in the spool: {VALUE}\n".encode())
    os.write(stderr, f"err {VALUE}\n".encode())
    os.close(stdout)
    os.close(stderr)
    WorkflowRun.objects.filter(pk=run.pk).update(spool=spool.base)
    run.refresh_from_db()
    assert store_spool_rest(run) == 2
    messages = sorted(LogEntry.objects.filter(run=run).values_list("message", flat=True))
    assert messages == ["err ****", "left in the spool: ****"]
