"""The live dashboard: today's counts and rates, percentiles, the 30-day chart, running runs with
their ETA, open alerts, the scheduler; bounded queries; the staff-only page and its JSON."""

from __future__ import annotations

import json
import statistics
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from pytest_django.fixtures import Settings

from alerts.models import Alert, AlertRule
from chains.models import (
    Chain,
    ChainRun,
    RunMinute,
    RunStatus,
    Workflow,
    WorkflowDay,
    WorkflowRun,
)
from rpa_monitor.dashboard import ETA_LOOKBACK, dashboard_data, estimate_remaining, percentile
from triggers.models import SchedulerTick

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
# Queries of one dashboard_data() call, whatever the history: counts (2), chain counts (2),
# trailing hour, durations, chart, running runs, their ETA (one UNION ALL), alerts (+ a count
# past the limit), scheduler tick, slower-than-usual flags (+ their slugs when there are some).
MAX_QUERIES = 13


def workflow(slug: str) -> Workflow:
    return Workflow.objects.create(slug=slug, name=slug, command=["true"])


def run(
    wf: Workflow, status: str, finished_at: datetime | None, seconds: float | None = 1.0, **fields: Any
) -> WorkflowRun:
    """A run that took `seconds` up to `finished_at` (or so far, up to NOW); None: never started."""
    started_at = None if seconds is None else (finished_at or NOW) - timedelta(seconds=seconds)
    return WorkflowRun.objects.create(
        workflow=wf, status=status, started_at=started_at, finished_at=finished_at, **fields
    )


# -- counts and rates ------------------------------------------------------------------------


def test_it_counts_todays_runs_by_outcome_within_the_local_calendar_day(settings: Settings) -> None:
    settings.TIME_ZONE = "Europe/Paris"
    now = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)  # 00:30 on 2 March in Paris
    wf = workflow("login")
    for status in (
        RunStatus.SUCCESS,
        RunStatus.SUCCESS,
        RunStatus.FAILURE,
        RunStatus.TIMEOUT,
        RunStatus.ABANDONED,
        RunStatus.CANCELLED,
    ):
        run(wf, status, now - timedelta(minutes=20))  # 00:10 Paris: today
    run(wf, RunStatus.FAILURE, now - timedelta(minutes=40))  # 23:50 Paris on 1 March: yesterday
    run(wf, RunStatus.RUNNING, None)
    run(wf, RunStatus.QUEUED, None, seconds=None)

    today = dashboard_data(now)["today"]

    assert today == {
        "date": "2026-03-02",
        "running": 1,
        "queued": 1,
        "succeeded": 2,
        "failed": 3,  # failure, timeout and abandoned
        "cancelled": 1,
        "finished": 6,
        "success_rate": 40.0,  # of decided runs: cancelled ones are left out
        "error_rate": 60.0,
    }


def test_it_counts_chain_runs_apart_from_their_steps() -> None:
    wf = workflow("login")
    chain = Chain.objects.create_with_steps("demo", "Demo", ["login"])
    ChainRun.objects.create(chain=chain, status=RunStatus.FAILURE, started_at=NOW, finished_at=NOW)
    ChainRun.objects.create(chain=chain, status=RunStatus.RUNNING, started_at=NOW)
    run(wf, RunStatus.FAILURE, NOW)

    data = dashboard_data(NOW)

    assert (data["chain_runs"]["failed"], data["chain_runs"]["running"]) == (1, 1)
    assert (data["today"]["failed"], data["today"]["running"]) == (1, 0)


def test_it_gives_success_and_error_rates_over_the_trailing_hour_from_run_minutes() -> None:
    RunMinute.objects.create(minute=NOW - timedelta(minutes=59), finished=6, failed=1)
    RunMinute.objects.create(minute=NOW - timedelta(minutes=1), finished=4, failed=1)
    RunMinute.objects.create(minute=NOW - timedelta(minutes=61), finished=100, failed=100)  # too old

    assert dashboard_data(NOW)["last_hour"] == {
        "finished": 10,
        "failed": 2,
        "success_rate": 80.0,
        "error_rate": 20.0,
    }


def test_it_has_no_rates_when_nothing_finished() -> None:
    data = dashboard_data(NOW)
    assert data["today"]["success_rate"] is None
    assert data["last_hour"]["error_rate"] is None


# -- durations -------------------------------------------------------------------------------


def test_it_gives_p50_p95_p99_per_workflow_over_runs_finished_in_the_last_24_hours() -> None:
    slow, quick = workflow("slow"), workflow("quick")
    for seconds in range(1, 101):
        status = RunStatus.FAILURE if seconds % 10 == 0 else RunStatus.SUCCESS
        run(slow, status, NOW - timedelta(hours=23), seconds=seconds)
    run(slow, RunStatus.SUCCESS, NOW - timedelta(hours=25), seconds=5000)  # outside the window
    run(quick, RunStatus.SUCCESS, NOW - timedelta(minutes=1), seconds=0.25)
    run(quick, RunStatus.RUNNING, None)  # not finished: not counted

    rows = {row["workflow"]: row for row in dashboard_data(NOW)["durations"]["workflows"]}

    cuts = statistics.quantiles(range(1, 101), n=100, method="inclusive")
    assert rows["slow"]["runs"] == 100
    assert rows["slow"]["failures"] == 10
    assert rows["slow"]["p50"] == pytest.approx(cuts[49])
    assert rows["slow"]["p95"] == pytest.approx(cuts[94])
    assert rows["slow"]["p99"] == pytest.approx(cuts[98])
    assert rows["quick"] == {**rows["quick"], "runs": 1, "failures": 0, "p50": 0.25, "p99": 0.25}
    assert rows["quick"]["url"].endswith(f"?workflow__id__exact={quick.pk}")


def test_percentile_interpolates_between_closest_ranks() -> None:
    assert percentile([], 50) is None
    assert percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([0.0, 10.0], 95) == pytest.approx(9.5)


# -- the 30-day chart ----------------------------------------------------------------------


def day_row(wf: Workflow, day: date, runs: int, successes: int, failures: int) -> WorkflowDay:
    cancelled = runs - successes - failures
    return WorkflowDay.objects.create(
        workflow=wf, day=day, runs=runs, successes=successes, failures=failures, cancelled=cancelled
    )


def test_it_charts_30_days_from_the_daily_aggregates_summed_over_workflows_and_today_live() -> None:
    a, b = workflow("a"), workflow("b")
    today = NOW.date()
    day_row(a, today - timedelta(days=1), runs=10, successes=8, failures=1)
    day_row(b, today - timedelta(days=1), runs=5, successes=1, failures=4)
    day_row(a, today - timedelta(days=29), runs=3, successes=3, failures=0)
    day_row(a, today - timedelta(days=30), runs=99, successes=0, failures=99)  # 31 days ago: off the chart
    day_row(a, today, runs=1000, successes=0, failures=1000)  # today's row may lag: live counts win
    run(a, RunStatus.SUCCESS, NOW - timedelta(minutes=5))
    run(a, RunStatus.FAILURE, NOW - timedelta(minutes=5))

    days = dashboard_data(NOW)["days"]

    assert len(days) == 30
    assert days[0] == {
        "day": "2026-02-01",
        "label": "01 Feb",
        "runs": 3,
        "successes": 3,
        "failures": 0,
        "success_rate": 100.0,
        "live": False,
    }
    assert days[-2]["runs"] == 15
    assert days[-2]["success_rate"] == pytest.approx(100 * 9 / 14, abs=0.05)  # the cancelled one left out
    assert days[-1] == {**days[-1], "day": "2026-03-02", "runs": 2, "failures": 1, "success_rate": 50.0}
    assert days[-1]["live"] is True
    assert [d["runs"] for d in days[1:-2]] == [0] * 27
    assert all(d["success_rate"] is None for d in days[1:-2])


# -- running runs and their ETA ----------------------------------------------------------------


def test_it_lists_running_runs_with_progress_and_an_eta_from_progress_or_past_durations() -> None:
    known, new = workflow("known"), workflow("new")
    for seconds in (10, 20, 30):
        run(known, RunStatus.SUCCESS, NOW - timedelta(hours=1), seconds=seconds)
    run(known, RunStatus.FAILURE, NOW - timedelta(hours=1), seconds=1000)  # failures are no yardstick
    chain = Chain.objects.create_with_steps("demo", "Demo", ["known"])
    chain_run = ChainRun.objects.create(chain=chain, status=RunStatus.RUNNING, started_at=NOW)
    by_median = run(known, RunStatus.RUNNING, None, seconds=5, chain_run=chain_run, position=1)
    by_progress = run(known, RunStatus.RUNNING, None, seconds=10, progress_done=1, progress_total=4)
    overdue = run(known, RunStatus.RUNNING, None, seconds=25)
    unknown = run(new, RunStatus.RUNNING, None, seconds=3)

    runs = {r["id"]: r for r in dashboard_data(NOW)["running"]["runs"]}

    assert list(runs) == [by_median.pk, by_progress.pk, overdue.pk, unknown.pk]  # oldest first
    assert runs[by_median.pk] == {
        **runs[by_median.pk],
        "workflow": "known",
        "chain": "demo",
        "chain_run_url": reverse("admin:chains_chainrun_change", args=[chain_run.pk]),
        "url": reverse("admin:chains_workflowrun_change", args=[by_median.pk]),
        "elapsed_seconds": 5.0,
        "typical_seconds": 20.0,
        "eta_seconds": 15.0,
        "eta_clock": "09:30:15",
        "eta_basis": "median of its last 3 successful run(s)",
        "overdue": False,
        "progress_percent": None,
    }
    assert runs[by_progress.pk] == {
        **runs[by_progress.pk],
        "progress_percent": 25.0,
        "eta_seconds": 30.0,  # 10 s for a quarter: 30 s to go
        "eta_basis": "progress",
    }
    assert (runs[overdue.pk]["overdue"], runs[overdue.pk]["eta_seconds"]) == (True, 0.0)
    assert runs[unknown.pk]["eta_seconds"] is None
    assert runs[unknown.pk]["chain"] is None


def test_the_eta_looks_at_a_bounded_number_of_the_workflows_latest_runs() -> None:
    wf = workflow("mostly-failing")
    run(wf, RunStatus.SUCCESS, NOW - timedelta(days=3), seconds=60)
    for _ in range(ETA_LOOKBACK):
        run(wf, RunStatus.FAILURE, NOW - timedelta(days=2), seconds=1)
    run(wf, RunStatus.RUNNING, None, seconds=1)

    [running] = dashboard_data(NOW)["running"]["runs"]

    assert running["eta_seconds"] is None  # its one success is older than the runs looked at
    assert running["typical_seconds"] is None


@pytest.mark.parametrize(
    ("elapsed", "done", "total", "typical", "expected"),
    [
        (30.0, 3, 3, None, (0.0, "progress")),
        (30.0, 5, 3, None, (0.0, "progress")),  # a bot overshooting its total is done, not negative
        (30.0, 0, 10, (100.0, 4), (70.0, "median of its last 4 successful run(s)")),
        (30.0, None, None, (10.0, 20), (0.0, "median of its last 20 successful run(s)")),
    ],
)
def test_it_estimates_the_remaining_time(
    elapsed: float, done: int | None, total: int | None, typical: Any, expected: tuple[float, str]
) -> None:
    assert estimate_remaining(elapsed, done, total, typical) == expected


# -- alerts and the scheduler ----------------------------------------------------------------


def alert(rule: AlertRule, subject: str, status: str, minutes_ago: int, **fields: Any) -> Alert:
    return Alert.objects.create(
        rule=rule,
        subject=subject,
        status=status,
        severity=rule.severity,
        summary=f"{subject} failed",
        triggered_at=NOW - timedelta(minutes=minutes_ago),
        **fields,
    )


def test_it_lists_open_alerts_newest_first() -> None:
    rule = AlertRule.objects.create(name="chains fail", kind="chain_failed", severity="critical")
    old = alert(rule, "old", Alert.Status.ACKNOWLEDGED, 60)
    new = alert(rule, "new", Alert.Status.TRIGGERED, 1)
    alert(rule, "gone", Alert.Status.RESOLVED, 0, resolved_at=NOW)

    alerts = dashboard_data(NOW)["alerts"]

    assert alerts["open"] == 2
    assert [a["id"] for a in alerts["items"]] == [new.pk, old.pk]
    assert alerts["items"][0] == {
        **alerts["items"][0],
        "severity": "critical",
        "status": "triggered",
        "subject": "new",
        "summary": "new failed",
        "rule": "chains fail",
        "url": reverse("admin:alerts_alert_change", args=[new.pk]),
        "triggered_clock": "2026-03-02 09:29:00",
        "age_seconds": 60,
    }


def test_it_counts_all_open_alerts_beyond_those_it_lists() -> None:
    rule = AlertRule.objects.create(name="chains fail", kind="chain_failed")
    for n in range(25):
        alert(rule, f"chain-{n}", Alert.Status.TRIGGERED, n)

    alerts = dashboard_data(NOW)["alerts"]

    assert (alerts["open"], len(alerts["items"])) == (25, alerts["limit"])


def test_it_reports_the_latest_scheduler_tick_of_any_host_with_its_age(settings: Settings) -> None:
    settings.RPA_SCHEDULER_MAX_AGE_SECONDS = 180
    SchedulerTick.objects.create(host="a", pid=1, last_tick_at=NOW - timedelta(minutes=10))
    SchedulerTick.objects.create(host="b", pid=2, last_tick_at=NOW - timedelta(seconds=42))

    scheduler = dashboard_data(NOW)["scheduler"]

    assert scheduler == {**scheduler, "host": "b (pid 2)", "age_seconds": 42.0, "stale": False}
    SchedulerTick.objects.filter(host="b").delete()
    assert dashboard_data(NOW)["scheduler"]["stale"] is True


def test_a_scheduler_that_never_ticked_is_stale() -> None:
    assert dashboard_data(NOW)["scheduler"] == {
        **dashboard_data(NOW)["scheduler"],
        "last_tick_at": None,
        "stale": True,
    }


def test_it_flags_workflows_slower_than_usual_from_the_daily_aggregates() -> None:
    steady, slow = workflow("steady"), workflow("slow")
    for days_ago in range(35):
        for wf, before, week in ((steady, 10.0, 10.0), (slow, 10.0, 20.0)):
            seconds = week if days_ago < 7 else before
            WorkflowDay.objects.create(
                workflow=wf,
                day=NOW.date() - timedelta(days=days_ago),
                runs=4,
                successes=4,
                duration_count=4,
                duration_sum=4 * seconds,
                p50=seconds,
                histogram=histogram_of([seconds] * 4),
                final=days_ago > 0,
            )
    (flag,) = dashboard_data(NOW)["slow"]
    assert flag["workflow"] == "slow"
    assert flag["url"].endswith(f"?workflow__id__exact={slow.pk}")
    assert 1.5 < flag["ratio"] < 2.5
    assert flag["median_seconds"] > flag["baseline_seconds"]


def histogram_of(durations: list[float]) -> list[int]:
    import bisect

    from chains.models import DAY_BUCKETS

    counts = [0] * (len(DAY_BUCKETS) + 1)
    for seconds in durations:
        counts[bisect.bisect_left(DAY_BUCKETS, seconds)] += 1
    return counts


# -- bounded queries -------------------------------------------------------------------------


def populate(workflows: int, runs_each: int) -> None:
    """History that must not cost queries: finished runs, daily rows, resolved alerts, ticks,
    plus a few running runs of different workflows (their ETA is one query for all)."""
    rule = AlertRule.objects.create(name=f"rule-{workflows}", kind="workflow_failed")
    for n in range(workflows):
        wf = workflow(f"wf-{workflows}-{n}")
        WorkflowRun.objects.bulk_create(
            WorkflowRun(
                workflow=wf,
                status=status,
                started_at=NOW - timedelta(days=d, seconds=30),
                finished_at=NOW - timedelta(days=d),
            )
            for d in range(runs_each)
            for status in (RunStatus.SUCCESS, RunStatus.FAILURE)
        )
        for d in range(1, min(runs_each, 40)):
            day_row(wf, NOW.date() - timedelta(days=d), runs=2, successes=1, failures=1)
        alert(rule, wf.slug, Alert.Status.RESOLVED, n, resolved_at=NOW)
        SchedulerTick.objects.create(host=f"host-{workflows}-{n}", pid=n, last_tick_at=NOW)
        if n % 2 == 0:
            run(wf, RunStatus.RUNNING, None, seconds=5, progress_done=n, progress_total=10)
    alert(rule, "open one", Alert.Status.TRIGGERED, 0)


def count_queries() -> tuple[int, dict[str, Any]]:
    with CaptureQueriesContext(connection) as queries:
        data = dashboard_data(NOW)
    return len(queries), data


def test_its_queries_do_not_grow_with_history_or_with_the_number_of_workflows() -> None:
    populate(workflows=2, runs_each=3)
    small, _ = count_queries()
    populate(workflows=30, runs_each=60)
    large, data = count_queries()

    assert small == large <= MAX_QUERIES
    assert len(data["running"]["runs"]) == 16
    assert len(data["durations"]["workflows"]) == 32
    json.dumps(data)  # JSON-serializable as it is


# -- the page and its JSON -------------------------------------------------------------------


def test_the_page_and_its_json_are_for_staff_only(client: Client) -> None:
    for name in ("rpa_dashboard", "rpa_dashboard_data"):
        response = client.get(reverse(name))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    User.objects.create_user("clerk", password="pw-1234-not-staff")
    client.login(username="clerk", password="pw-1234-not-staff")
    assert client.get(reverse("rpa_dashboard_data")).status_code == 302


def test_staff_need_the_run_view_permission_and_see_alerts_only_with_theirs(client: Client) -> None:
    from django.contrib.auth.models import Permission

    rule = AlertRule.objects.create(name="r", kind="workflow_failed")
    Alert.objects.create(rule=rule, subject="bot", severity="warning", summary="bot failed")
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)
    assert client.get(reverse("rpa_dashboard")).status_code == 403
    assert client.get(reverse("rpa_dashboard_data")).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_workflowrun"))
    staff = User.objects.get(pk=staff.pk)  # fresh permission cache
    client.force_login(staff)
    assert client.get(reverse("rpa_dashboard_data")).json()["alerts"]["items"] == []
    staff.user_permissions.add(Permission.objects.get(codename="view_alert"))
    client.force_login(User.objects.get(pk=staff.pk))
    assert client.get(reverse("rpa_dashboard_data")).json()["alerts"]["open"] == 1


def test_it_serves_the_dashboard_page_in_the_admin(admin_client: Client) -> None:
    response = admin_client.get(reverse("rpa_dashboard"))

    assert response.status_code == 200
    page = response.content.decode()
    assert '<div class="breadcrumbs">' in page
    assert f'href="{reverse("admin:index")}"' in page
    assert 'id="rpa-dashboard-data" type="application/json"' in page  # the first paint's data
    assert f'data-url="{reverse("rpa_dashboard_data")}"' in page
    assert "last 24 hours" in page.lower()
    assert "median duration of its workflow" in page  # says how the ETA is made


def test_it_serves_the_data_as_uncached_json(admin_client: Client) -> None:
    workflow("login")
    with time_machine.travel(NOW, tick=False):
        response = admin_client.get(reverse("rpa_dashboard_data"))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "no-store" in response["Cache-Control"]
    assert response.json()["generated_at"] == NOW.isoformat()


def test_it_refuses_anything_but_get(admin_client: Client) -> None:
    assert admin_client.post(reverse("rpa_dashboard_data")).status_code == 405
    assert admin_client.post(reverse("rpa_dashboard")).status_code == 405


def test_user_text_cannot_break_out_of_the_embedded_json(admin_client: Client) -> None:
    rule = AlertRule.objects.create(name="</script><script>alert('rule')</script>", kind="chain_failed")
    alert(rule, "<img src=x onerror=alert(1)>", Alert.Status.TRIGGERED, 0)

    page = admin_client.get(reverse("rpa_dashboard")).content.decode()

    assert "<script>alert(" not in page
    assert "<img src=x" not in page
    assert "\\u003C/script\\u003E" in page  # json_script escaped it


def test_the_admin_index_leads_to_the_dashboard(admin_client: Client) -> None:
    page = admin_client.get(reverse("admin:index")).content.decode()

    assert f'href="{reverse("rpa_dashboard")}"' in page
    assert "chains" in page  # the usual app list is still there
