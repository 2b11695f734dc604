"""`manage.py purge_logs`: batched deletes of old entries and finished runs; counters never go down."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from chains.models import Chain, ChainRun, RunStatus, Workflow, WorkflowRun
from logs.models import LogEntry, LogRow
from logs.retention import parse_age
from rpa_monitor.test import manage
from rpa_monitor.tests.prom import FAMILIES, Scrape, scrape
from triggers.models import Trigger, TriggerFire
from triggers.scheduler import fire_now

pytestmark = pytest.mark.django_db

COUNTERS = [
    "workflow_executions_total",
    "workflow_duration_seconds_bucket",
    "workflow_duration_seconds_count",
    "workflow_duration_seconds_sum",
    "log_entries_total",
    "chain_executions_total",
    "trigger_fires_total",
]


def purge(*args: str) -> str:
    out = StringIO()
    call_command("purge_logs", *args, stdout=out)
    return out.getvalue()


def backdate_everything(days: int) -> None:
    """Make all history created so far `days` old (the created/fired/logged columns purge looks at)."""
    old = timezone.now() - timedelta(days=days)
    LogEntry.objects.update(timestamp=old)
    WorkflowRun.objects.update(created_at=old)
    ChainRun.objects.update(created_at=old)
    TriggerFire.objects.update(fired_at=old)


def make_history(finished_runs: int = 4, entries: int = 5) -> Workflow:
    flow = Workflow.objects.create(slug="bot", name="bot", command=["true"])
    for i in range(finished_runs):
        run = WorkflowRun.objects.create(workflow=flow)
        run.start(host="h", pid=None, worker_pid=None)
        run.finish(RunStatus.SUCCESS if i % 2 else RunStatus.FAILURE)
    chain = Chain.objects.create_with_steps("nightly", "Nightly", ["bot"])
    chain_run = ChainRun.objects.create(chain=chain, total_steps=1)
    chain_run.start()
    step = WorkflowRun.objects.create(workflow=flow, chain_run=chain_run, position=1)
    step.start(host="h", pid=None, worker_pid=None)
    step.finish(RunStatus.SUCCESS)
    chain_run.finish(RunStatus.SUCCESS)
    fire = fire_now(Trigger.objects.create(name="t", trigger_type="manual", workflow=flow, overlap="allow"))
    assert fire.workflow_run is not None
    fire.workflow_run.start(host="h", pid=None, worker_pid=None)  # the fired run, finished too
    fire.workflow_run.finish(RunStatus.SUCCESS)
    now = timezone.now()
    LogEntry.objects.ingest(
        [LogRow(now, "INFO" if i % 3 else "ERROR", "bot", f"line {i}") for i in range(entries)]
    )
    return flow


def counters(result: Scrape) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    return {name: result.series(name) for name in COUNTERS}


def test_it_deletes_old_history_and_no_counter_goes_down() -> None:
    flow = make_history()
    backdate_everything(days=100)
    active = WorkflowRun.objects.create(workflow=flow)  # queued long ago: never purged
    WorkflowRun.objects.filter(pk=active.pk).update(created_at=timezone.now() - timedelta(days=200))
    recent = LogEntry.objects.create(level="INFO", component="bot", message="yesterday")
    before = scrape()
    assert before.value("workflow_executions_total", workflow_id="bot", status="success") == 4

    summary = purge("--older-than", "90d")

    assert "deleted: 5 log entries" in summary
    assert "1 chain runs" in summary
    assert "5 workflow runs" in summary
    assert list(LogEntry.objects.all()) == [recent]
    assert list(WorkflowRun.objects.all()) == [active]  # the chain's step went with its chain run
    assert not ChainRun.objects.exists()
    assert not TriggerFire.objects.exists()
    after = scrape()
    assert counters(after) == counters(before)
    assert all(counters(after).values()), "every counter had series to keep"
    assert set(after.families) >= set(FAMILIES)


def test_it_keeps_what_is_younger_than_the_cutoff() -> None:
    make_history()
    before = (LogEntry.objects.count(), WorkflowRun.objects.count(), ChainRun.objects.count())
    backdate_everything(days=10)
    assert "deleted: 0 log entries" in purge("--older-than", "90d")
    assert (LogEntry.objects.count(), WorkflowRun.objects.count(), ChainRun.objects.count()) == before
    purge("--older-than", "1w")
    assert (LogEntry.objects.count(), WorkflowRun.objects.count(), ChainRun.objects.count()) == (0, 0, 0)


def test_dry_run_counts_and_deletes_nothing() -> None:
    make_history(entries=7)
    backdate_everything(days=100)
    rows = (LogEntry.objects.count(), WorkflowRun.objects.count(), ChainRun.objects.count())
    before = scrape()
    summary = purge("--older-than", "90d", "--dry-run")
    assert summary.startswith("would delete: 7 log entries")
    assert (LogEntry.objects.count(), WorkflowRun.objects.count(), ChainRun.objects.count()) == rows
    assert counters(scrape()) == counters(before)


@pytest.mark.parametrize("age", ["", "90", "0d", "-1d", "abc", "90x", "1.5d", "d90"])
def test_a_bad_age_is_a_command_error_and_deletes_nothing(age: str) -> None:
    make_history()
    backdate_everything(days=1000)
    count = LogEntry.objects.count()
    with pytest.raises(CommandError, match="--older-than"):
        purge("--older-than", age)
    assert LogEntry.objects.count() == count


def test_a_bad_batch_size_is_a_command_error() -> None:
    with pytest.raises(CommandError, match="--batch-size"):
        purge("--older-than", "90d", "--batch-size", "0")


def test_batches_smaller_than_the_history_delete_all_of_it() -> None:
    flow = make_history(finished_runs=11, entries=23)
    backdate_everything(days=100)
    before = scrape()
    summary = purge("--older-than", "90d", "--batch-size", "3")
    assert "deleted: 23 log entries" in summary
    assert "12 workflow runs" in summary
    assert not LogEntry.objects.exists()
    assert not WorkflowRun.objects.filter(workflow=flow).exists()
    assert counters(scrape()) == counters(before)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", timedelta(days=90)),
        ("12h", timedelta(hours=12)),
        ("2w", timedelta(weeks=2)),
        ("30m", timedelta(minutes=30)),
        ("45s", timedelta(seconds=45)),
        (" 7d ", timedelta(days=7)),
    ],
)
def test_it_parses_ages(text: str, expected: timedelta) -> None:
    assert parse_age(text) == expected


@pytest.mark.django_db(transaction=True)
def test_the_command_in_its_own_process_exits_zero_or_with_a_one_line_reason() -> None:
    make_history()
    backdate_everything(days=100)
    before = scrape()
    done = manage("purge_logs", "--older-than", "90d", "--batch-size", "2")
    assert done.returncode == 0, done.stderr
    assert "deleted: 5 log entries" in done.stdout
    assert not LogEntry.objects.exists()
    assert counters(scrape()) == counters(before)
    bad = manage("purge_logs", "--older-than", "soon")
    assert bad.returncode != 0
    assert bad.stderr.strip().splitlines()[-1].startswith("CommandError: --older-than")
