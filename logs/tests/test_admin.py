"""The log admin: bounded queries over many rows, every filter, read-only."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from chains.models import RunStatus, Workflow, WorkflowRun
from logs.models import LogCount, LogEntry, LogRow

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:logs_logentry_changelist"
LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
COMPONENTS = ["bot", "runner", "scheduler"]

# Session, user, capped count, rows, component and workflow choices, savepoints;
# an N+1 over a hundred rows on the page blows well past it.
MAX_QUERIES = 10


def entry(message: str, **fields: Any) -> LogEntry:
    fields.setdefault("component", "bot")
    return LogEntry.objects.create(message=message, **fields)


def workflow_with_run(slug: str) -> WorkflowRun:
    workflow = Workflow.objects.create(slug=slug, name=slug, command=["true"])
    return WorkflowRun.objects.create(workflow=workflow, status=RunStatus.SUCCESS)


def populate(n: int) -> LogEntry:
    """n workflows with a run each and 7n entries (210 for 30) across levels and components."""
    runs = [workflow_with_run(f"wf-{i:03d}") for i in range(n)]
    now = timezone.now()
    rows = [
        LogRow(
            timestamp=now - timedelta(minutes=i),
            level=LEVELS[i % 5],
            component=COMPONENTS[i % 3],
            message=f"line {i}\nsecond line",
            workflow_id=runs[i % n].workflow.slug,
            node_id=f"node-{i % 4}",
            run_id=runs[i % n].pk,
            metadata={"i": i, "nested": {"ok": True}},
        )
        for i in range(7 * n)
    ]
    LogEntry.objects.ingest(rows)
    return LogEntry.objects.order_by("id")[0]


def shown(client: Client, **params: str) -> list[str]:
    response = client.get(reverse(CHANGELIST), params)
    assert response.status_code == 200
    return [e.message for e in response.context["cl"].result_list]


@pytest.mark.parametrize("n", [5, 30])
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"level__exact": "ERROR"},
        {"component": "bot", "q": "line"},
        {"since": "2000-01-01"},
        {"_facets": ""},
    ],
)
def test_it_renders_the_changelist_in_bounded_queries(
    admin_client: Client, django_assert_max_num_queries: Any, n: int, params: dict[str, str]
) -> None:
    populate(n)
    with django_assert_max_num_queries(MAX_QUERIES):
        response = admin_client.get(reverse(CHANGELIST), params)
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) >= min(n, 100) // 5


@pytest.mark.parametrize("n", [5, 30])
def test_it_renders_the_change_page_in_bounded_queries(
    admin_client: Client, django_assert_max_num_queries: Any, n: int
) -> None:
    log_entry = populate(n)
    with django_assert_max_num_queries(MAX_QUERIES):
        response = admin_client.get(reverse("admin:logs_logentry_change", args=[log_entry.pk]))
    assert response.status_code == 200
    assert "&quot;nested&quot;" in response.content.decode()


def test_it_links_entries_to_their_run(admin_client: Client) -> None:
    run = workflow_with_run("login")
    entry("hi", run=run)
    page = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert reverse("admin:chains_workflowrun_change", args=[run.pk]) in page


def test_it_filters_by_level(admin_client: Client) -> None:
    for level in LEVELS:
        entry(f"{level} entry", level=level)
    assert shown(admin_client, level__exact="ERROR") == ["ERROR entry"]


def test_it_filters_by_component(admin_client: Client) -> None:
    entry("from the bot", component="bot")
    entry("from the scheduler", component="scheduler")
    assert shown(admin_client, component="scheduler") == ["from the scheduler"]


def test_it_offers_components_from_the_counts_table_without_a_distinct_over_entries(
    admin_client: Client, django_assert_max_num_queries: Any
) -> None:
    entry("x", component="bot")
    LogCount.objects.add({("INFO", "retired"): 3})  # its entries were purged; the component stays
    with django_assert_max_num_queries(MAX_QUERIES) as queries:
        response = admin_client.get(reverse(CHANGELIST))
    spec = next(s for s in response.context["cl"].filter_specs if s.title == "component")
    assert spec.lookup_choices == [("bot", "bot"), ("retired", "retired")]
    log_table = LogEntry._meta.db_table
    assert not [q for q in queries.captured_queries if "DISTINCT" in q["sql"] and log_table in q["sql"]]


def test_it_filters_by_workflow(admin_client: Client) -> None:
    workflow_with_run("login")
    workflow_with_run("submit")
    entry("logging in", workflow_id="login")
    entry("submitting", workflow_id="submit")
    assert shown(admin_client, workflow_id="login") == ["logging in"]


def test_it_filters_by_run(admin_client: Client) -> None:
    run, other = workflow_with_run("login"), workflow_with_run("submit")
    entry("mine", run=run)
    entry("also mine", run=run)
    entry("not mine", run=other)
    entry("no run")
    assert sorted(shown(admin_client, run=str(run.pk))) == ["also mine", "mine"]


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "99999999999999999999999999"])
def test_it_shows_nothing_for_a_malformed_or_unknown_run(admin_client: Client, value: str) -> None:
    entry("some entry", run=workflow_with_run("login"))
    assert shown(admin_client, run=value) == []


def test_it_searches_messages_and_exact_node_ids(admin_client: Client) -> None:
    entry("the needle is here", node_id="form")
    entry("haystack", node_id="needle")
    entry("haystack too", node_id="needles")
    assert sorted(shown(admin_client, q="needle")) == ["haystack", "the needle is here"]


@pytest.fixture
def days(settings: Any) -> None:
    """Entries around the 10 March boundary, in a zone that is not UTC."""
    settings.TIME_ZONE = "Europe/Berlin"
    for stamp in ["2026-03-09 23:59", "2026-03-10 00:00", "2026-03-10 23:59:59", "2026-03-11 00:00"]:
        at = timezone.make_aware(datetime.fromisoformat(stamp))
        entry(stamp, timestamp=at)


@pytest.mark.usefixtures("days")
@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"since": "2026-03-10"}, ["2026-03-10 00:00", "2026-03-10 23:59:59", "2026-03-11 00:00"]),
        ({"until": "2026-03-10"}, ["2026-03-09 23:59", "2026-03-10 00:00", "2026-03-10 23:59:59"]),
        ({"since": "2026-03-10", "until": "2026-03-10"}, ["2026-03-10 00:00", "2026-03-10 23:59:59"]),
        ({"since": "2026-03-10T00:00", "until": "2026-03-10T23:59"}, ["2026-03-10 00:00"]),
        ({"since": "2026-03-10T00:00:00+01:00", "until": "2026-03-10T00:00:00Z"}, ["2026-03-10 00:00"]),
        ({"since": "2026-03-12"}, []),
    ],
)
def test_it_filters_by_date_range(admin_client: Client, params: dict[str, str], expected: list[str]) -> None:
    assert sorted(shown(admin_client, **params)) == expected


@pytest.mark.usefixtures("days")
@pytest.mark.parametrize(
    "params",
    [
        {"since": "yesterday"},
        {"until": "2026-02-30"},
        {"since": "2026-13-01T00:00"},
        {"since": "2026-03-10T25:00"},
        {"until": "99999-01-01"},
        {"until": "9999-12-31"},
        {"since": "0001-01-01"},
        {"since": "2026-03-10T00:00+99:00"},
        {"since": "", "until": ""},
    ],
)
def test_it_ignores_a_malformed_date(admin_client: Client, params: dict[str, str]) -> None:
    assert len(shown(admin_client, **params)) == 4


def test_it_keeps_other_filters_in_the_date_form(admin_client: Client) -> None:
    entry("x", level="ERROR")
    response = admin_client.get(
        reverse(CHANGELIST), {"level__exact": "ERROR", "q": "x", "since": "2026-01-01"}
    )
    page = response.content.decode()
    assert '<input type="hidden" name="level__exact" value="ERROR">' in page
    assert '<input type="hidden" name="q" value="x">' in page
    assert 'name="since" value="2026-01-01"' in page


def test_it_combines_filters(admin_client: Client) -> None:
    run = workflow_with_run("login")
    entry("match", level="ERROR", component="bot", workflow_id="login", run=run)
    entry("wrong level", level="INFO", component="bot", workflow_id="login", run=run)
    entry("wrong component", level="ERROR", component="runner", workflow_id="login", run=run)
    entry("wrong workflow", level="ERROR", component="bot", workflow_id="other")
    params = {"level__exact": "ERROR", "component": "bot", "workflow_id": "login", "run": str(run.pk)}
    assert shown(admin_client, **params, q="match", since="2000-01-01") == ["match"]


def test_it_keeps_the_log_admin_read_only(admin_client: Client) -> None:
    log_entry = entry("immutable")
    model_admin = admin.site._registry[LogEntry]
    assert model_admin.show_full_result_count is False
    assert admin_client.get(reverse("admin:logs_logentry_add")).status_code == 403
    delete = reverse("admin:logs_logentry_delete", args=[log_entry.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    change = reverse("admin:logs_logentry_change", args=[log_entry.pk])
    assert admin_client.post(change, {"message": "edited"}).status_code == 403
    assert 'name="_save"' not in admin_client.get(change).content.decode()
    assert LogEntry.objects.get().message == "immutable"


def test_it_offers_no_bulk_delete_action(admin_client: Client) -> None:
    entry("x")
    response = admin_client.get(reverse(CHANGELIST))
    assert "delete_selected" not in response.content.decode()
