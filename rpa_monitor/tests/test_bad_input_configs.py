"""Bad config JSON at the model layer (issue 6 part 7, DESIGN §5 and §10).

`Trigger.full_clean()` with hypothesis-generated configs for every trigger type (any
JSON value for every key, unknown keys, wrong types, near-miss crons, windows, days
and time zones), `Workflow.full_clean()` with any `command`/`environment` JSON and
`Chain.objects.create_with_steps` with any list: valid, or a ValidationError naming
the field; never another exception, and what passes can be saved and scheduled.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from chains.models import Chain, ChainStep, Workflow
from rpa_monitor.errors import WorkflowNotFoundError
from rpa_monitor.tests.badinput import JSON_VALUES, SURROGATE_TEXT, TEXT, Tally, rolled_back
from triggers.models import FILE_KEYS, Trigger
from triggers.schedule import SCHEDULE_KEYS, iter_dst_marks

pytestmark = pytest.mark.django_db

tally = Tally("configs")
_summary = tally.fixture()

TRIGGER_FIELDS = {f.name for f in Trigger._meta.get_fields()}
WORKFLOW_FIELDS = {f.name for f in Workflow._meta.get_fields()}
CHAIN_FIELDS = {f.name for f in Chain._meta.get_fields()} | {"workflows"}
CONFIG_KEYS = sorted(SCHEDULE_KEYS | FILE_KEYS)
# Reasons about the config as a whole (the others name their key).
WHOLE_CONFIG = ("JSON object", "never fires", "manual trigger", "unknown keys", "NUL characters")

CRON_TOKEN = st.one_of(
    st.sampled_from(
        [
            "*",
            "*/5",
            "*/0",
            "0",
            "59",
            "60",
            "-1",
            "1-5",
            "5-1",
            "1-5/2",
            "1,2,3",
            ",",
            "",
            "?",
            "L",
            "LW",
            "15W",
        ]
    ),
    st.sampled_from(
        ["5#2", "MON", "mon-fri", "JAN", "FEB-DEC", "SUN#5", "7", "31", "32", "0/0", "**", "1--2"]
    ),
    st.integers(-100, 100).map(str),
    st.text(alphabet="0123456789*/-,#LW?", min_size=1, max_size=6),
)
CRON = st.one_of(
    st.lists(CRON_TOKEN, min_size=5, max_size=5).map(" ".join),
    st.lists(CRON_TOKEN, min_size=0, max_size=7).map(" ".join),
    st.sampled_from(["0 0 30 2 *", "0 0 31 4 *", "0 0 29 2 1", "@daily", "* * * * * *", "0 0 L * *"]),
)
HHMM = st.one_of(
    st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59)),
    st.sampled_from(
        ["24:00", "23:60", "7:00", "07:0", "0700", "07:00:00", "", "noon", "-1:00", "\uff10\uff17:00"]
    ),
)
WEEKDAYS = st.one_of(
    st.lists(
        st.sampled_from(["mon", "Tue", "WEDNESDAY", " thu ", "fri", "sat", "sun", "funday", ""]), max_size=8
    ),
    st.lists(JSON_VALUES, max_size=3),
)
TIMEZONES = st.sampled_from(
    [
        *["UTC", "Europe/Paris", "America/St_Johns", "Asia/Kathmandu", "Mars/Olympus", "", "../etc/passwd"],
        *["/etc/localtime", "Europe", "posix/UTC", "zone.tab", "Europe/Paris/", "a" * 300, "\x00", "utc"],
        *["Etc/GMT+14", "Factory"],
    ]
)
PATHS = st.sampled_from(
    ["/tmp", "/", "/nonexistent", "/etc/hostname", "", "relative", "/tmp/\x00", "~", "a" * 5000]
)
PATTERNS = st.sampled_from(["*", "*.csv", "", "a/b", "[", "**", "*\x00", "?" * 300, ".."])


def any_of(specific: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A key's value: usually of a plausible shape, sometimes anything at all."""
    return st.one_of(specific, specific, JSON_VALUES, SURROGATE_TEXT)


VALUES: dict[str, st.SearchStrategy[Any]] = {
    "interval_seconds": any_of(
        st.one_of(st.integers(), st.integers(-5, 120), st.floats(), st.sampled_from([60, "60", True, 10**30]))
    ),
    "cron": any_of(CRON),
    "start_time": any_of(HHMM),
    "end_time": any_of(HHMM),
    "weekdays": any_of(WEEKDAYS),
    "timezone": any_of(TIMEZONES),
    "path": any_of(PATHS),
    "pattern": any_of(PATTERNS),
    "settle_seconds": any_of(
        st.one_of(st.integers(), st.floats(), st.sampled_from([0, 86400, 86401, -1, "5"]))
    ),
}
CONFIGS = st.one_of(
    st.fixed_dictionaries({}, optional=VALUES),
    st.fixed_dictionaries({}, optional=VALUES).flatmap(
        lambda config: st.dictionaries(TEXT, JSON_VALUES, max_size=2).map(lambda extra: {**extra, **config})
    ),
    JSON_VALUES,  # not even an object
)


@pytest.fixture
def chain() -> Chain:
    Workflow.objects.create(slug="bot", name="bot", command=["true"])
    return Chain.objects.create_with_steps("nightly", "Nightly", ["bot"])


def refusal(validate: Callable[[], Any]) -> ValidationError | None:
    """The ValidationError `validate()` raises, or None; any other exception fails the test
    (a WorkflowNotFoundError, the named error, counts as the ValidationError it stands for)."""
    try:
        validate()
    except ValidationError as exc:
        return exc
    except WorkflowNotFoundError as exc:
        return ValidationError({exc.field: exc.message})
    except Exception:
        tally.server_error()  # a traceback where a refusal was due
        raise
    return None


def assert_names_fields(exc: ValidationError, fields: set[str]) -> None:
    """Every error is keyed by a real field, or (a constraint's) names one in its text."""
    errors = exc.message_dict
    assert errors
    assert set(errors) <= fields | {"__all__"}, errors
    for message in errors.get("__all__", []):
        assert any(field in message for field in fields), message


def clean_trigger(trigger: Trigger) -> bool:
    """full_clean: True when valid; a ValidationError must name real fields (and config keys)."""
    tally.count()
    exc = refusal(trigger.full_clean)
    if exc is None:
        return True
    assert_names_fields(exc, TRIGGER_FIELDS)
    text = " ".join(exc.message_dict.get("config", []))
    if text:
        assert any(key in text for key in CONFIG_KEYS) or any(w in text for w in WHOLE_CONFIG), text
    return False


def assert_schedulable(trigger: Trigger) -> None:
    """What full_clean accepts saves, and the admin can show its next fire times."""
    with rolled_back():
        trigger.save()
        schedule = trigger.schedule()
        if trigger.trigger_type == Trigger.Type.SCHEDULE:
            assert schedule is not None
            assert trigger.next_fire_at is not None
            slots = schedule.upcoming(timezone.now(), 5)
            assert slots == sorted(slots)
            list(iter_dst_marks(slots, schedule.tz))
        json.dumps(trigger.config)


@given(config=CONFIGS, trigger_type=st.sampled_from(["schedule", "file", "manual"]))
def test_trigger_configs_are_valid_or_name_the_field(chain: Chain, config: Any, trigger_type: str) -> None:
    trigger = Trigger(name="t", trigger_type=trigger_type, chain=chain, config=config)
    if clean_trigger(trigger):
        assert_schedulable(trigger)


@given(
    config=st.fixed_dictionaries(
        {"interval_seconds": st.integers(1, 366 * 86400)},
        optional={k: VALUES[k] for k in ["start_time", "end_time", "weekdays", "timezone"]},
    )
    | st.fixed_dictionaries(
        {"cron": CRON}, optional={k: VALUES[k] for k in ["start_time", "end_time", "weekdays", "timezone"]}
    )
)
def test_schedule_configs_near_valid_are_valid_or_name_the_field(
    chain: Chain, config: dict[str, Any]
) -> None:
    """Mostly-right schedules reach the deep checks (cron parsing, windows, never-fires)."""
    trigger = Trigger(name="t", trigger_type="schedule", chain=chain, config=config)
    if clean_trigger(trigger):
        assert_schedulable(trigger)


@given(
    name=st.one_of(TEXT, SURROGATE_TEXT, st.sampled_from(["", "x" * 201, "\x00"])),
    trigger_type=st.one_of(st.sampled_from(["schedule", "file", "manual"]), TEXT),
    overlap=st.one_of(st.sampled_from(["skip", "allow"]), TEXT),
    params=JSON_VALUES,
    target=st.sampled_from(["chain", "workflow", "both", "neither"]),
)
def test_trigger_fields_are_valid_or_name_the_field(
    chain: Chain, name: str, trigger_type: str, overlap: str, params: Any, target: str
) -> None:
    workflow = Workflow.objects.get(slug="bot")
    trigger = Trigger(
        name=name,
        trigger_type=trigger_type,
        overlap=overlap,
        params=params,
        config={"interval_seconds": 60} if trigger_type == "schedule" else {},
        chain=chain if target in ("chain", "both") else None,
        workflow=workflow if target in ("workflow", "both") else None,
    )
    if clean_trigger(trigger):
        assert_schedulable(trigger)


# --- Workflow ----------------------------------------------------------------------------------

ARGV = st.lists(st.one_of(TEXT, st.sampled_from(["", " ", "python", "\x00", "true"])), max_size=4)
ENVIRONMENTS = st.one_of(
    st.dictionaries(
        st.one_of(TEXT, st.sampled_from(["PATH", "1A", "A-B", "", "A B", "_X"])), TEXT, max_size=3
    ),
    st.dictionaries(TEXT, JSON_VALUES, max_size=3),
    st.dictionaries(SURROGATE_TEXT, TEXT, max_size=1),
    st.dictionaries(st.just("A"), SURROGATE_TEXT, max_size=1),
)
CALLABLES = st.sampled_from(
    [
        "",
        "examples.python_jobs:daily_report",
        "examples.python_jobs:no_such_function",
        "examples.python_jobs",
        "no_such_module_xyz:run",
        "a..b:c",
        "1abc:x",
        "os:sep",  # not callable
        "os.path:join.__name__",
        "\x00",
        ":",
    ]
)


@given(
    kind=st.one_of(st.sampled_from(["command", "python"]), TEXT),
    command=st.one_of(ARGV, JSON_VALUES),
    environment=st.one_of(ENVIRONMENTS, JSON_VALUES),
    callable_=CALLABLES,
    working_dir=st.one_of(
        st.sampled_from(["", "examples", "/tmp", "no/such/dir", "/etc/hostname", "\x00"]), TEXT
    ),
    numbers=st.tuples(*[st.one_of(st.integers(), st.integers(-2, 5)) for _ in range(3)]),
)
def test_workflow_json_is_valid_or_names_the_field(
    kind: str,
    command: Any,
    environment: Any,
    callable_: str,
    working_dir: str,
    numbers: tuple[int, int, int],
) -> None:
    timeout, retries, delay = numbers
    workflow = Workflow(
        slug="bot",
        name="bot",
        kind=kind,
        command=command,
        environment=environment,
        callable=callable_,
        working_dir=working_dir,
        timeout_seconds=timeout,
        max_retries=retries,
        retry_delay_seconds=delay,
    )
    tally.count()
    exc = refusal(workflow.full_clean)
    if exc is not None:
        assert_names_fields(exc, WORKFLOW_FIELDS)
        return
    with rolled_back():  # valid: it saves, and shows in the admin's list
        workflow.save()
        assert workflow.command_line is not None


# --- Chain.objects.create_with_steps ---------------------------------------------------------------

SLUGS = st.one_of(st.sampled_from(["bot", "other", "ghost", "", "BOT", "bot ", "\x00"]), TEXT, SURROGATE_TEXT)


@given(
    slug=st.one_of(st.sampled_from(["new", "nightly", "", "has space", "x" * 101]), TEXT, SURROGATE_TEXT),
    name=st.one_of(st.sampled_from(["New", "", "x" * 201]), TEXT, SURROGATE_TEXT),
    workflows=st.lists(st.one_of(SLUGS, SLUGS, JSON_VALUES), max_size=4),
)
def test_create_with_steps_is_all_or_nothing(
    chain: Chain, slug: str, name: str, workflows: list[Any]
) -> None:
    Workflow.objects.get_or_create(slug="other", defaults={"name": "other", "command": ["true"]})
    before = (Chain.objects.count(), ChainStep.objects.count())
    tally.count()
    created: list[Chain] = []
    with rolled_back():
        exc = refusal(lambda: created.append(Chain.objects.create_with_steps(slug, name, workflows)))
        if exc is None:
            assert [s.workflow.slug for s in created[0].ordered_steps()] == workflows
            return
        assert_names_fields(exc, CHAIN_FIELDS)
        assert (Chain.objects.count(), ChainStep.objects.count()) == before, "a refused chain left rows"
