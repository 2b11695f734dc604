"""Exactly once under real concurrency: many `fire_triggers` processes ticking at the same moment.

Runs against whatever database the suite uses (a file SQLite database by default,
PostgreSQL when DATABASE_URL is set; scripts/test runs the suite on both).
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.db import connection
from django_tasks_db.models import DBTaskResult

from chains.models import Workflow, WorkflowRun
from rpa_monitor.test import MANAGE, database_env
from triggers.models import Trigger, TriggerFire

TRIGGERS = 20
PROCESSES = 8

# Each process loads Django first, says it is ready, waits for the start file, then runs
# the real command exactly as manage.py would: the ticks race on the database, not on start-up.
WAIT_THEN_FIRE = """
import os, sys, time
import django
django.setup()
from django.core.management import execute_from_command_line
barrier, manage = sys.argv[1], sys.argv[2]
open(os.path.join(barrier, f"ready-{os.getpid()}"), "w").close()
deadline = time.monotonic() + 60
while not os.path.exists(os.path.join(barrier, "go")) and time.monotonic() < deadline:
    time.sleep(0.002)
execute_from_command_line([manage, "fire_triggers"])
"""


@pytest.fixture
def due_triggers(transactional_db: None) -> tuple[list[Trigger], datetime]:
    workflow = Workflow.objects.create(slug="bot", name="bot", command=["true"])
    triggers = [
        Trigger.objects.create(
            name=f"due {n}",
            trigger_type=Trigger.Type.SCHEDULE,
            workflow=workflow,
            config={"interval_seconds": 3600},
        )
        for n in range(TRIGGERS)
    ]
    slot = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=0)
    Trigger.objects.filter(pk__in=[t.pk for t in triggers]).update(next_fire_at=slot)
    return triggers, slot


def start_ticks(barrier: Path) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(
            [sys.executable, "-c", WAIT_THEN_FIRE, str(barrier), MANAGE],
            env=database_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]


def test_it_fires_each_due_slot_exactly_once_across_concurrent_processes(
    due_triggers: tuple[list[Trigger], datetime], tmp_path: Path
) -> None:
    triggers, slot = due_triggers
    processes = start_ticks(tmp_path)
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < PROCESSES:  # every process loaded Django
        assert all(p.poll() is None for p in processes), [p.communicate() for p in processes]
        assert time.monotonic() < deadline, "the processes never became ready"
        time.sleep(0.01)
    (tmp_path / "go").touch()
    outputs = [process.communicate(timeout=120) for process in processes]

    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr
        assert "database is locked" not in stdout + stderr
        assert "Traceback" not in stderr
    fires = list(TriggerFire.objects.values_list("trigger_id", "due_at", "outcome"))
    assert sorted(fires) == sorted((t.pk, slot, "started") for t in triggers)
    for trigger in triggers:
        assert WorkflowRun.objects.filter(trigger=trigger).count() == 1
        next_fire_at = Trigger.objects.get(pk=trigger.pk).next_fire_at
        assert next_fire_at is not None
        assert next_fire_at > slot
    assert DBTaskResult.objects.count() == TRIGGERS  # each run was enqueued once
    printed = [stdout.count("started WorkflowRun") for stdout, _ in outputs]
    assert sum(printed) == TRIGGERS  # every fire was reported by exactly one process
    assert connection.vendor in ("sqlite", "postgresql")
