"""Bad query parameters against every admin changelist (issue 6 part 7, DESIGN §10).

Random values for every filter parameter (and unknown ones, ordering, paging, search)
on the run, log, trigger and other changelists, the log ZIP download and the
autocomplete endpoint: a page, a redirect (Django's `?e=1` for an invalid lookup) or a
4xx; never a 500.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from alerts.models import Alert, AlertRule, Delivery, NotificationChannel
from api.models import ApiToken
from chains.models import Chain, ChainRun, RunStatus, Workflow, WorkflowRun
from logs.models import LogCount, LogEntry
from rpa_monitor.tests.badinput import HAND_PICKED, TEXT, Tally, rolled_back, superuser_client
from triggers.models import SeenFile, Trigger, TriggerFire

pytestmark = pytest.mark.django_db

tally = Tally("changelists")
_summary = tally.fixture()

CHANGELISTS = {
    "chains_chainrun": ["status", "status__exact", "chain__id__exact", "since", "until"],
    "chains_workflowrun": ["status", "status__exact", "workflow__id__exact", "since", "until"],
    "logs_logentry": ["level", "level__exact", "component", "workflow_id", "run", "since", "until"],
    "triggers_trigger": ["trigger_type__exact", "enabled__exact", "overlap__exact"],
    "triggers_triggerfire": ["outcome__exact", "trigger__id__exact", "since", "until"],
    "triggers_seenfile": ["trigger__id__exact"],
    "chains_workflow": ["kind__exact", "enabled__exact"],
    "chains_chain": ["enabled__exact"],
    "api_apitoken": ["revoked_at__isempty"],
    "chains_workflowday": ["workflow__id__exact", "final__exact", "day__year", "day__month", "day__day"],
    "alerts_alert": ["open", "status__exact", "severity__exact", "rule__id__exact", "since", "until"],
    "alerts_alertrule": ["kind__exact", "severity__exact", "enabled__exact"],
    "alerts_notificationchannel": ["kind__exact", "enabled__exact"],
    "alerts_delivery": ["outcome__exact", "event__exact", "channel__id__exact", "since", "until"],
}
# Every changelist takes these too; `_to_field` and unlisted lookups are Django's 400s.
COMMON = ["q", "o", "p", "e", "all", "_facets", "_popup", "_to_field", "_changelist_filters"]
UNLISTED = ["status__in", "chain__slug__regex", "id__gt", "workflow__command__contains", "password"]
VALUES = st.one_of(
    TEXT,
    st.integers().map(str),
    st.sampled_from(HAND_PICKED),
    st.sampled_from(
        [
            "1",
            "0",
            "-1",
            "9" * 19,
            "9" * 40,
            "success",
            "ERROR",
            "2026-11-24",
            "2026-11-24T08:00",
            "2026-02-30",
            "0001-01-01",
            "9999-12-31",
            "9999-12-31T23:59:59-14:00",
            "1.2.-3",
            "-1.-2",
            "id",
            "-",
            "True",
            "1,2",
            "%00",
        ]
    ),
)


def params_for(names: list[str]) -> st.SearchStrategy[dict[str, str]]:
    keys = st.one_of(st.sampled_from([*names, *COMMON]), st.sampled_from(UNLISTED), TEXT)
    return st.dictionaries(keys, VALUES, min_size=1, max_size=5)


@pytest.fixture
def client() -> Client:
    return superuser_client()


@pytest.fixture
def world() -> None:
    """A row of everything, so that every list and filter has something to render."""
    workflow = Workflow.objects.create(slug="bot", name="bot", command=["true"])
    chain = Chain.objects.create_with_steps("nightly", "Nightly", ["bot"])
    now = timezone.now()
    chain_run = ChainRun.objects.create(
        chain=chain, status=RunStatus.FAILURE, started_at=now, finished_at=now, failed_step=1, error="boom"
    )
    run = WorkflowRun.objects.create(
        workflow=workflow, chain_run=chain_run, position=1, status=RunStatus.FAILURE, started_at=now
    )
    for level in ("INFO", "ERROR"):
        LogEntry.objects.create(
            level=level, component="runner", message=f"{level} line", workflow_id="bot", run=run
        )
    LogCount.objects.add({("INFO", "runner"): 1, ("ERROR", "runner"): 1})
    trigger = Trigger.objects.create(name="manual", trigger_type="manual", chain=chain)
    fire = TriggerFire.objects.create(
        trigger=trigger, due_at=now - timedelta(minutes=1), outcome="started", chain_run=chain_run
    )
    SeenFile.objects.create(trigger=trigger, path="/tmp/in/a.csv", size=1, mtime_ns=1, fire=fire)
    ApiToken.objects.issue(User.objects.get(username="root"), "script")
    hook = NotificationChannel.objects.create(name="hook", kind="webhook", target="http://127.0.0.1:9/x")
    rule = AlertRule.objects.create(name="failed", kind="workflow_failed", workflow=workflow)
    rule.channels.set([hook])
    alert = Alert.objects.create(rule=rule, subject="bot", severity="warning", summary="bot failed")
    Delivery.objects.create(alert=alert, channel=hook, event="triggered", outcome="failed", error="HTTP 500")


def get(client: Client, path: str, query: dict[str, str] | str) -> Any:
    """GET with bad parameters; a page, a redirect or a 4xx, never a 500 (streams read to the end)."""
    full = f"{path}?{query if isinstance(query, str) else urlencode(query)}"
    response = tally.response(client.get(full), full)
    if response.streaming:  # the ZIP: a stream that fails half way is a 500 too
        assert response["Content-Type"] == "application/zip"
        b"".join(response.streaming_content)
    if response.status_code == 302:
        location = response["Location"]
        assert "e=1" in location or location.startswith(path), location
    return response


@given(
    data=st.data(),
    name=st.sampled_from(sorted(CHANGELISTS)),
)
def test_changelists_never_500(client: Client, world: None, data: st.DataObject, name: str) -> None:
    query = data.draw(params_for(CHANGELISTS[name]))
    with rolled_back():
        get(client, reverse(f"admin:{name}_changelist"), query)


@given(query=params_for([*CHANGELISTS["logs_logentry"], "start", "end"]))
def test_log_download_never_500s(client: Client, world: None, query: dict[str, str]) -> None:
    with rolled_back():
        get(client, reverse("admin:logs_logentry_download"), query)


@pytest.mark.parametrize("name", sorted(CHANGELISTS))
def test_changelists_take_every_hand_picked_value_in_every_parameter(
    client: Client, world: None, name: str
) -> None:
    path = reverse(f"admin:{name}_changelist")
    for value in HAND_PICKED:
        get(client, path, {param: value for param in [*CHANGELISTS[name], "q", "o", "p"]})
    for param in [*CHANGELISTS[name], *COMMON, *UNLISTED]:
        for value in ["\x00", "9" * 40, "-1", "", "x" * 5000, "2026-02-30"]:
            get(client, path, {param: value})


RAW_QUERIES = [
    "q=%ED%A0%80",  # the UTF-8-like bytes of a lone surrogate
    "q=%FF%FE&component=%C0%AF",
    "workflow_id=%00&component=%00&run=%00&q=%00",
    "status=%00&since=%00&until=%00",
    "q=%",
    "%=%",
    "&&&=",
    "since=2026-11-24&since=not-a-date&until=",
    "run=1&run=2&run=x",
    "o=1.1.1.1.1&o=-99",
    "p=-1",
    "p=999999999",
    "p=1e9",
    "p=" + "9" * 40,
    "q=" + "x" * 20_000,
]


@pytest.mark.parametrize("query", RAW_QUERIES)
@pytest.mark.parametrize(
    "name", ["chains_chainrun", "chains_workflowrun", "logs_logentry", "triggers_triggerfire"]
)
def test_changelists_take_raw_query_strings(client: Client, world: None, query: str, name: str) -> None:
    get(client, reverse(f"admin:{name}_changelist"), query)


@pytest.mark.parametrize("query", RAW_QUERIES)
def test_log_download_takes_raw_query_strings(client: Client, world: None, query: str) -> None:
    get(client, reverse("admin:logs_logentry_download"), query)


AUTOCOMPLETE = [
    {"app_label": "chains", "model_name": "chainstep", "field_name": "workflow"},
    {"app_label": "triggers", "model_name": "trigger", "field_name": "chain"},
    {"app_label": "triggers", "model_name": "trigger", "field_name": "workflow"},
]


@given(
    base=st.sampled_from(AUTOCOMPLETE),
    bad=st.dictionaries(
        st.sampled_from(["app_label", "model_name", "field_name", "term", "page"]), VALUES, max_size=3
    ),
)
def test_autocomplete_never_500s(
    client: Client, world: None, base: dict[str, str], bad: dict[str, str]
) -> None:
    with rolled_back():
        response = get(client, reverse("admin:autocomplete"), base | bad)
        assert response.status_code in (200, 403, 404)


@given(
    object_id=st.one_of(
        TEXT, st.integers().map(str), st.sampled_from(["0", "-1", "9" * 40, "1.0", "%00", "1 "])
    ),
    name=st.sampled_from(
        [
            "chains_workflow",
            "chains_chain",
            "chains_chainrun",
            "chains_workflowrun",
            "logs_logentry",
            "triggers_trigger",
            "triggers_triggerfire",
            "api_apitoken",
        ]
    ),
    view=st.sampled_from(["change", "history", "delete"]),
)
def test_object_pages_take_bad_ids(client: Client, world: None, object_id: str, name: str, view: str) -> None:
    """The id in the URL of a change, history or delete page: a 404 or Django's redirect."""
    from urllib.parse import quote

    with rolled_back():
        path = reverse(f"admin:{name}_changelist") + quote(object_id, safe="") + f"/{view}/"
        tally.response(client.get(path), path)


@given(
    action=st.one_of(
        st.sampled_from(
            ["cancel", "resume", "run_now", "execute", "fire_selected", "enable", "revoke", "delete_selected"]
        ),
        TEXT,
    ),
    selected=st.lists(
        st.one_of(st.integers().map(str), TEXT, st.sampled_from(["1", "9" * 40, "", "\x00"])), max_size=3
    ),
    name=st.sampled_from(
        [
            "chains_workflow",
            "chains_chain",
            "chains_chainrun",
            "chains_workflowrun",
            "triggers_trigger",
            "api_apitoken",
            "alerts_alert",
            "alerts_alertrule",
            "alerts_notificationchannel",
        ]
    ),
    index=st.sampled_from(["0", "1", "-1", "x", ""]),
)
def test_changelist_actions_take_bad_selections(
    client: Client, world: None, action: str, selected: list[str], name: str, index: str
) -> None:
    """The changelist's action form: unknown actions, garbage ids, a bad `index`."""
    path = reverse(f"admin:{name}_changelist")
    data = {"action": action, "_selected_action": selected, "index": index}
    with rolled_back():
        tally.response(client.post(path, data), data)


@pytest.mark.parametrize(
    "selected", [["abc"], [""], ["9" * 20], ["9" * 10_000], ["1", "x"], ["-1"], ["\x00"], ["1.0"], ["\uff11"]]
)
@pytest.mark.parametrize(
    ("name", "action"),
    [
        ("chains_workflow", "enable"),
        ("chains_chain", "disable"),
        ("chains_chainrun", "cancel"),
        ("chains_workflowrun", "cancel"),
        ("triggers_trigger", "fire_selected"),
        ("api_apitoken", "revoke"),
        ("alerts_alert", "acknowledge"),
        ("alerts_alert", "resolve"),
        ("alerts_alertrule", "disable"),
    ],
)
def test_actions_refuse_ids_that_are_not_keys(
    client: Client, world: None, selected: list[str], name: str, action: str
) -> None:
    """Django filtered by `_selected_action=abc` as posted: a ValueError, a 500 (fixed by BadInputGuard)."""
    path = reverse(f"admin:{name}_changelist")
    data = {"action": action, "_selected_action": selected, "index": "0"}
    response = tally.response(client.post(path, data, follow=True), data)
    assert response.status_code == 200
    assert "is not the id of a row" in response.content.decode()


@pytest.mark.parametrize("term", ["\x00", "a\x00", "%", "_", "'", "x" * 5000, "9" * 40, "\\"])
@pytest.mark.parametrize("base", AUTOCOMPLETE)
def test_autocomplete_takes_hand_picked_terms(
    client: Client, world: None, term: str, base: dict[str, str]
) -> None:
    """A NUL in the search term was a DataError on PostgreSQL (fixed by BadInputGuard.get_search_results)."""
    response = get(client, reverse("admin:autocomplete"), base | {"term": term})
    assert response.status_code == 200
    if "\x00" in term:
        assert response.json()["results"] == []


@pytest.mark.parametrize("object_id", ["0", "9" * 18, "9" * 19, "9" * 40, "9" * 5000])
def test_chain_execute_view_takes_unknown_ids(client: Client, world: None, object_id: str) -> None:
    response = tally.response(client.post(f"/admin/chains/chain/{object_id}/execute/"), object_id)
    assert response.status_code in (302, 404)  # beyond int()'s digit limit the URL is not the execute view
