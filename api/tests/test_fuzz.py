"""Hostile input (DESIGN §10, issue 6 part 7): random bodies, parameters, paths and headers for every
endpoint. Never a 500, never an HTML page, and every error names a field."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st

from api.tests.helpers import POOL, errors_of, rolled_back
from chains.models import Chain, Workflow
from triggers.models import Trigger

pytestmark = pytest.mark.django_db

TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), TEXT, st.sampled_from(["login", "nightly", ""])
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12,
)
# Bodies shaped like the real ones (the known keys, random values) reach deeper than random JSON.
CHAIN_KEYS = ["slug", "name", "workflows", "description", "enabled"]
TRIGGER_KEYS = ["name", "trigger_type", "workflow", "chain", "config", "params", "enabled", "overlap"]
CONFIG = st.dictionaries(
    st.sampled_from(
        ["interval_seconds", "cron", "start_time", "end_time", "weekdays", "timezone", "path", "pattern"]
    ),
    JSON,
    max_size=4,
)


def shaped(keys: list[str], **values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys), JSON, max_size=len(keys)).flatmap(
        lambda base: st.fixed_dictionaries({}, optional=values).map(lambda extra: {**base, **extra})
    )


BODIES = st.one_of(
    JSON,
    st.fixed_dictionaries({"params": st.dictionaries(TEXT, JSON, max_size=3)}),
    shaped(CHAIN_KEYS, workflows=st.lists(st.sampled_from([*POOL, "ghost", ""]), max_size=4)),
    shaped(
        TRIGGER_KEYS,
        trigger_type=st.sampled_from(["schedule", "file", "manual"]),
        chain=st.just("nightly"),
        config=CONFIG,
    ),
)
RAW_BODIES = st.one_of(
    st.binary(max_size=60),
    st.sampled_from([b"", b"NaN", b'{"params": Infinity}', b'{"name": "\\ud800"}', b"[]", b"null", b"{}"]),
)
LOG_PARAMS = ["level", "component", "workflow_id", "run_id", "q", "start", "end", "limit", "cursor"]
PARAM_VALUES = st.one_of(
    TEXT,
    st.integers().map(str),
    st.sampled_from(["INFO", "error", "2026-11-24", "2026-11-24T08:00", "2026-13-45", "-1", "1e9", "9" * 30]),
)
QUERIES = st.dictionaries(st.one_of(st.sampled_from(LOG_PARAMS), TEXT), PARAM_VALUES, max_size=5)
PATH_PARTS = st.one_of(TEXT, st.integers().map(str), st.sampled_from(["nightly", "1", "0", "-5", "%00"]))


@pytest.fixture
def world(workflows: list[Workflow]) -> None:
    chain = Chain.objects.create_with_steps("nightly", "Nightly", ["login", "submit"])
    Trigger.objects.create(name="t", trigger_type="manual", chain=chain)


def assert_well_formed(response: Any) -> None:
    assert response.status_code < 500, response.content[:500]
    if response.status_code >= 400:
        errors_of(response)
    elif response.streaming:
        assert response["Content-Type"] == "application/zip"
        b"".join(response.streaming_content)  # a stream that fails half way is a 500 too
    else:
        json.loads(response.content)


@given(body=BODIES, url=st.sampled_from(["/api/chains", "/api/triggers", "/api/chains/nightly/execute"]))
def test_fuzz_json_bodies(api: Client, world: None, body: Any, url: str) -> None:
    with rolled_back():
        assert_well_formed(api.post(url, json.dumps(body), content_type="application/json"))


@given(
    body=RAW_BODIES,
    url=st.sampled_from(
        ["/api/chains", "/api/triggers", "/api/chains/nightly/execute", "/api/triggers/1/toggle"]
    ),
    content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"]),
)
def test_fuzz_raw_bodies(api: Client, world: None, body: bytes, url: str, content_type: str) -> None:
    with rolled_back():
        assert_well_formed(api.post(url, body, content_type=content_type))


@given(
    query=QUERIES, url=st.sampled_from(["/api/logs", "/api/logs/download", "/api/chains", "/api/triggers"])
)
def test_fuzz_query_parameters(api: Client, world: None, query: dict[str, str], url: str) -> None:
    with rolled_back():
        assert_well_formed(api.get(f"{url}?{urlencode(query)}"))


@given(
    part=PATH_PARTS,
    template=st.sampled_from(
        ["/api/chains/{}/execute", "/api/triggers/{}/toggle", "/api/{}", "/api/chains/{}"]
    ),
    method=st.sampled_from(["get", "post", "put", "patch", "delete", "head", "options"]),
)
def test_fuzz_paths_and_methods(api: Client, world: None, part: str, template: str, method: str) -> None:
    with rolled_back():
        response = getattr(api, method)(template.format(quote(part, safe="")))
        if method != "head":
            assert_well_formed(response)
        assert response.status_code < 500


@given(
    header=st.one_of(TEXT, TEXT.map(lambda t: f"Bearer {t}"), TEXT.map(lambda t: f"Bearer rpa_{t}")),
    url=st.sampled_from(["/api/chains", "/api/logs", "/api/triggers/1/toggle"]),
)
def test_fuzz_authorization_headers(world: None, header: str, url: str) -> None:
    client = Client(headers={"Authorization": header})
    with rolled_back():
        response = client.get(url) if "toggle" not in url else client.post(url)
        assert response.status_code in (401, 405)
        errors_of(response)
