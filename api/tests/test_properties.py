"""Correctness properties 1, 4 and 11 (DESIGN §13) through the API: what is created is listed,
exactly once; what a log filter returns matches it, and nothing matching is missing."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st

from api.tests.helpers import POOL, post_json, rolled_back
from chains.models import Chain, Workflow
from logs.models import LogEntry, LogRow
from rpa_monitor.errors import InvalidDateRangeError
from rpa_monitor.lib.dates import DateRange

pytestmark = pytest.mark.django_db

SLUGS = st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9_-]{0,30}", fullmatch=True)
TEXT_CHARS = st.characters(exclude_categories=["Cs", "Cc"])
NAMES = st.text(TEXT_CHARS, min_size=1, max_size=60).filter(lambda name: name.strip() == name and name)

chain_specs = st.lists(
    st.tuples(SLUGS, NAMES, st.lists(st.sampled_from(POOL), min_size=1, max_size=6), st.booleans()),
    max_size=6,
    unique_by=lambda spec: spec[0].lower(),
)


@given(specs=chain_specs)
def test_property_1_every_chain_created_by_post_is_listed_once_with_its_steps(
    api: Client, specs: list[tuple[str, str, list[str], bool]]
) -> None:
    with rolled_back():
        for slug in POOL:
            Workflow.objects.create(slug=slug, name=slug, command=["true"])
        for slug, name, steps, enabled in specs:
            body = {"slug": slug, "name": name, "workflows": steps, "enabled": enabled}
            response = post_json(api, "/api/chains", body)
            assert response.status_code == 201, response.json()
            assert response.json() == {**body, "description": ""}

        listed = api.get("/api/chains").json()
        assert Counter(chain["slug"] for chain in listed) == Counter(spec[0] for spec in specs)
        by_slug = {chain["slug"]: chain for chain in listed}
        for slug, name, steps, enabled in specs:
            assert by_slug[slug] == {
                "slug": slug,
                "name": name,
                "description": "",
                "enabled": enabled,
                "workflows": steps,
            }


TRIGGER_BODIES = st.one_of(
    st.fixed_dictionaries(
        {
            "trigger_type": st.just("schedule"),
            "config": st.one_of(
                st.builds(lambda n: {"interval_seconds": n}, st.integers(1, 10**6)),
                st.sampled_from([{"cron": "*/5 * * * *"}, {"cron": "30 2 * * 1-5"}, {"cron": "0 0 1 * *"}]),
            ),
        }
    ),
    st.fixed_dictionaries({"trigger_type": st.just("manual"), "config": st.just({})}),
)
trigger_specs = st.lists(
    st.tuples(
        NAMES,
        TRIGGER_BODIES,
        st.one_of(st.tuples(st.just("workflow"), st.sampled_from(POOL)), st.tuples(st.just("chain"), SLUGS)),
        st.booleans(),
        st.sampled_from(["skip", "allow"]),
    ),
    max_size=8,
)


@given(specs=trigger_specs)
def test_property_4_every_trigger_created_by_post_is_listed_once(
    api: Client, specs: list[tuple[str, dict[str, Any], tuple[str, str], bool, str]]
) -> None:
    with rolled_back():
        for slug in POOL:
            Workflow.objects.create(slug=slug, name=slug, command=["true"])
        created: dict[int, dict[str, Any]] = {}
        for name, typed, (target_kind, target), enabled, overlap in specs:
            if target_kind == "chain" and not Chain.objects.filter(slug=target).exists():
                Chain.objects.create_with_steps(target, target, ["login"])
            body = {"name": name, **typed, target_kind: target, "enabled": enabled, "overlap": overlap}
            response = post_json(api, "/api/triggers", body)
            assert response.status_code == 201, response.json()
            created[response.json()["id"]] = body

        listed = api.get("/api/triggers").json()
        assert Counter(t["id"] for t in listed) == Counter(created.keys())
        for trigger in listed:
            body = created[trigger["id"]]
            for key, value in body.items():
                assert trigger[key] == value, key
            other = "chain" if "workflow" in body else "workflow"
            assert trigger[other] is None
            scheduled = body["trigger_type"] == "schedule" and body["enabled"]
            assert (trigger["next_fire_at"] is not None) == scheduled


# -- property 11 ------------------------------------------------------------------

LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
COMPONENTS = ["runner", "scheduler", "bot"]
WORKFLOWS = ["", "login", "submit"]
WORDS = ["alpha", "Beta", "gamma delta", "ÉPSILON", "50%", "under_score"]
BASE = datetime(2026, 3, 1, tzinfo=UTC)

log_rows = st.lists(
    st.builds(
        lambda minutes, level, component, workflow_id, message: LogRow(
            BASE + timedelta(minutes=minutes), level, component, message, workflow_id
        ),
        st.integers(0, 3 * 24 * 60),
        st.sampled_from(LEVELS),
        st.sampled_from(COMPONENTS),
        st.sampled_from(WORKFLOWS),
        st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join),
    ),
    max_size=40,
)
moments = st.one_of(
    st.integers(0, 3 * 24 * 60).map(lambda m: (BASE + timedelta(minutes=m)).isoformat()),
    st.integers(0, 3).map(lambda d: (BASE + timedelta(days=d)).date().isoformat()),
)
log_filters = st.fixed_dictionaries(
    {},
    optional={
        "level": st.sampled_from(LEVELS).flatmap(lambda lv: st.sampled_from([lv, lv.lower()])),
        "component": st.sampled_from([*COMPONENTS, "nobody"]),
        "workflow_id": st.sampled_from([*WORKFLOWS[1:], "ghost"]),
        "q": st.sampled_from(["alpha", "beta", "GAMMA", "a d", "%", "_", "psilon"]),
        "start": moments,
        "end": moments,
        "limit": st.integers(1, 15),
    },
)


def expected_entries(filters: dict[str, Any]) -> list[LogEntry]:
    """The entries matching `filters`, computed in Python, newest first."""
    date_range = DateRange.parse(filters.get("start"), filters.get("end"))

    def matches(entry: LogEntry) -> bool:
        return (
            ("level" not in filters or entry.level == filters["level"].upper())
            and ("component" not in filters or entry.component == filters["component"])
            and ("workflow_id" not in filters or entry.workflow_id == filters["workflow_id"])
            and ("q" not in filters or filters["q"].lower() in entry.message.lower())
            and (date_range.start is None or entry.timestamp >= date_range.start)
            and (date_range.end is None or entry.timestamp < date_range.end)
        )

    return sorted(filter(matches, LogEntry.objects.all()), key=lambda e: (e.timestamp, e.pk), reverse=True)


@given(rows=log_rows, filters=log_filters)
def test_property_11_every_log_returned_matches_the_filters_and_none_is_missing(
    api: Client, rows: list[LogRow], filters: dict[str, Any]
) -> None:
    with rolled_back():
        LogEntry.objects.ingest(rows)
        try:
            expected = expected_entries(filters)
        except InvalidDateRangeError:
            assert api.get(f"/api/logs?{urlencode(filters)}").status_code == 400
            return
        limit = filters.get("limit", 100)
        returned: list[int] = []
        query = urlencode(filters)
        while True:
            response = api.get(f"/api/logs?{query}")
            assert response.status_code == 200, response.json()
            page = response.json()
            assert len(page["items"]) <= limit
            if not returned:  # the first page is exactly the newest `limit` matches
                assert [item["id"] for item in page["items"]] == [e.pk for e in expected[:limit]]
            returned += [item["id"] for item in page["items"]]
            if not page["next_cursor"]:
                break
            query = urlencode({**filters, "cursor": page["next_cursor"]})
        # Every entry returned matches; every match is returned, once, newest first.
        assert returned == [e.pk for e in expected]
