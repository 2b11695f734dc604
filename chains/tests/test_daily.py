"""Daily per-workflow aggregates: the rollup, its upkeep in the tick, retention, "slower than usual"."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.test import Client, override_settings
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

import chains.admin_daily  # noqa: F401  (registers the WorkflowDay admin before the URLconf is built)
from chains.daily import (
    CATCHUP_DAYS,
    FINALIZE_GRACE,
    QUANTILES,
    DayStats,
    day_bounds,
    merged_percentiles,
    percentile,
    rollup_day,
    rollup_days,
    rollup_due,
    rollup_tick,
    slower_than_usual,
)
from chains.models import DAY_BUCKETS, Chain, ChainRun, RunStatus, Workflow, WorkflowDay, WorkflowRun
from logs.retention import purge
from rpa_monitor.tests.badinput import HAND_PICKED, TEXT

pytestmark = pytest.mark.django_db

DAY = date(2026, 11, 20)  # a Friday; TIME_ZONE is UTC unless a test says otherwise
NOON = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # DAY has long ended


def workflow(slug: str = "bot") -> Workflow:
    return Workflow.objects.create(slug=slug, name=slug, command=["true"])


def run(
    wf: Workflow, finished: datetime, seconds: float | None = 10.0, status: str = RunStatus.SUCCESS
) -> WorkflowRun:
    """A run that finished at `finished` after `seconds` (None: never started, e.g. cancelled queued)."""
    started = None if seconds is None else finished - timedelta(seconds=seconds)
    return WorkflowRun.objects.create(
        workflow=wf,
        status=status,
        created_at=started or finished,
        started_at=started,
        finished_at=finished,
    )


def row(wf: Workflow, day: date = DAY) -> WorkflowDay:
    return WorkflowDay.objects.get(workflow=wf, day=day)


def numpy_linear(values: Sequence[float], q: float) -> float:
    """numpy.percentile(values, 100 * q) with its default method, written out."""
    ordered = sorted(values)
    h = (len(ordered) - 1) * q
    low, high = math.floor(h), math.ceil(h)
    return ordered[low] + (h - low) * (ordered[high] - ordered[low])


# -- rollup_day ----------------------------------------------------------------------------


def test_it_counts_runs_by_outcome_and_computes_exact_percentiles() -> None:
    bot, other = workflow("bot"), workflow("other")
    durations = [float(s) for s in range(1, 11)]  # 1..10 s
    for i, seconds in enumerate(durations):
        run(bot, NOON + timedelta(minutes=i), seconds)
    run(bot, NOON, 20.0, RunStatus.FAILURE)
    run(bot, NOON, 30.0, RunStatus.TIMEOUT)
    run(bot, NOON, 40.0, RunStatus.ABANDONED)
    run(bot, NOON, None, RunStatus.CANCELLED)  # cancelled while queued: counted, not measured
    run(bot, NOON - timedelta(days=1), 99.0)  # the day before
    run(bot, datetime(2026, 11, 21, 0, 0, tzinfo=UTC), 99.0)  # the next day's first instant
    WorkflowRun.objects.create(workflow=bot, status=RunStatus.RUNNING, started_at=NOON)
    run(other, datetime(2026, 11, 20, 0, 0, tzinfo=UTC), 5.0)  # this day's first instant

    assert rollup_day(DAY, now=LATER) == 2

    day = row(bot)
    assert (day.runs, day.successes, day.failures, day.cancelled) == (14, 10, 3, 1)
    measured = [*durations, 20.0, 30.0, 40.0]
    assert day.duration_count == 13
    assert day.duration_sum == pytest.approx(sum(measured))
    assert day.p50 == pytest.approx(numpy_linear(measured, 0.5)) == pytest.approx(7.0)
    assert day.p95 == pytest.approx(numpy_linear(measured, 0.95))  # 30 + 0.4 * 10 = 34
    assert day.p99 == pytest.approx(numpy_linear(measured, 0.99))
    assert len(day.histogram) == len(DAY_BUCKETS) + 1
    assert sum(day.histogram) == 13
    bounds = [0.0, *DAY_BUCKETS, math.inf]  # bucket i holds (bounds[i], bounds[i + 1]]
    assert day.histogram == [
        sum(1 for d in measured if bounds[i] < d <= bounds[i + 1]) for i in range(len(DAY_BUCKETS) + 1)
    ]
    assert day.success_rate == pytest.approx(100 * 10 / 13)
    assert day.final
    assert (row(other).runs, row(other).p50) == (1, 5.0)


def test_a_duration_on_a_bucket_bound_counts_in_that_bucket_like_prometheus_le() -> None:
    bot = workflow()
    bound = DAY_BUCKETS[40]
    run(bot, NOON, bound)
    run(bot, NOON, bound * 1.001)
    rollup_day(DAY, now=LATER)
    counts = row(bot).histogram
    assert (counts[40], counts[41]) == (1, 1)


def test_percentiles_follow_numpy_linear_interpolation() -> None:
    values = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6]
    for q in (0.0, 0.25, 0.5, 0.95, 0.99, 1.0):
        assert percentile(sorted(values), q) == pytest.approx(numpy_linear(values, q))
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.99) == 7.0


@override_settings(TIME_ZONE="Europe/Berlin")
def test_it_puts_runs_on_their_local_day_across_the_25_hour_dst_day() -> None:
    """2026-10-25 in Berlin: clocks go back at 03:00 CEST, the day runs 22:00Z to 23:00Z next day."""
    bot = workflow()
    day = date(2026, 10, 25)
    start, end = day_bounds(day)
    assert (start, end) == (
        datetime(2026, 10, 24, 22, 0, tzinfo=UTC),
        datetime(2026, 10, 25, 23, 0, tzinfo=UTC),
    )
    assert end - start == timedelta(hours=25)
    spring = day_bounds(date(2026, 3, 29))
    assert spring[1] - spring[0] == timedelta(hours=23)
    run(bot, datetime(2026, 10, 24, 21, 59, tzinfo=UTC), 1.0)  # 23:59 CEST on the 24th
    run(bot, datetime(2026, 10, 24, 22, 0, tzinfo=UTC), 2.0)  # 00:00 CEST on the 25th
    run(bot, datetime(2026, 10, 25, 0, 30, tzinfo=UTC), 3.0)  # 02:30 CEST, the first of two
    run(bot, datetime(2026, 10, 25, 1, 30, tzinfo=UTC), 4.0)  # 02:30 CET, the repeated hour
    run(bot, datetime(2026, 10, 25, 22, 59, tzinfo=UTC), 5.0)  # 23:59 CET on the 25th
    run(bot, datetime(2026, 10, 25, 23, 0, tzinfo=UTC), 6.0)  # 00:00 CET on the 26th
    later = datetime(2026, 10, 27, tzinfo=UTC)
    for d in (date(2026, 10, 24), day, date(2026, 10, 26)):
        rollup_day(d, now=later)
    assert [(r.day, r.runs, r.p50) for r in WorkflowDay.objects.order_by("day")] == [
        (date(2026, 10, 24), 1, 1.0),
        (day, 4, 3.5),
        (date(2026, 10, 26), 1, 6.0),
    ]


def test_final_rows_are_never_recomputed() -> None:
    bot = workflow()
    run(bot, NOON, 10.0)
    assert rollup_day(DAY, now=LATER) == 1
    before = row(bot)
    assert before.final
    WorkflowRun.objects.all().delete()  # purged
    run(bot, NOON, 50.0)  # and something odd written into the past

    assert rollup_day(DAY, now=LATER + timedelta(days=1)) == 0

    after = row(bot)
    assert (after.runs, after.p50, after.updated_at) == (1, 10.0, before.updated_at)


def test_a_day_that_has_not_ended_is_rolled_up_but_not_final() -> None:
    bot = workflow()
    run(bot, NOON, 10.0)
    assert rollup_day(DAY, now=NOON + timedelta(minutes=1)) == 1
    assert not row(bot).final
    run(bot, NOON + timedelta(hours=1), 20.0)
    midnight = datetime(2026, 11, 21, tzinfo=UTC)
    rollup_day(DAY, now=midnight + FINALIZE_GRACE - timedelta(seconds=1))  # still in the grace
    assert (row(bot).runs, row(bot).final) == (2, False)
    rollup_day(DAY, now=midnight + FINALIZE_GRACE)
    assert (row(bot).runs, row(bot).final) == (2, True)


def test_a_workflow_left_without_runs_loses_its_open_row() -> None:
    bot, other = workflow("bot"), workflow("other")
    run(bot, NOON, 10.0)
    gone = run(other, NOON, 10.0)
    rollup_day(DAY, now=NOON)
    gone.delete()
    rollup_day(DAY, now=NOON + timedelta(minutes=5))
    assert list(WorkflowDay.objects.values_list("workflow__slug", flat=True)) == ["bot"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_rollups_of_one_day_write_one_correct_row_per_workflow() -> None:
    flows = [workflow(f"bot-{i}") for i in range(5)]
    for i, wf in enumerate(flows):
        for n in range(10):
            run(wf, NOON + timedelta(seconds=n), float(i + n))
    errors: list[BaseException] = []

    def roll(now: datetime) -> None:
        try:
            rollup_day(DAY, now=now)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    # Half of them while the day is open, half after it ended: final rows must win.
    moments = [NOON + timedelta(hours=1), LATER] * 4
    threads = [threading.Thread(target=roll, args=(moment,)) for moment in moments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    rollup_day(DAY, now=LATER)
    days = list(WorkflowDay.objects.order_by("workflow__slug"))
    assert [(d.workflow.slug, d.runs, d.final) for d in days] == [(wf.slug, 10, True) for wf in flows]
    assert [d.p50 for d in days] == [i + 4.5 for i in range(5)]


# -- rollup_due: what every tick does -------------------------------------------------------


def due(at: datetime) -> int:
    with time_machine.travel(at, tick=False):
        return rollup_due()


@override_settings(RPA_ROLLUP_SECONDS=300)
def test_the_tick_refreshes_todays_rows_when_they_are_older_than_the_rollup_interval() -> None:
    bot = workflow()
    assert due(NOON) == 0  # no runs, no rows
    run(bot, NOON, 10.0)
    assert due(NOON + timedelta(seconds=1)) == 1  # missing while there are runs today
    run(bot, NOON + timedelta(seconds=30), 20.0)
    assert due(NOON + timedelta(seconds=200)) == 0  # fresh enough
    assert row(bot).runs == 1
    assert due(NOON + timedelta(seconds=302)) == 1
    assert (row(bot).runs, row(bot).p50, row(bot).final) == (2, 15.0, False)


def test_the_tick_finalizes_yesterday_after_midnight() -> None:
    bot = workflow()
    run(bot, NOON, 10.0)
    due(NOON + timedelta(seconds=1))
    run(bot, datetime(2026, 11, 20, 23, 59, 59, tzinfo=UTC), 30.0)
    midnight = datetime(2026, 11, 21, tzinfo=UTC)
    due(midnight + timedelta(minutes=2))  # within the grace: still open, and refreshed
    assert (row(bot).runs, row(bot).final) == (2, False)
    due(midnight + FINALIZE_GRACE + timedelta(seconds=1))
    assert (row(bot).runs, row(bot).final) == (2, True)
    assert due(midnight + timedelta(hours=1)) == 0


def test_the_tick_catches_up_on_days_missed_while_the_scheduler_was_down() -> None:
    bot = workflow()
    for back in range(1, CATCHUP_DAYS + 3):
        run(bot, NOON - timedelta(days=back), float(back))
    due(NOON)
    days = {d.day: d for d in WorkflowDay.objects.all()}
    # Bounded: the last CATCHUP_DAYS days; older ones are the purge's and reports' to roll up.
    assert sorted(days) == [DAY - timedelta(days=back) for back in range(CATCHUP_DAYS, 0, -1)]
    assert all(d.final and d.runs == 1 for d in days.values())


def test_the_tick_deletes_rows_older_than_the_aggregate_retention(settings: Any) -> None:
    bot = workflow()
    keep_days = settings.RPA_AGGREGATE_DAYS
    for back in (keep_days + 1, keep_days, 30):
        WorkflowDay.objects.create(workflow=bot, day=DAY - timedelta(days=back), runs=1, final=True)
    assert due(NOON) == 1
    assert sorted((DAY - d).days for d in WorkflowDay.objects.values_list("day", flat=True)) == [
        30,
        keep_days,
    ]


def test_the_tick_costs_two_queries_when_nothing_is_due(django_assert_num_queries: Any) -> None:
    bot = workflow()
    for back in range(CATCHUP_DAYS + 1):
        run(bot, NOON - timedelta(days=back), 10.0)
    due(NOON)
    assert WorkflowDay.objects.count() == CATCHUP_DAYS + 1
    with django_assert_num_queries(2):  # the days' states, the retention delete
        assert due(NOON + timedelta(seconds=5)) == 0


def test_the_tick_step_reports_what_it_did() -> None:
    run(workflow(), NOON, 1.0)
    with time_machine.travel(NOON, tick=False):
        assert rollup_tick(NOON).summary() == "daily aggregates: 1 row(s) written or deleted"


# -- retention ---------------------------------------------------------------------------------


def test_purging_runs_keeps_the_aggregates_of_their_days() -> None:
    bot, step_flow = workflow("bot"), workflow("step")
    long_ago = NOON - timedelta(days=100)
    for seconds in (1.0, 2.0, 3.0):
        run(bot, long_ago, seconds)
    run(bot, long_ago + timedelta(days=1), 7.0, RunStatus.FAILURE)
    chain = Chain.objects.create_with_steps("nightly", "Nightly", ["step"])
    chain_run = ChainRun.objects.create(chain=chain, status=RunStatus.SUCCESS, created_at=long_ago)
    step = run(step_flow, long_ago + timedelta(days=2), 4.0)
    WorkflowRun.objects.filter(pk=step.pk).update(chain_run=chain_run, created_at=NOON)  # created late

    with time_machine.travel(NOON, tick=False):
        report = purge(NOON - timedelta(days=90))

    assert report.counts["workflow runs"] == 4
    assert report.counts["chain runs"] == 1
    assert not WorkflowRun.objects.exists()
    days = {(d.workflow.slug, (DAY - d.day).days): d for d in WorkflowDay.objects.all()}
    assert sorted(days) == [("bot", 99), ("bot", 100), ("step", 98)]
    assert (days["bot", 100].runs, days["bot", 100].p50, days["bot", 100].final) == (3, 2.0, True)
    assert (days["bot", 99].failures, days["step", 98].runs) == (1, 1)
    assert all(d.final for d in days.values())
    # Later ticks and rollups leave them alone (their runs are gone for good).
    due(NOON + timedelta(minutes=1))
    rollup_days(DAY - timedelta(days=120), DAY, now=NOON)
    assert WorkflowDay.objects.get(workflow=bot, day=DAY - timedelta(days=100)).runs == 3


def test_a_dry_run_purge_rolls_nothing_up() -> None:
    bot = workflow()
    run(bot, NOON - timedelta(days=100), 1.0)
    with time_machine.travel(NOON, tick=False):
        call_command("purge_logs", "--older-than", "90d", "--dry-run")
    assert not WorkflowDay.objects.exists()
    with time_machine.travel(NOON, tick=False):
        call_command("purge_logs", "--older-than", "90d")
    assert WorkflowDay.objects.get().runs == 1


# -- slower than usual ---------------------------------------------------------------------


def jittered(base: float, n: int, seed: int) -> list[float]:
    """n durations spread between 0.7 and 1.3 x base (golden-ratio steps: an even, repeatable spread)."""
    return [base * (0.7 + 0.6 * (((seed + i) * 0.6180339887) % 1)) for i in range(n)]


def history(wf: Workflow, before: float, week: float, per_day: int = 4) -> None:
    """`per_day` runs a day: 28 days around `before` seconds, then 7 days (today last) around `week`."""
    for back in range(35):
        base = week if back < 7 else before
        finished = NOON - timedelta(days=back)
        for i, seconds in enumerate(jittered(base, per_day, seed=back * per_day)):
            run(wf, finished - timedelta(minutes=i), seconds)


def test_it_flags_a_workflow_1_6_times_slower_than_usual_and_not_one_1_4_times(
    django_assert_num_queries: Any,
) -> None:
    slow, slowish, steady, sparse = (
        workflow("slow"),
        workflow("slowish"),
        workflow("steady"),
        workflow("sparse"),
    )
    history(slow, before=20.0, week=32.0)
    history(slowish, before=20.0, week=28.0)
    history(steady, before=20.0, week=20.0)
    run(sparse, NOON - timedelta(days=20), 10.0)  # too few runs to say
    run(sparse, NOON - timedelta(days=1), 100.0)
    run(sparse, NOON, 100.0)
    run(sparse, NOON, 100.0)
    rollup_days(DAY - timedelta(days=34), DAY, now=NOON)

    with django_assert_num_queries(1):
        flags = slower_than_usual(NOON)

    assert set(flags) == {slow.pk}
    flag = flags[slow.pk]
    assert flag.median_before == pytest.approx(20.0, rel=0.05)
    assert flag.median_week == pytest.approx(32.0, rel=0.05)
    assert flag.ratio == pytest.approx(1.6, rel=0.05)
    assert flag.ratio == flag.median_week / flag.median_before


def test_the_week_is_the_last_seven_days_today_included() -> None:
    wf = workflow()
    history(wf, before=20.0, week=40.0)
    rollup_days(DAY - timedelta(days=34), DAY, now=NOON)
    assert wf.pk in slower_than_usual(NOON)
    # A week later the slow week is "before" (mixed into the 4 weeks), and this week has no runs.
    assert slower_than_usual(NOON + timedelta(days=7)) == {}


# -- merged percentiles: the property --------------------------------------------------------

DURATION = st.one_of(
    st.floats(min_value=0.0, max_value=0.05),  # the first buckets, below 10 ms
    st.floats(min_value=0.0, max_value=100_000.0),
    st.sampled_from([0.0, 0.01, 1.0, 10.0, 3600.0, DAY_BUCKETS[-1]]),  # exact bucket bounds
)


@given(days=st.lists(st.lists(DURATION, max_size=40), min_size=1, max_size=8))
def test_merged_histogram_percentiles_are_within_the_bucket_resolution(days: list[list[float]]) -> None:
    """Bound (see chains.daily): |merged - exact| <= 0.25 * exact + 0.01 s.

    Each order statistic is estimated inside its own bucket (lo, hi], whose width
    is 0.25 * lo < 0.25 * x (0.01 s for the first one, [0, 0.01]); interpolating two
    of them keeps the bound. Counts add up across days.
    """
    rows = [WorkflowDay(**_stats(durations).columns()) for durations in days]
    everything = sorted(d for durations in days for d in durations)
    for r, durations in zip(rows, days, strict=True):
        assert sum(r.histogram) == r.duration_count == r.runs == len(durations)
    merged = merged_percentiles(rows)
    assert sum(sum(r.histogram) for r in rows) == len(everything)
    if not everything:
        assert merged == (None, None, None)
        return
    for q, estimate in zip(QUANTILES, merged, strict=True):
        exact = percentile(everything, q)
        assert exact is not None
        assert estimate is not None
        assert abs(estimate - exact) <= 0.25 * exact + 0.01 + 1e-9, (q, exact, estimate)


def _stats(durations: list[float]) -> DayStats:
    stats = DayStats()
    for seconds in durations:
        stats.add(RunStatus.SUCCESS, NOON, NOON + timedelta(seconds=seconds))
    return stats


# -- the admin ------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client: Client) -> Client:
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw"))
    return client


def test_the_admin_lists_days_read_only(admin_client: Client) -> None:
    bot = workflow("login-bot")
    for seconds in (1.0, 2.0, 3.0):
        run(bot, NOON, seconds)
    run(bot, NOON, 4.0, RunStatus.FAILURE)
    rollup_day(DAY, now=LATER)
    url = reverse("admin:chains_workflowday_changelist")
    page = admin_client.get(url)
    assert page.status_code == 200
    text = page.content.decode()
    assert "login-bot" in text
    assert "75%" in text  # success rate
    assert "2.50s" in text  # p50 of 1, 2, 3, 4
    assert admin_client.get(reverse("admin:chains_workflowday_add")).status_code == 403
    day = row(bot)
    change = admin_client.get(reverse("admin:chains_workflowday_change", args=[day.pk]))
    assert change.status_code == 200
    assert b'name="runs"' not in change.content  # read-only: no inputs
    assert admin_client.post(reverse("admin:chains_workflowday_delete", args=[day.pk])).status_code == 403
    assert WorkflowDay.objects.filter(pk=day.pk).exists()


@pytest.mark.parametrize(
    "query",
    [
        "day__year=2026",
        "day__year=2026&day__month=11&day__day=20",
        "day__year=abc",
        "day__year=99999999999999999999999",
        "day__year=9999&day__month=12",
        "day__year=0001",
        "day__year=%D9%A3",
        "day__year=2026&day__month=13",
        "day__year=2026&day__month=2&day__day=30",
        "workflow__id__exact=abc",
        "final__exact=maybe",
        "q=%00",
        "o=99",
    ],
)
def test_the_admin_changelist_takes_any_query_without_a_500(admin_client: Client, query: str) -> None:
    bot = workflow()
    run(bot, NOON, 1.0)
    rollup_day(DAY, now=LATER)
    page = admin_client.get(reverse("admin:chains_workflowday_changelist") + "?" + query)
    assert page.status_code in (200, 302), page.status_code


ADMIN_KEYS = ["day__year", "day__month", "day__day", "workflow__id__exact", "final__exact", "q", "o", "p"]
ADMIN_VALUES = st.one_of(
    TEXT,
    st.integers().map(str),
    st.sampled_from(HAND_PICKED),
    st.sampled_from(["2026", "11", "20", "0", "00", "9999", "10000", "0001", "1", "True", "9" * 25]),
)


@given(query=st.dictionaries(st.sampled_from(ADMIN_KEYS), ADMIN_VALUES, min_size=1, max_size=4))
def test_the_admin_changelist_takes_random_filters_without_a_500(query: dict[str, str]) -> None:
    client = Client()
    client.force_login(User.objects.get_or_create(username="boss", is_staff=True, is_superuser=True)[0])
    if not WorkflowDay.objects.exists():
        run(workflow(), NOON, 1.0)
        rollup_day(DAY, now=LATER)
    page = client.get(reverse("admin:chains_workflowday_changelist") + "?" + urlencode(query))
    assert page.status_code in (200, 302, 400), (query, page.status_code)
