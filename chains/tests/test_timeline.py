"""The chain run page's timeline: every step attempt as a bar on the chain run's time axis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from chains.admin import TimelineBar, timeline_context
from chains.models import Chain, ChainRun, RunStatus, Workflow, WorkflowRun
from rpa_monitor.lib.admin import STATUS_COLOURS

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def chain() -> Chain:
    for slug in ("login", "data_entry", "submit"):
        Workflow.objects.create(slug=slug, name=slug, command=["true"])
    return Chain.objects.create_with_steps("demo", "Demo", ["login", "data_entry", "submit"])


def chain_run(chain: Chain, status: str, finished: float | None, **fields: Any) -> ChainRun:
    return ChainRun.objects.create(
        chain=chain,
        status=status,
        started_at=T0,
        finished_at=None if finished is None else at(finished),
        total_steps=3,
        **fields,
    )


def step(
    chain_run: ChainRun, position: int, status: str, start: float | None, end: float | None, attempt: int = 1
) -> WorkflowRun:
    return WorkflowRun.objects.create(
        workflow=chain_run.chain.ordered_steps()[position - 1].workflow,
        chain_run=chain_run,
        position=position,
        attempt=attempt,
        status=status,
        started_at=None if start is None else at(start),
        finished_at=None if end is None else at(end),
    )


def bars(chain_run: ChainRun, now: datetime) -> list[TimelineBar]:
    runs = list(chain_run.workflow_runs.select_related("workflow").order_by("position", "attempt"))
    return timeline_context(chain_run, runs, now)["bars"]


def test_it_places_each_attempt_by_its_start_and_duration_as_percent_of_the_chain_runs_span(
    chain: Chain,
) -> None:
    failed = chain_run(chain, RunStatus.FAILURE, finished=40, failed_step=2)
    step(failed, 1, RunStatus.SUCCESS, 0, 10)
    step(failed, 2, RunStatus.FAILURE, 10, 20, attempt=1)
    step(failed, 2, RunStatus.FAILURE, 20, 40, attempt=2)

    drawn = bars(failed, now=at(500))  # finished: `now` plays no part

    assert [(b.name, b.left, b.width) for b in drawn] == [
        ("1 · login · attempt 1", "0.000", "25.000"),
        ("2 · data_entry · attempt 1", "25.000", "25.000"),
        ("2 · data_entry · attempt 2", "50.000", "50.000"),
    ]
    assert [b.text for b in drawn] == ["10.00s · success", "10.00s · failure", "20.00s · failure"]
    assert drawn[2].title == "2 · data_entry · attempt 2: 20.00s · failure, started 09:00:20.000"
    assert [b.colour for b in drawn] == [STATUS_COLOURS["success"], *[STATUS_COLOURS["failure"]] * 2]
    assert not any(b.running for b in drawn)


def test_it_marks_the_axis_with_round_offsets_from_the_start(chain: Chain) -> None:
    done = chain_run(chain, RunStatus.SUCCESS, finished=40)
    step(done, 1, RunStatus.SUCCESS, 0, 40)

    ticks = timeline_context(done, list(done.workflow_runs.all()), at(40))["ticks"]

    assert [(t["left"], t["label"]) for t in ticks] == [
        ("0.000", "0"),
        ("25.000", "+10s"),
        ("50.000", "+20s"),
        ("75.000", "+30s"),
        ("100.000", "+40s"),
    ]


@pytest.mark.parametrize(
    ("span", "labels"),
    [
        (1.2, ["0", "+0.2s", "+0.4s", "+0.6s", "+0.8s", "+1s", "+1.2s"]),
        (95, ["0", "+30s", "+1m", "+1m30s"]),
        (4 * 3600, ["0", "+1h", "+2h", "+3h", "+4h"]),
    ],
)
def test_tick_labels_read_as_time_since_the_start(chain: Chain, span: float, labels: list[str]) -> None:
    done = chain_run(chain, RunStatus.SUCCESS, finished=span)

    ticks = timeline_context(done, [], at(span))["ticks"]

    assert [t["label"] for t in ticks] == labels


def test_running_bars_extend_to_now(chain: Chain) -> None:
    running = chain_run(chain, RunStatus.RUNNING, finished=None)
    step(running, 1, RunStatus.SUCCESS, 0, 5)
    step(running, 2, RunStatus.RUNNING, 5, None)

    context = timeline_context(running, list(running.workflow_runs.select_related("workflow")), at(20))
    first, second = sorted(context["bars"], key=lambda b: float(b.left or 0))

    assert (first.left, first.width, first.running) == ("0.000", "25.000", False)
    assert (second.left, second.width, second.running) == ("25.000", "75.000", True)
    assert (second.name, second.text) == ("2 · data_entry · attempt 1", "15.00s so far")
    assert context["caption"].endswith("(20.00s, still running)")


def test_steps_not_started_yet_are_listed_without_a_bar(chain: Chain) -> None:
    queued = ChainRun.objects.create(chain=chain, status=RunStatus.QUEUED, total_steps=3)
    step(queued, 1, RunStatus.QUEUED, None, None)

    [only] = bars(queued, now=at(3))

    assert only.left is None
    assert (only.name, only.text) == ("1 · login · attempt 1", "queued, not started")


def test_an_instant_step_stays_visible_and_inside_the_axis(chain: Chain) -> None:
    done = chain_run(chain, RunStatus.SUCCESS, finished=100)
    step(done, 1, RunStatus.SUCCESS, 0, 100)
    step(done, 2, RunStatus.SUCCESS, 100, 100)

    last = bars(done, now=at(100))[-1]

    assert float(last.width or 0) > 0
    assert float(last.left or 0) + float(last.width or 0) == pytest.approx(100.0)


def test_labels_sit_beside_their_bar_where_there_is_room_else_inside(chain: Chain) -> None:
    done = chain_run(chain, RunStatus.SUCCESS, finished=100)
    step(done, 1, RunStatus.SUCCESS, 0, 10)
    step(done, 2, RunStatus.SUCCESS, 90, 100)
    step(done, 3, RunStatus.SUCCESS, 0, 100)

    early, late, whole = bars(done, now=at(100))

    assert (early.text_class, early.text_position) == ("after", "left:10.000%")
    assert (late.text_class, late.text_position) == ("before", "right:10.000%")
    assert whole.text_class == "inside"


def test_the_chain_run_page_shows_the_timeline(admin_client: Client, chain: Chain) -> None:
    failed = chain_run(chain, RunStatus.FAILURE, finished=30, failed_step=2)
    step(failed, 1, RunStatus.SUCCESS, 0, 10)
    step(failed, 2, RunStatus.FAILURE, 10, 30)

    with time_machine.travel(at(60), tick=False):
        page = admin_client.get(reverse("admin:chains_chainrun_change", args=[failed.pk])).content.decode()

    assert "Timeline" in page
    assert 'class="rpa-timeline"' in page
    assert page.count('class="rpa-tl-bar') == 2
    assert "left:33.333%;width:66.667%" in page
    assert ">2 · data_entry · attempt 1<" in page
    assert ">20.00s · failure<" in page
    assert ">+10s<" in page


def test_the_timeline_escapes_what_it_shows(admin_client: Client, chain: Chain) -> None:
    # Slugs are validated by forms, not by the database: a row written around them must not inject HTML.
    Workflow.objects.filter(slug="login").update(slug='<img src=x onerror="alert(1)">')
    done = chain_run(chain, RunStatus.SUCCESS, finished=10)
    step(done, 1, RunStatus.SUCCESS, 0, 10)

    page = admin_client.get(reverse("admin:chains_chainrun_change", args=[done.pk])).content.decode()

    assert "<img src=x" not in page
    assert ">1 · &lt;img src=x onerror=&quot;alert(1)&quot;&gt; · attempt 1<" in page
