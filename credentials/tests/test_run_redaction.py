"""End to end: a real bot gets its secrets as environment variables, and what it prints of them
is stored as ****. The runner (chains/executors.py) calls `environment_for` and `Redactor`; until
that wiring lands this test is expected to fail (strict: it fails loudly once it passes)."""

from __future__ import annotations

import sys

import pytest

from chains.models import Workflow
from chains.runner import run_workflow
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


@pytest.mark.xfail(strict=True, reason="wired into chains/executors.py at merge: then remove this marker")
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
