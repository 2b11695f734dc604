"""/metrics from the database: correctness properties 6, 7, 8 and 12 (DESIGN §13), every family
of DESIGN §7, work done in another process, the bearer token and multiprocess mode."""

from __future__ import annotations

import logging
import math
import shutil
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.db import transaction
from django.test import Client
from django.utils import timezone
from hypothesis import example, given
from hypothesis import strategies as st
from pytest_django.fixtures import Settings

from chains.models import (
    DURATION_BUCKETS,
    FINISHED_STATUSES,
    Chain,
    ChainRun,
    RunStatus,
    Workflow,
    WorkflowRun,
)
from chains.runner import reap_stale_runs, run_chain, run_workflow
from logs import get_logger
from logs.models import LogEntry, LogRow
from rpa_monitor.test import manage
from rpa_monitor.tests.prom import (
    FAMILIES,
    SAMPLE_LABELS,
    Labels,
    Scrape,
    counted,
    delta,
    labels,
    our_text,
    promtool,
    promtool_check_metrics,
    sample_names,
    scrape,
)
from triggers.models import Trigger
from triggers.scheduler import fire_now, tick

pytestmark = pytest.mark.django_db

BASE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
SLUGS = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,30}", fullmatch=True)
# Components are free text: label values must survive quotes, backslashes, newlines, NUL
# (stored as U+FFFD) and characters Python's splitlines() would break on.
CHARS = st.one_of(
    st.sampled_from('\x00\n\r\t "\\{}=,#é✓🙂\u2028\x85'), st.characters(exclude_categories=["Cs"])
)
COMPONENTS = st.text(CHARS, min_size=1, max_size=120)
BOUNDS_US = [round(bound * 1_000_000) for bound in DURATION_BUCKETS]
# Microseconds: bucket bounds exactly and one microsecond either side, and anything up to 5 hours.
DURATIONS_US = st.one_of(
    st.sampled_from(BOUNDS_US).flatmap(lambda us: st.sampled_from([us - 1, us, us + 1])),
    st.integers(0, 5 * 3600 * 1_000_000),
)


@contextmanager
def rolled_back() -> Iterator[None]:
    """Each hypothesis example leaves nothing behind (slugs can repeat across examples)."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def workflow(slug: str, *argv: str) -> Workflow:
    return Workflow.objects.create(slug=slug, name=slug, command=list(argv) or ["true"])


def finished_run(flow: Workflow, status: str, micros: int = 0, at: datetime = BASE) -> WorkflowRun:
    """A run started at `at` that finishes `micros` later with `status` (the runner's state changes)."""
    with time_machine.travel(at, tick=False) as traveller:
        run = WorkflowRun.objects.create(workflow=flow)
        assert run.start(host="test-host", pid=None, worker_pid=None)
        traveller.shift(timedelta(microseconds=micros))
        assert run.finish(RunStatus(status))
    return run


def running_run(flow: Workflow, heartbeat_age: float = 0.0) -> WorkflowRun:
    run = WorkflowRun.objects.create(workflow=flow)
    assert run.start(host="elsewhere", pid=None, worker_pid=None)
    if heartbeat_age:
        old = timezone.now() - timedelta(seconds=heartbeat_age)
        WorkflowRun.objects.filter(pk=run.pk).update(heartbeat_at=old, started_at=old)
    return run


def finished_chain_run(chain: Chain, status: str) -> ChainRun:
    chain_run = ChainRun.objects.create(chain=chain, total_steps=1)
    assert chain_run.start()
    assert chain_run.finish(RunStatus(status))
    return chain_run


def stored_label(component: str) -> str:
    """The component as stored and counted: at most 100 characters, NUL replaced."""
    return component[:100].replace("\x00", "\ufffd")


# --- Property 6: /metrics parses as Prometheus text with every family of DESIGN §7 -------------


@given(
    slugs=st.lists(SLUGS, min_size=1, max_size=4, unique=True),
    runs=st.lists(st.tuples(st.integers(0, 3), st.sampled_from(FINISHED_STATUSES), DURATIONS_US), max_size=8),
    logs=st.lists(st.tuples(st.sampled_from(LEVELS), COMPONENTS), max_size=8),
    chain_statuses=st.lists(st.sampled_from(FINISHED_STATUSES), max_size=3),
)
def test_it_exposes_every_family_with_its_type_and_labels(
    slugs: list[str],
    runs: list[tuple[int, str, int]],
    logs: list[tuple[str, str]],
    chain_statuses: list[str],
) -> None:
    with rolled_back():
        flows = [workflow(slug) for slug in slugs]
        for index, status, micros in runs:
            finished_run(flows[index % len(flows)], status, micros)
        LogEntry.objects.ingest([LogRow(timezone.now(), level, component, "m") for level, component in logs])
        chain = Chain.objects.create_with_steps(f"chain-{slugs[0]}", "chain", [slugs[0]])
        for status in chain_statuses:
            finished_chain_run(chain, status)
        trigger = Trigger.objects.create(name="t", trigger_type="manual", workflow=flows[0])
        fire_now(trigger)
        tick()

        result = scrape()

        assert_every_family_well_formed(result)
        assert_histograms_consistent(result)
        series_labels = set(result.series("log_entries_total"))
        assert {labels(level=lv, component=stored_label(c)) for lv, c in logs} <= series_labels
        if runs:
            assert {s.labels["workflow_id"] for s in result.families["workflow_executions"].samples} == {
                flows[i % len(flows)].slug for i, _, _ in runs
            }
        if shutil.which("promtool"):
            checked = promtool_check_metrics(our_text(result.body))
            assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")


def assert_every_family_well_formed(result: Scrape) -> None:
    for name, (kind, _) in FAMILIES.items():
        assert name in result.families, f"{name} missing from /metrics"
        family = result.families[name]
        assert family.type == kind, (name, family.type)
        assert family.documentation, f"{name} has no HELP text"
        for sample in family.samples:
            assert sample.name in sample_names(name, kind), sample
            assert set(sample.labels) == SAMPLE_LABELS[sample.name], sample
            assert math.isfinite(sample.value), sample
            assert sample.value >= 0, sample
    for name in (
        "active_workflows",
        "error_rate",
        "rpa_scheduler_last_tick_timestamp_seconds",
        "rpa_stale_runs",
    ):
        assert len(result.families[name].samples) == 1, name


def assert_histograms_consistent(result: Scrape) -> None:
    """Per workflow: the bounds of DURATION_BUCKETS then +Inf, cumulative, +Inf == _count."""
    expected_bounds = [repr(b) for b in DURATION_BUCKETS] + ["+Inf"]
    per_workflow: dict[str, list[tuple[str, float]]] = {}
    for sample in result.families["workflow_duration_seconds"].samples:
        if sample.name.endswith("_bucket"):
            per_workflow.setdefault(sample.labels["workflow_id"], []).append(
                (sample.labels["le"], sample.value)
            )
    for workflow_id, points in per_workflow.items():
        assert [le for le, _ in points] == expected_bounds
        counts = [count for _, count in points]
        assert counts == sorted(counts), (workflow_id, counts)
        assert counts[-1] == result.value("workflow_duration_seconds_count", workflow_id=workflow_id)


def test_every_family_is_present_on_an_empty_database() -> None:
    result = scrape()
    for name, (kind, _) in FAMILIES.items():
        assert result.families[name].type == kind
    assert result.value("active_workflows") == 0
    assert result.value("error_rate") == 0
    assert result.value("rpa_scheduler_last_tick_timestamp_seconds") == 0
    assert result.value("rpa_stale_runs") == 0


def test_promtool_accepts_our_families() -> None:
    binary = promtool()
    flow = workflow("promtool-bot")
    for status, micros in [("success", 50_000), ("failure", 3_000_000), ("timeout", 7_300_000_000)]:
        finished_run(flow, status, micros)
    get_logger("promtool test").warning('quotes " and \\ and\nnewlines')
    Chain.objects.create_with_steps("promtool-chain", "c", ["promtool-bot"])
    run_chain(Chain.objects.get(slug="promtool-chain"))
    fire_now(Trigger.objects.create(name="t", trigger_type="manual", workflow=flow))
    running_run(flow)
    tick()
    body = scrape().body
    ours = our_text(body)
    assert ours.count("# TYPE ") == len(FAMILIES)
    checked = promtool_check_metrics(ours)
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", ""), binary
    # The whole response (django_http_* included) must at least parse for promtool.
    whole = promtool_check_metrics(body)
    assert whole.returncode in (0, 3), whole.stderr  # 3: lint remarks only; 1 would be a parse error


# --- Property 7: each finished run adds exactly 1 to workflow_executions_total ------------------


@given(
    slugs=st.lists(SLUGS, min_size=1, max_size=3, unique=True),
    runs=st.lists(st.tuples(st.integers(0, 2), st.booleans()), min_size=1, max_size=4),
)
def test_each_real_run_adds_exactly_one_with_its_labels(
    slugs: list[str], runs: list[tuple[int, bool]]
) -> None:
    with rolled_back():
        flows = [workflow(slug) for slug in slugs]
        before = scrape()
        expected: Counter[Labels] = Counter()
        for index, succeeds in runs:
            flow = flows[index % len(flows)]
            flow.command = ["true" if succeeds else "false"]
            flow.save(update_fields=["command"])
            run = run_workflow(flow)
            assert run.status == ("success" if succeeds else "failure")
            expected[labels(workflow_id=flow.slug, status=run.status)] += 1
        after = scrape()
        assert delta(before, after, "workflow_executions_total") == counted(expected)
        assert delta(before, after, "chain_executions_total") == {}


@given(statuses=st.lists(st.tuples(st.sampled_from(FINISHED_STATUSES), st.sampled_from(FINISHED_STATUSES))))
@example(statuses=[(s, "success") for s in FINISHED_STATUSES])
def test_each_final_status_counts_once_even_when_finished_twice(statuses: list[tuple[str, str]]) -> None:
    with rolled_back():
        flow = workflow("twice")
        before = scrape()
        for first, second in statuses:
            run = finished_run(flow, first)
            assert not run.finish(RunStatus(second))  # already finished: not counted again
            assert run.status == first
        after = scrape()
        expected = Counter(labels(workflow_id="twice", status=first) for first, _ in statuses)
        assert delta(before, after, "workflow_executions_total") == counted(expected)


def test_each_retry_attempt_is_a_run_of_its_own() -> None:
    flow = workflow("flaky", "false")
    flow.max_retries = 2
    flow.save(update_fields=["max_retries"])
    before = scrape()
    assert run_workflow(flow).attempt == 3
    after = scrape()
    assert delta(before, after, "workflow_executions_total") == {
        labels(workflow_id="flaky", status="failure"): 3
    }
    assert delta(before, after, "workflow_duration_seconds_count") == {labels(workflow_id="flaky"): 3}


def test_the_reaper_counts_an_abandoned_run() -> None:
    flow = workflow("reaped")
    running_run(flow, heartbeat_age=3600)
    before = scrape()
    assert before.value("rpa_stale_runs") == 1
    assert before.value("active_workflows") == 1
    [run] = reap_stale_runs(timezone.now(), 60)
    after = scrape()
    assert delta(before, after, "workflow_executions_total") == {
        labels(workflow_id="reaped", status="abandoned"): 1
    }
    assert after.value("rpa_stale_runs") == 0
    assert after.value("active_workflows") == 0
    assert run.status == "abandoned"


# --- Property 8: each finished run is recorded in workflow_duration_seconds ---------------------


@given(runs=st.lists(st.tuples(st.sampled_from(FINISHED_STATUSES), DURATIONS_US), min_size=1, max_size=6))
@example(runs=[("success", us) for us in BOUNDS_US])
@example(runs=[("failure", 0), ("timeout", 14_400_000_001)])
def test_each_finished_run_lands_in_its_duration_bucket(runs: list[tuple[str, int]]) -> None:
    with rolled_back():
        flow = workflow("timed")
        for status, micros in runs:
            before = scrape()
            run = finished_run(flow, status, micros)
            after = scrape()
            seconds = micros / 1_000_000
            assert run.duration == timedelta(microseconds=micros)
            assert_recorded_once(before, after, "timed", seconds)


def assert_recorded_once(before: Scrape, after: Scrape, slug: str, seconds: float) -> None:
    assert delta(before, after, "workflow_duration_seconds_count") == {labels(workflow_id=slug): 1}
    grown = after.value("workflow_duration_seconds_sum", workflow_id=slug) - before.value(
        "workflow_duration_seconds_sum", workflow_id=slug
    )
    assert grown == pytest.approx(seconds, rel=1e-9, abs=1e-6)
    # Cumulative buckets: exactly those whose bound is >= the duration grew, by one.
    grew = delta(before, after, "workflow_duration_seconds_bucket")
    expected = {
        labels(workflow_id=slug, le=repr(bound)): 1.0 for bound in DURATION_BUCKETS if seconds <= bound
    }
    expected[labels(workflow_id=slug, le="+Inf")] = 1.0
    assert grew == expected, seconds


def test_a_real_run_records_its_measured_duration() -> None:
    flow = workflow("sleeper", "sleep", "0.3")
    before = scrape()
    run = run_workflow(flow)
    after = scrape()
    assert run.status == "success"
    assert run.duration is not None
    seconds = run.duration.total_seconds()
    assert 0.3 <= seconds < 30
    assert_recorded_once(before, after, "sleeper", seconds)


# --- Property 12: each stored log entry adds exactly 1 to log_entries_total --------------------


@pytest.fixture
def rpa_debug() -> Iterator[None]:
    """Let DEBUG records through (LOG_LEVEL is INFO by default) so every level is exercised."""
    logger = logging.getLogger("rpa")
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    yield
    logger.setLevel(previous)


@given(entries=st.lists(st.tuples(st.sampled_from(LEVELS), COMPONENTS), min_size=1, max_size=10))
@example(entries=[("INFO", "x" * 150), ("ERROR", "nul\x00here"), ("DEBUG", ".leading.dot")])
def test_each_logged_entry_adds_exactly_one(rpa_debug: None, entries: list[tuple[str, str]]) -> None:
    with rolled_back():
        last_id = LogEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0
        before = scrape()
        for level, component in entries:
            get_logger(component).log(logging.getLevelName(level), "message", workflow_id="wf", node_id="n")
        after = scrape()
        expected = Counter(labels(level=lv, component=stored_label(c)) for lv, c in entries)
        assert delta(before, after, "log_entries_total") == counted(expected)
        stored = Counter(
            labels(level=lv, component=c)
            for lv, c in LogEntry.objects.filter(id__gt=last_id).values_list("level", "component")
        )
        assert stored == expected


@given(entries=st.lists(st.tuples(st.sampled_from(LEVELS), COMPONENTS), max_size=30))
def test_each_ingested_entry_adds_exactly_one(entries: list[tuple[str, str]]) -> None:
    with rolled_back():
        before = scrape()
        now = timezone.now()
        assert LogEntry.objects.ingest([LogRow(now, lv, c, "line") for lv, c in entries]) == len(entries)
        after = scrape()
        expected = Counter(labels(level=lv, component=stored_label(c)) for lv, c in entries)
        assert delta(before, after, "log_entries_total") == counted(expected)


def test_an_entry_saved_on_its_own_counts_and_an_update_does_not() -> None:
    before = scrape()
    entry = LogEntry.objects.create(level="WARNING", component="admin", message="saved")
    entry.message = "edited"
    entry.save()
    after = scrape()
    assert delta(before, after, "log_entries_total") == {labels(level="WARNING", component="admin"): 1}


def test_a_bots_output_is_counted_per_level() -> None:
    code = (
        "import sys\n"
        "print('plain')\n"
        'print(\'{"level": "error", "message": "bad"}\')\n'
        "print('e', file=sys.stderr)\n"
    )
    flow = workflow("printer", sys.executable, "-c", code)
    before = scrape()
    run = run_workflow(flow)
    after = scrape()
    bot = delta(before, after, "log_entries_total")
    assert run.status == "success"
    assert {k: v for k, v in bot.items() if ("component", "bot") in k} == {
        labels(level="INFO", component="bot"): 1,
        labels(level="ERROR", component="bot"): 1,
        labels(level="WARNING", component="bot"): 1,
    }
    assert sum(bot.values()) == LogEntry.objects.count()


# --- The other families --------------------------------------------------------------------


def test_chain_runs_are_counted_by_chain_and_status() -> None:
    workflow("ok")
    workflow("broken", "false")
    good = Chain.objects.create_with_steps("good", "good", ["ok", "ok"])
    bad = Chain.objects.create_with_steps("bad", "bad", ["ok", "broken", "ok"])
    before = scrape()
    assert run_chain(good).status == "success"
    assert run_chain(good).status == "success"
    assert run_chain(bad).status == "failure"
    after = scrape()
    assert delta(before, after, "chain_executions_total") == {
        labels(chain_id="good", status="success"): 2,
        labels(chain_id="bad", status="failure"): 1,
    }
    # Steps count as workflow runs; the failed chain never started its third step.
    assert delta(before, after, "workflow_executions_total") == {
        labels(workflow_id="ok", status="success"): 5,
        labels(workflow_id="broken", status="failure"): 1,
    }


def test_fires_that_start_a_run_are_counted_by_type_and_target() -> None:
    flow = workflow("fired")
    chain = Chain.objects.create_with_steps("fired-chain", "c", ["fired"])
    manual = Trigger.objects.create(name="m", trigger_type="manual", workflow=flow, overlap="allow")
    to_chain = Trigger.objects.create(name="c", trigger_type="manual", chain=chain)
    with time_machine.travel(BASE, tick=False):
        scheduled = Trigger.objects.create(
            name="s", trigger_type="schedule", workflow=flow, config={"interval_seconds": 60}, overlap="allow"
        )
    before = scrape()
    assert fire_now(manual).outcome == "started"
    assert fire_now(manual).outcome == "started"
    assert fire_now(to_chain).outcome == "started"
    assert fire_now(to_chain).outcome == "skipped"  # overlap skip: the first chain run is queued
    with time_machine.travel(BASE + timedelta(seconds=61), tick=False):
        [fire] = tick().fires
    assert fire.trigger == scheduled
    assert fire.outcome == "started"
    after = scrape()
    assert delta(before, after, "trigger_fires_total") == {
        labels(trigger_type="manual", workflow_id="fired"): 2,
        labels(trigger_type="manual", workflow_id="fired-chain"): 1,
        labels(trigger_type="schedule", workflow_id="fired"): 1,
    }


def test_active_workflows_counts_running_runs_only() -> None:
    flow = workflow("active")
    WorkflowRun.objects.create(workflow=flow)  # queued: not running
    first, second = running_run(flow), running_run(flow)
    finished_run(flow, "success")
    assert scrape().value("active_workflows") == 2
    first.finish(RunStatus.SUCCESS)
    assert scrape().value("active_workflows") == 1
    second.finish(RunStatus.CANCELLED)
    assert scrape().value("active_workflows") == 0


def test_error_rate_is_the_failed_percent_of_the_trailing_hour() -> None:
    flow = workflow("rated")
    for status in ["success", "success", "success", "failure", "timeout", "cancelled", "abandoned"]:
        finished_run(flow, status, 1000)
    # 3 failed (failure, timeout, abandoned) of 6 decided; a cancelled run is neither.
    for later, rate in [(timedelta(0), 50.0), (timedelta(minutes=30), 50.0), (timedelta(minutes=58), 50.0)]:
        with time_machine.travel(BASE + later, tick=False):
            assert scrape().value("error_rate") == rate, later
    with time_machine.travel(BASE + timedelta(minutes=30), tick=False):
        finished_run(flow, "success", at=BASE + timedelta(minutes=30))
        finished_run(flow, "success", at=BASE + timedelta(minutes=30))
        assert scrape().value("error_rate") == 3 / 8 * 100
    with time_machine.travel(BASE + timedelta(minutes=75), tick=False):
        assert scrape().value("error_rate") == 0.0  # only the two later successes are in the hour
    with time_machine.travel(BASE + timedelta(hours=3), tick=False):
        assert scrape().value("error_rate") == 0.0  # nothing finished: 0, not NaN


def test_the_last_scheduler_tick_is_exposed_as_a_timestamp() -> None:
    assert scrape().value("rpa_scheduler_last_tick_timestamp_seconds") == 0
    with time_machine.travel(BASE, tick=False):
        tick()
    assert scrape().value("rpa_scheduler_last_tick_timestamp_seconds") == BASE.timestamp()
    with time_machine.travel(BASE + timedelta(minutes=1), tick=False):
        tick()
    assert scrape().value("rpa_scheduler_last_tick_timestamp_seconds") == BASE.timestamp() + 60


def test_stale_runs_are_running_runs_past_the_lease() -> None:
    flow = workflow("stuck")
    running_run(flow)  # fresh heartbeat
    running_run(flow, heartbeat_age=30)
    assert scrape().value("rpa_stale_runs") == 0
    running_run(flow, heartbeat_age=600)
    running_run(flow, heartbeat_age=86400)
    assert scrape().value("rpa_stale_runs") == 2
    tick()  # the reaper marks them abandoned
    result = scrape()
    assert result.value("rpa_stale_runs") == 0
    assert result.value("workflow_executions_total", workflow_id="stuck", status="abandoned") == 2
    assert result.value("active_workflows") == 2


# --- Other processes, the endpoint --------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_work_done_by_a_command_in_another_process_shows_without_restart() -> None:
    workflow("step-ok")
    workflow("step-bad", "false")
    Chain.objects.create_with_steps("nightly", "Nightly", ["step-ok", "step-ok"])
    Chain.objects.create_with_steps("doomed", "Doomed", ["step-ok", "step-bad"])
    client = Client()
    before = scrape(client)

    done = manage("run_chain", "nightly")
    assert done.returncode == 0, done.stderr
    failed = manage("run_chain", "doomed")
    assert failed.returncode == 1, failed.stderr

    after = scrape(client)  # same process, same registry: nothing restarted
    assert delta(before, after, "chain_executions_total") == {
        labels(chain_id="nightly", status="success"): 1,
        labels(chain_id="doomed", status="failure"): 1,
    }
    assert delta(before, after, "workflow_executions_total") == {
        labels(workflow_id="step-ok", status="success"): 3,
        labels(workflow_id="step-bad", status="failure"): 1,
    }
    assert delta(before, after, "workflow_duration_seconds_count") == {
        labels(workflow_id="step-ok"): 3,
        labels(workflow_id="step-bad"): 1,
    }
    logged = delta(before, after, "log_entries_total")
    assert sum(logged.values()) == LogEntry.objects.count() > 0  # the child's runner lines
    assert after.value("error_rate") == 25.0


def test_a_bearer_token_guards_metrics_when_set(settings: Settings) -> None:
    settings.RPA_METRICS_TOKEN = "s3cret-token"
    client = Client()
    for headers in [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "s3cret-token"},
        {"Authorization": "Basic s3cret-token"},
        {"Authorization": "Bearer s3cret-token "},
    ]:
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401, headers
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert b"workflow_executions" not in response.content
    result = scrape(client, Authorization="Bearer s3cret-token")
    assert "workflow_executions" in result.families
    assert "error_rate" in scrape(client, Authorization="bearer s3cret-token").families  # scheme: any case


def test_without_a_token_metrics_is_open(settings: Settings) -> None:
    settings.RPA_METRICS_TOKEN = ""
    assert "error_rate" in scrape().families


def test_only_get_is_allowed() -> None:
    assert Client().post("/metrics").status_code == 405


def test_django_prometheus_http_metrics_are_served_too() -> None:
    client = Client()
    client.get("/health")
    result = scrape(client)
    http = {name for name in result.families if name.startswith("django_http_")}
    assert "django_http_requests_total_by_method" in http
    assert "django_http_responses_total_by_status" in http
    assert result.families["django_http_requests_total_by_method"].type == "counter"


def test_multiprocess_mode_serves_our_families_from_a_fresh_registry(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    flow = workflow("multi")
    finished_run(flow, "failure", 2_000_000)
    LogEntry.objects.create(level="ERROR", component="multi", message="m")
    single = scrape()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    multi = scrape()
    assert_every_family_well_formed(multi)
    for sample in ["workflow_executions_total", "workflow_duration_seconds_bucket", "log_entries_total"]:
        assert multi.series(sample) == single.series(sample)
    assert multi.value("workflow_executions_total", workflow_id="multi", status="failure") == 1
    # Each family once: the fresh registry holds exactly one database collector.
    assert multi.body.count("# TYPE workflow_executions_total ") == 1
    assert multi.body.count("# TYPE error_rate ") == 1


def test_open_alerts_are_counted_by_severity_until_resolved() -> None:
    from alerts.models import Alert, AlertRule

    empty = scrape()
    assert [empty.value("rpa_open_alerts", severity=s) for s in ("info", "warning", "critical")] == [0, 0, 0]
    rule = AlertRule.objects.create(name="failed", kind="workflow_failed", severity="critical")
    alert = Alert.objects.create(rule=rule, subject="bot", severity="critical", summary="bot failed")
    assert scrape().value("rpa_open_alerts", severity="critical") == 1
    alert.resolve()
    assert scrape().value("rpa_open_alerts", severity="critical") == 0
