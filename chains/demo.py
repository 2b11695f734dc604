"""Demo data: the example bots under examples/ registered as workflows and a chain."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction

from chains.models import Chain, Workflow

DEMO_WORKFLOWS: list[dict[str, Any]] = [
    {
        "slug": "login",
        "name": "Log into the portal",
        "kind": Workflow.Kind.COMMAND,
        "command": ["python", "examples/login.py"],
        "timeout_seconds": 60,
    },
    {
        "slug": "data_entry",
        "name": "Enter the day's records",
        "kind": Workflow.Kind.COMMAND,
        "command": ["python", "examples/data_entry.py"],
        "environment": {"RPA_DEMO_RECORDS": "5", "RPA_DEMO_FAIL_RATE": "0.3"},
        "timeout_seconds": 120,
        "max_retries": 1,
    },
    {
        "slug": "submit",
        "name": "Submit the batch",
        "kind": Workflow.Kind.COMMAND,
        "command": ["python", "examples/submit.py"],
        "timeout_seconds": 60,
    },
    {
        "slug": "daily_report",
        "name": "Daily report (python)",
        "kind": Workflow.Kind.PYTHON,
        "callable": "examples.python_jobs:daily_report",
        "timeout_seconds": 120,
    },
    {
        "slug": "flaky_check",
        "name": "Upstream check that raises (python)",
        "kind": Workflow.Kind.PYTHON,
        "callable": "examples.python_jobs:flaky_check",
        "timeout_seconds": 30,
    },
]
DEMO_CHAIN_SLUG = "demo"
DEMO_CHAIN_NAME = "Order entry demo"
DEMO_CHAIN_STEPS = ["login", "data_entry", "submit"]


@transaction.atomic
def load_demo(username: str, password: str) -> list[str]:
    """Create (or bring back to the demo state) the demo objects; safe to run repeatedly."""
    created = []
    for spec in DEMO_WORKFLOWS:
        fields = {k: v for k, v in spec.items() if k != "slug"}
        workflow, was_created = Workflow.objects.update_or_create(slug=spec["slug"], defaults=fields)
        workflow.full_clean()
        if was_created:
            created.append(f"workflow {workflow.slug}")
    if not Chain.objects.filter(slug=DEMO_CHAIN_SLUG).exists():
        Chain.objects.create_with_steps(DEMO_CHAIN_SLUG, DEMO_CHAIN_NAME, DEMO_CHAIN_STEPS)
        created.append(f"chain {DEMO_CHAIN_SLUG}")
    user_model = get_user_model()
    if not user_model.objects.filter(username=username).exists():
        user_model.objects.create_superuser(username=username, email="", password=password)
        created.append(f"user {username}")
    return created
