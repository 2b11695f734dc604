"""Bad input against every admin add/change form (issue 6 part 7, DESIGN §10).

A superuser POSTs hypothesis-generated and hand-picked garbage to the Workflow, Chain
(with its inline steps), Trigger and API token forms. The answer is a 302 (saved, and
what was saved passes full_clean) or the form again (200) with errors naming the field
and not one row added or changed; never a 500.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry as AdminLogEntry
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import models
from django.test import Client
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from api.models import ApiToken
from chains.models import Chain, ChainStep, Workflow
from rpa_monitor.tests.badinput import (
    GARBAGE,
    HAND_PICKED,
    SHARPEST,
    SURROGATE_TEXT,
    Tally,
    assert_names_a_field,
    form_errors,
    rolled_back,
    superuser_client,
    table_state,
)
from triggers.models import Trigger

pytestmark = pytest.mark.django_db

tally = Tally("admin forms")
_summary = tally.fixture()

WORKFLOW_FIELDS = [
    "slug",
    "name",
    "description",
    "enabled",
    "kind",
    "command",
    "callable",
    "working_dir",
    "environment",
    "timeout_seconds",
    "max_retries",
    "retry_delay_seconds",
]
CHAIN_FIELDS = ["slug", "name", "description", "enabled"]
STEP_FIELDS = ["steps", "position", "workflow", "chain", "id", "DELETE"]
MANAGEMENT = ["TOTAL_FORMS", "INITIAL_FORMS", "MIN_NUM_FORMS", "MAX_NUM_FORMS"]
TRIGGER_FIELDS = ["name", "trigger_type", "workflow", "chain", "config", "params", "enabled", "overlap"]
TOKEN_FIELDS = ["user", "name"]
# Rows a refused form must leave exactly as they were (the admin's own history included).
TABLES: list[type[models.Model]] = [Workflow, Chain, ChainStep, Trigger, ApiToken, User, AdminLogEntry]
SUBMIT = st.sampled_from([{}, {"_save": "Save"}, {"_continue": "1"}, {"_addanother": "1"}])
FK_GARBAGE = st.one_of(
    GARBAGE,
    st.integers().map(str),
    st.sampled_from(["0", "-1", "999999", "9" * 19, "9" * 30, "1.0", "1e3", "1,2"]),
)


@pytest.fixture
def client() -> Client:
    return superuser_client()


@pytest.fixture
def world() -> dict[str, Any]:
    first = Workflow.objects.create(slug="first", name="first", command=["true"])
    second = Workflow.objects.create(slug="second", name="second", command=["true"])
    chain = Chain.objects.create_with_steps("nightly", "Nightly", ["first", "second"])
    trigger = Trigger(
        name="every minute", trigger_type="schedule", chain=chain, config={"interval_seconds": 60}
    )
    trigger.full_clean()
    trigger.save()
    token, _ = ApiToken.objects.issue(User.objects.get(username="root"), "script")
    return {"first": first, "second": second, "chain": chain, "trigger": trigger, "token": token}


def url(model: type[models.Model], obj: models.Model | None = None) -> str:
    label = f"admin:{model._meta.app_label}_{model._meta.model_name}"
    return reverse(f"{label}_change", args=[obj.pk]) if obj is not None else reverse(f"{label}_add")


def workflow_data(**overrides: Any) -> dict[str, Any]:
    base = {
        "slug": "new-bot",
        "name": "New bot",
        "description": "",
        "enabled": "on",
        "kind": "command",
        "command": "python examples/login.py",
        "callable": "",
        "working_dir": "",
        "environment": "{}",
        "timeout_seconds": "60",
        "max_retries": "0",
        "retry_delay_seconds": "0",
    }
    return base | overrides


def chain_data(world: dict[str, Any], change: bool, **overrides: Any) -> dict[str, Any]:
    """The chain form with its two steps (the saved ones, on the change form)."""
    chain = world["chain"]
    data: dict[str, Any] = {
        "slug": "nightly" if change else "new-chain",
        "name": "Chain",
        "description": "",
        "enabled": "on",
        "steps-TOTAL_FORMS": "2",
        "steps-INITIAL_FORMS": "2" if change else "0",
        "steps-MIN_NUM_FORMS": "1",
        "steps-MAX_NUM_FORMS": "1000",
    }
    steps = chain.ordered_steps() if change else [None, None]
    for i, step in enumerate(steps):
        data[f"steps-{i}-position"] = str(i + 1)
        data[f"steps-{i}-workflow"] = str((world["first"], world["second"])[i].pk)
        if step is not None:
            data[f"steps-{i}-id"] = str(step.pk)
            data[f"steps-{i}-chain"] = str(chain.pk)
    return data | overrides


def trigger_data(world: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    base = {
        "name": "every five minutes",
        "trigger_type": "schedule",
        "workflow": "",
        "chain": str(world["chain"].pk),
        "config": '{"interval_seconds": 300}',
        "params": "{}",
        "enabled": "on",
        "overlap": "skip",
    }
    return base | overrides


def token_data(**overrides: Any) -> dict[str, Any]:
    return {"user": str(User.objects.get(username="root").pk), "name": "nightly export"} | overrides


def post(client: Client, target: str, data: dict[str, Any], fields: list[str]) -> None:
    """POST bad data; assert it was saved validly or refused naming a field, with nothing written."""
    data = {k: v for k, v in data.items() if v is not None}  # None: leave the field out
    before = table_state(*TABLES)
    response = tally.response(client.post(target, data), data)
    if response.status_code == 302:
        assert "?e=" not in response["Location"]
        assert_everything_valid()
    elif response.status_code == 200 and response.context is not None and "key" in response.context:
        assert_everything_valid()  # the API token page showing a new key once
    elif response.status_code == 200:
        assert_names_a_field(form_errors(response), fields)
        assert table_state(*TABLES) == before, "a refused form changed rows"
    else:  # e.g. 400 for too many fields or too big a body
        assert response.status_code < 500
        assert table_state(*TABLES) == before, "a refused form changed rows"


def assert_everything_valid() -> None:
    """What the admin accepted is what the models accept (no invalid or half-written row)."""
    for model in (Workflow, Chain, ChainStep, Trigger, ApiToken):
        for obj in model._default_manager.all():
            obj.full_clean()
    for chain in Chain.objects.all():
        assert chain.steps.exists(), f"chain {chain.slug} saved without steps"


def hand_picked(fields: list[str]) -> list[tuple[dict[str, str], bool]]:
    """(data overrides, on the change form?): every hand-picked value in all fields at once on
    the add form, and the sharpest ones in each field alone on the change form."""
    everywhere = [({f: value for f in fields}, False) for value in HAND_PICKED]
    alone = [({f: value}, True) for f in fields for value in SHARPEST]
    return everywhere + alone


def overrides(
    fields: list[str], values: st.SearchStrategy[Any] = GARBAGE
) -> st.SearchStrategy[dict[str, Any]]:
    """Garbage for 1-3 fields, some left out entirely (None)."""
    return st.dictionaries(st.sampled_from(fields), st.one_of(values, st.none()), min_size=1, max_size=3)


# --- Workflow -------------------------------------------------------------------------------


@given(bad=overrides(WORKFLOW_FIELDS), change=st.booleans(), submit=SUBMIT)
def test_workflow_form_never_500s(
    client: Client, world: dict[str, Any], bad: dict[str, Any], change: bool, submit: dict[str, str]
) -> None:
    target = url(Workflow, world["first"] if change else None)
    with rolled_back():
        post(client, target, workflow_data(**bad) | submit, WORKFLOW_FIELDS)


def test_workflow_form_refuses_hand_picked_garbage(client: Client, world: dict[str, Any]) -> None:
    for bad, change in hand_picked(WORKFLOW_FIELDS):
        with rolled_back():
            target = url(Workflow, world["first"] if change else None)
            post(client, target, workflow_data(**bad), WORKFLOW_FIELDS)


@pytest.mark.parametrize(
    ("overrides_", "field"),
    [
        ({"slug": "has space"}, "slug"),
        ({"slug": "ünïcode"}, "slug"),
        ({"slug": "x" * 101}, "slug"),
        ({"slug": "first"}, "slug"),  # taken
        ({"kind": "shell"}, "kind"),
        ({"kind": "python", "callable": "os.path"}, "callable"),
        ({"kind": "python", "callable": "a..b:c"}, "callable"),
        ({"kind": "python", "callable": "no_such_module_xyz:run"}, "callable"),
        ({"command": "a\x00b"}, "command"),
        ({"command": "'"}, "command"),
        ({"environment": "[1, 2]"}, "environment"),
        ({"environment": '"A=1"'}, "environment"),
        ({"environment": '{"1A": "x"}'}, "environment"),
        ({"environment": '{"A": 1}'}, "environment"),
        ({"environment": '{"A": "\\u0000"}'}, "environment"),
        ({"environment": '{"A": "\\ud800"}'}, "environment"),
        ({"environment": '{"\\udfff": "x"}'}, "environment"),
        ({"environment": "{'A': 'single quotes'}"}, "environment"),
        ({"environment": "NaN"}, "environment"),
        ({"environment": "9" * 5000}, "environment"),  # past Python's int-digits limit: a ValueError
        ({"environment": "[" * 5000 + "]" * 5000}, "environment"),  # a RecursionError
        ({"environment": '{"A": ' + "9" * 5000 + "}"}, "environment"),
        ({"timeout_seconds": "0"}, "timeout_seconds"),
        ({"timeout_seconds": "-1"}, "timeout_seconds"),
        ({"timeout_seconds": "9" * 30}, "timeout_seconds"),
        ({"timeout_seconds": "1e3"}, "timeout_seconds"),
        ({"max_retries": "21"}, "max_retries"),
        ({"max_retries": "40000"}, "max_retries"),
        ({"retry_delay_seconds": "3601"}, "retry_delay_seconds"),
        ({"working_dir": "no/such/dir"}, "working_dir"),
        ({"working_dir": "x" * 501}, "working_dir"),
        ({"working_dir": "a\x00b"}, "working_dir"),
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
    ],
)
def test_workflow_form_names_the_field(
    client: Client, world: dict[str, Any], overrides_: dict[str, str], field: str
) -> None:
    before = table_state(*TABLES)
    response = tally.response(client.post(url(Workflow), workflow_data(**overrides_)), overrides_)
    assert field in form_errors(response)
    assert table_state(*TABLES) == before


# --- Chain with its inline steps ------------------------------------------------------------

STEP_VALUES = st.one_of(st.integers(-3, 4).map(str), FK_GARBAGE)


# The management form's counts stay small here: any count above 2000 (absolute_max) makes
# Django build and re-render 2000 inline rows, seconds per request (tried once, when slow
# tests are on, in test_chain_form_refuses_a_huge_form_count).
COUNTS = st.one_of(
    st.integers(-3, 6).map(str), st.sampled_from(["", "abc", "1.5", "-0", "\x00", "\uff13", "1e1"])
)


@st.composite
def chain_overrides(draw: st.DrawFn) -> dict[str, Any]:
    bad: dict[str, Any] = draw(overrides(CHAIN_FIELDS))
    if draw(st.booleans()):
        rows = draw(st.integers(0, 4))
        bad["steps-TOTAL_FORMS"] = str(rows)
        for i in range(rows):
            bad[f"steps-{i}-position"] = draw(STEP_VALUES)
            bad[f"steps-{i}-workflow"] = draw(STEP_VALUES)
            if draw(st.booleans()):
                bad[f"steps-{i}-DELETE"] = "on"
    if draw(st.booleans()):
        key = draw(st.sampled_from([f"{i}-{f}" for i in range(3) for f in STEP_FIELDS]))
        bad[f"steps-{key}"] = draw(st.one_of(FK_GARBAGE, st.none()))
    if draw(st.booleans()):
        bad[f"steps-{draw(st.sampled_from(MANAGEMENT))}"] = draw(st.one_of(COUNTS, st.none()))
    return bad


@given(data=st.data(), change=st.booleans(), submit=SUBMIT)
def test_chain_form_with_steps_never_500s(
    client: Client, world: dict[str, Any], data: st.DataObject, change: bool, submit: dict[str, str]
) -> None:
    bad = data.draw(chain_overrides())
    target = url(Chain, world["chain"] if change else None)
    with rolled_back():
        post(client, target, chain_data(world, change, **bad) | submit, [*CHAIN_FIELDS, *STEP_FIELDS])


CHAIN_FORM_KEYS = [
    *CHAIN_FIELDS,
    *(f"steps-0-{f}" for f in ("position", "workflow", "id", "chain", "DELETE")),
    "steps-1-position",
]
# Management-form garbage; counts above 2000 are COUNTS' business (see there).
MANAGEMENT_GARBAGE = [v for v in HAND_PICKED if not (v.strip().isdigit() and int(v) > 6)]


def test_chain_form_refuses_hand_picked_garbage(client: Client, world: dict[str, Any]) -> None:
    cases = hand_picked(CHAIN_FORM_KEYS)
    cases += [({"steps-TOTAL_FORMS": value}, True) for value in MANAGEMENT_GARBAGE]
    cases += [({"steps-INITIAL_FORMS": value}, True) for value in ["", "-1", "3", "abc", "\x00", "1e1"]]
    for bad, change in cases:
        with rolled_back():
            target = url(Chain, world["chain"] if change else None)
            post(client, target, chain_data(world, change, **bad), [*CHAIN_FIELDS, *STEP_FIELDS])


def steps(*rows: tuple[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {"steps-TOTAL_FORMS": str(len(rows))}
    for i, (position, workflow) in enumerate(rows):
        data[f"steps-{i}-position"] = position
        data[f"steps-{i}-workflow"] = workflow
    return data


@pytest.mark.parametrize(
    "case",
    [
        "duplicate positions",
        "zero position",
        "negative position",
        "huge position",
        "unknown workflow",
        "huge workflow id",
        "text workflow id",
        "no steps",
        "every step deleted",
        "tampered management form",
    ],
)
def test_chain_form_refuses_bad_steps_naming_them(client: Client, world: dict[str, Any], case: str) -> None:
    a, b = str(world["first"].pk), str(world["second"].pk)
    bad = {
        "duplicate positions": steps(("1", a), ("1", b)),
        "zero position": steps(("0", a)),
        "negative position": steps(("-1", a)),
        "huge position": steps(("9" * 30, a)),
        "unknown workflow": steps(("1", "999999")),
        "huge workflow id": steps(("1", "9" * 40)),
        "text workflow id": steps(("1", "first")),
        "no steps": steps(),
        "every step deleted": steps(("1", a)) | {"steps-0-DELETE": "on"},
        "tampered management form": {"steps-TOTAL_FORMS": "abc", "steps-INITIAL_FORMS": None},
    }[case]
    data = {k: v for k, v in chain_data(world, False, **bad).items() if v is not None}
    before = table_state(*TABLES)
    response = tally.response(client.post(url(Chain), data), case)
    errors = form_errors(response)
    assert any(key.startswith("steps") for key in errors), errors
    assert table_state(*TABLES) == before


# The step inline builds at most RPA_MAX_CHAIN_STEPS forms (it was Django's 2000, ~10 s).
def test_chain_form_refuses_a_huge_form_count(client: Client, world: dict[str, Any]) -> None:
    before = table_state(*TABLES)
    data = chain_data(world, False, **{"steps-TOTAL_FORMS": "9" * 40})
    errors = form_errors(tally.response(client.post(url(Chain), data), "huge TOTAL_FORMS"))
    assert "steps" in errors
    assert table_state(*TABLES) == before


def test_chain_change_form_takes_saved_steps_trading_places(client: Client, world: dict[str, Any]) -> None:
    """Reordering saved steps (1 <-> 2) used to save row by row into the unique (chain,
    position) constraint: an IntegrityError, a 500 (fixed in ChainStepFormSet.save)."""
    data = chain_data(world, True, **{"steps-0-position": "2", "steps-1-position": "1"})
    response = tally.response(client.post(url(Chain, world["chain"]), data), "swap")
    assert response.status_code == 302
    assert world["chain"].sequence == "second → first"


@pytest.mark.parametrize(
    "positions",
    [("2", "1"), ("1", "1"), ("2", "2"), ("0", "1"), ("-5", "3"), ("3", "1"), ("9" * 12, "1")],
)
@pytest.mark.parametrize("delete", [None, 0, 1])
def test_chain_change_form_moves_deletes_or_refuses_saved_steps(
    client: Client, world: dict[str, Any], positions: tuple[str, str], delete: int | None
) -> None:
    bad = {"steps-0-position": positions[0], "steps-1-position": positions[1]}
    if delete is not None:
        bad[f"steps-{delete}-DELETE"] = "on"
    post(client, url(Chain, world["chain"]), chain_data(world, True, **bad), [*CHAIN_FIELDS, *STEP_FIELDS])


@pytest.mark.parametrize("initial", ["0", "1"])
def test_chain_change_form_refuses_positions_of_steps_it_does_not_carry(
    client: Client, world: dict[str, Any], initial: str
) -> None:
    """A stale or tampered INITIAL_FORMS posts saved rows as new ones: refused, not an IntegrityError."""
    before = table_state(*TABLES)
    data = chain_data(world, True, **{"steps-INITIAL_FORMS": initial})
    errors = form_errors(tally.response(client.post(url(Chain, world["chain"]), data), initial))
    assert "already taken" in " ".join(errors.get("steps", [])), errors
    assert table_state(*TABLES) == before


# --- Trigger --------------------------------------------------------------------------------

CONFIG_TEXT = st.one_of(
    GARBAGE,
    st.fixed_dictionaries(
        {},
        optional={
            k: st.one_of(st.integers(), st.text(max_size=12), st.lists(st.text(max_size=5), max_size=3))
            for k in [
                "interval_seconds",
                "cron",
                "start_time",
                "end_time",
                "weekdays",
                "timezone",
                "path",
                "pattern",
            ]
        },
    ).map(json.dumps),
)


@given(
    bad=st.dictionaries(
        st.sampled_from(TRIGGER_FIELDS),
        st.one_of(
            CONFIG_TEXT, FK_GARBAGE, st.sampled_from(["schedule", "file", "manual", "cron", ""]), st.none()
        ),
        min_size=1,
        max_size=4,
    ),
    change=st.booleans(),
    submit=SUBMIT,
)
def test_trigger_form_never_500s(
    client: Client, world: dict[str, Any], bad: dict[str, Any], change: bool, submit: dict[str, str]
) -> None:
    target = url(Trigger, world["trigger"] if change else None)
    with rolled_back():
        post(client, target, trigger_data(world, **bad) | submit, TRIGGER_FIELDS)


def test_trigger_form_refuses_hand_picked_garbage(client: Client, world: dict[str, Any]) -> None:
    for bad, change in hand_picked(TRIGGER_FIELDS):
        with rolled_back():
            target = url(Trigger, world["trigger"] if change else None)
            post(client, target, trigger_data(world, **bad), TRIGGER_FIELDS)


@pytest.mark.parametrize(
    ("overrides_", "field"),
    [
        ({"trigger_type": "hourly"}, "trigger_type"),
        ({"overlap": "queue"}, "overlap"),
        ({"chain": "999999"}, "chain"),
        ({"chain": "9" * 40}, "chain"),
        ({"chain": "9" * 10_000}, "chain"),  # past int()'s digit limit, in the autocomplete widget
        ({"chain": "nightly"}, "chain"),
        ({"chain": ""}, "workflow"),  # no target at all
        ({"workflow": "WORKFLOW"}, "workflow"),  # both targets
        ({"config": "{"}, "config"),
        ({"config": "[]"}, "config"),
        ({"config": '"every minute"'}, "config"),
        ({"config": '{"interval_seconds": "60"}'}, "config"),
        ({"config": '{"interval_seconds": 1e400}'}, "config"),
        ({"config": '{"interval_seconds": NaN}'}, "config"),
        ({"config": "9" * 5000}, "config"),
        ({"config": '{"interval_seconds": ' + "9" * 5000 + "}"}, "config"),
        ({"config": "[" * 5000}, "config"),
        ({"params": "[" * 5000 + "]" * 5000}, "params"),
        ({"config": '{"cron": "61 * * * *"}'}, "config"),
        ({"config": '{"cron": ["*"]}'}, "config"),
        ({"config": '{"interval_seconds": 60, "timezone": "Mars/Olympus"}'}, "config"),
        ({"config": '{"interval_seconds": 60, "timezone": "\\u0000"}'}, "config"),
        ({"config": '{"interval_seconds": 60, "timezone": "../../etc/passwd"}'}, "config"),
        ({"config": '{"interval_seconds": 60, "weekdays": "mon"}'}, "config"),
        ({"config": '{"interval_seconds": 60, "bogus": 1}'}, "config"),
        ({"config": '{"interval_seconds": 60, "\\ud800": 1}'}, "config"),
        ({"trigger_type": "file", "config": '{"path": 5}'}, "config"),
        ({"trigger_type": "file", "config": '{"path": "/nonexistent/dir"}'}, "config"),
        ({"trigger_type": "file", "config": '{"path": "/tmp", "settle_seconds": "5"}'}, "config"),
        ({"trigger_type": "manual", "config": '{"interval_seconds": 60}'}, "config"),
        ({"params": "[]"}, "params"),
        ({"params": '{"file": "\\ud800"}'}, "params"),
        ({"params": '{"file": "\\u0000"}'}, "params"),
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
    ],
)
def test_trigger_form_names_the_field(
    client: Client, world: dict[str, Any], overrides_: dict[str, str], field: str
) -> None:
    data = trigger_data(world, **overrides_)
    if data["workflow"] == "WORKFLOW":
        data["workflow"] = str(world["first"].pk)
    before = table_state(*TABLES)
    response = tally.response(client.post(url(Trigger), data), overrides_)
    assert field in form_errors(response)
    assert table_state(*TABLES) == before


# --- API token ------------------------------------------------------------------------------


@given(bad=overrides(TOKEN_FIELDS, st.one_of(GARBAGE, FK_GARBAGE)), change=st.booleans(), submit=SUBMIT)
def test_api_token_form_never_500s(
    client: Client, world: dict[str, Any], bad: dict[str, Any], change: bool, submit: dict[str, str]
) -> None:
    target = url(ApiToken, world["token"] if change else None)
    with rolled_back():
        post(client, target, token_data(**bad) | submit, TOKEN_FIELDS)


def test_api_token_form_refuses_hand_picked_garbage(client: Client, world: dict[str, Any]) -> None:
    for bad, change in hand_picked(TOKEN_FIELDS):
        with rolled_back():
            target = url(ApiToken, world["token"] if change else None)
            post(client, target, token_data(**bad), TOKEN_FIELDS)


@pytest.mark.parametrize(
    ("overrides_", "field"),
    [
        ({"user": "999999"}, "user"),
        ({"user": "9" * 40}, "user"),
        ({"user": "root"}, "user"),
        ({"user": ""}, "user"),
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "a\x00b"}, "name"),
    ],
)
def test_api_token_form_names_the_field(
    client: Client, world: dict[str, Any], overrides_: dict[str, str], field: str
) -> None:
    before = table_state(*TABLES)
    response = tally.response(client.post(url(ApiToken), token_data(**overrides_)), overrides_)
    assert field in form_errors(response)
    assert table_state(*TABLES) == before


# --- invalid UTF-8 and lone surrogates --------------------------------------------------------

RAW_BODIES = [
    b"slug=%ED%A0%80&name=%FF%FE",  # the UTF-8-like bytes of a lone surrogate, and invalid bytes
    b"slug=ok&name=%C0%AF&environment=%7B%22A%22%3A%22%ED%A0%80%22%7D",
    b"slug=a%00b&name=%00",
    b"\xff\xfe\xfd",
    b"%",
    b"slug",
    b"=&=&=",
]


@pytest.mark.parametrize("body", RAW_BODIES)
@pytest.mark.parametrize("model", [Workflow, Chain, Trigger, ApiToken])
def test_forms_take_invalid_utf8_bodies(
    client: Client, world: dict[str, Any], body: bytes, model: type[models.Model]
) -> None:
    """Bytes no test-client dict can carry: Django decodes them with U+FFFD, the forms refuse them."""
    before = table_state(*TABLES)
    response = tally.response(
        client.post(url(model), body, content_type="application/x-www-form-urlencoded"), body
    )
    assert response.status_code in (200, 400)
    if response.status_code == 200:
        assert form_errors(response)
    assert table_state(*TABLES) == before


@given(
    value=SURROGATE_TEXT, field=st.sampled_from(["slug", "name", "description", "callable", "working_dir"])
)
def test_workflow_model_refuses_lone_surrogates_naming_the_field(value: str, field: str) -> None:
    tally.count()
    workflow = Workflow(**{"slug": "bot", "name": "bot", "command": ["true"], field: value})
    with pytest.raises(ValidationError) as caught:
        workflow.full_clean()
    assert field in caught.value.message_dict


@given(
    value=SURROGATE_TEXT,
    where=st.sampled_from(["command", "environment key", "environment value"]),
)
def test_workflow_model_refuses_lone_surrogates_in_json(value: str, where: str) -> None:
    tally.count()
    workflow = Workflow(slug="bot", name="bot", command=["true"])
    if where == "command":
        workflow.command = ["true", value]
    elif where == "environment key":
        workflow.environment = {value: "x"}
    else:
        workflow.environment = {"A": value}
    field = where.split()[0]
    with pytest.raises(ValidationError) as caught:
        workflow.full_clean()
    assert field in caught.value.message_dict


@given(value=SURROGATE_TEXT, field=st.sampled_from(["slug", "name", "description"]))
def test_chain_model_refuses_lone_surrogates_naming_the_field(value: str, field: str) -> None:
    tally.count()
    with pytest.raises(ValidationError) as caught:
        Chain(**{"slug": "c", "name": "c", field: value}).full_clean()
    assert field in caught.value.message_dict


@given(value=SURROGATE_TEXT, field=st.sampled_from(["name", "config", "params"]))
def test_trigger_model_refuses_lone_surrogates_naming_the_field(value: str, field: str) -> None:
    tally.count()
    chain = Chain(slug="c", name="c", pk=1)
    values: dict[str, Any] = {"name": value} if field == "name" else {field: {"x": value}}
    trigger = Trigger(**{"name": "t", "trigger_type": "manual", "chain": chain, **values})
    with pytest.raises(ValidationError) as caught:
        trigger.full_clean()
    assert field in caught.value.message_dict


@pytest.mark.parametrize("value", ["\ud800", "a\x00b"])
def test_api_token_model_refuses_unstorable_names(value: str) -> None:
    tally.count()
    user = User.objects.create_user("someone")
    with pytest.raises(ValidationError) as caught:
        ApiToken(user=user, name=value, prefix="rpa_x", key_hash="0" * 64).full_clean()
    assert "name" in caught.value.message_dict
