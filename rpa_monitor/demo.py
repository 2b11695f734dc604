"""Demo data: the example bots under examples/ as workflows, a chain, triggers, an admin login."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from alerts.models import AlertRule, NotificationChannel
from chains.models import Chain, Workflow
from triggers.models import Trigger

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
    created += _load_triggers()
    created += _load_alert_rules()
    user_model = get_user_model()
    if not user_model.objects.filter(username=username).exists():
        user_model.objects.create_superuser(username=username, email="", password=password)
        created.append(f"user {username}")
    return created


def demo_triggers() -> list[dict[str, Any]]:
    inbox = settings.DATA_DIR / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    return [
        {
            "name": "Demo chain every 10 minutes",
            "trigger_type": Trigger.Type.SCHEDULE,
            "chain": "demo",
            "config": {"interval_seconds": 600},
        },
        {
            "name": "Daily report, weekday mornings",
            "trigger_type": Trigger.Type.SCHEDULE,
            "workflow": "daily_report",
            "config": {"cron": "0 7 * * 1-5", "timezone": settings.TIME_ZONE},
        },
        {
            "name": f"New CSV in {inbox}",
            "trigger_type": Trigger.Type.FILE,
            "workflow": "daily_report",
            "config": {"path": str(inbox), "pattern": "*.csv"},
        },
        {
            "name": "Upstream check (manual)",
            "trigger_type": Trigger.Type.MANUAL,
            "workflow": "flaky_check",
            "config": {},
        },
    ]


def _load_triggers() -> list[str]:
    created = []
    for spec in demo_triggers():
        if Trigger.objects.filter(name=spec["name"]).exists():
            continue
        trigger = Trigger(
            name=spec["name"],
            trigger_type=spec["trigger_type"],
            config=spec["config"],
            workflow=Workflow.objects.filter(slug=spec.get("workflow", "")).first(),
            chain=Chain.objects.filter(slug=spec.get("chain", "")).first(),
        )
        trigger.full_clean()
        trigger.save()
        created.append(f"trigger {trigger.name!r}")
    return created


DEMO_CHANNEL = {"name": "Ops mailbox", "kind": "email", "target": "ops@example.com"}
DEMO_RULES: list[dict[str, Any]] = [
    {"name": "Demo chain failed", "kind": "chain_failed", "chain": "demo", "severity": "critical"},
    {
        "name": "Data entry failing repeatedly",
        "kind": "consecutive_failures",
        "workflow": "data_entry",
        "params": {"count": 3},
    },
    {
        "name": "Error rate above 50% over an hour",
        "kind": "error_rate_above",
        "params": {"percent": 50, "window_seconds": 3600, "count": 5},
    },
    {
        "name": "Daily report: no success for 26 hours",
        "kind": "no_success_within",
        "workflow": "daily_report",
        "params": {"seconds": 26 * 3600},
        "quiet_hours": "22:00-07:00",
    },
    {"name": "A worker died (stale runs)", "kind": "stale_runs", "severity": "critical"},
    {"name": "A schedule slot was missed", "kind": "missed_schedule", "params": {"seconds": 120}},
]


def _load_alert_rules() -> list[str]:
    """An email channel (printed to the console by scripts/serve) and a rule of the main kinds."""
    created = []
    channel, was_created = NotificationChannel.objects.get_or_create(
        name=DEMO_CHANNEL["name"], defaults=DEMO_CHANNEL
    )
    if was_created:
        created.append(f"channel {channel.name!r}")
    for spec in DEMO_RULES:
        if AlertRule.objects.filter(name=spec["name"]).exists():
            continue
        rule = AlertRule(
            **{k: v for k, v in spec.items() if k not in ("workflow", "chain")},
            workflow=Workflow.objects.filter(slug=spec.get("workflow", "")).first(),
            chain=Chain.objects.filter(slug=spec.get("chain", "")).first(),
        )
        rule.full_clean()
        rule.save()
        rule.channels.set([channel])
        created.append(f"alert rule {rule.name!r}")
    return created
