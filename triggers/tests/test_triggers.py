"""Trigger validation, the one-target constraint, next_fire_at, enable/disable (properties 4 and 5)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from hypothesis import given
from hypothesis import strategies as st
from pytest_django.fixtures import Settings

from chains.models import Chain, Workflow
from triggers.models import Trigger

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 5, 4, 10, 7, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _tmp_path_is_a_file_trigger_root(settings: Settings, tmp_path: Path) -> None:
    """File triggers read only under RPA_FILE_TRIGGER_ROOTS: these tests watch tmp_path."""
    settings.RPA_FILE_TRIGGER_ROOTS = [str(tmp_path)]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.fixture
def workflow() -> Workflow:
    return Workflow.objects.create(slug="bot", name="bot", command=["true"])


@pytest.fixture
def chain(workflow: Workflow) -> Chain:
    return Chain.objects.create_with_steps("nightly", "Nightly", ["bot"])


def schedule_trigger(workflow: Workflow, **config: Any) -> Trigger:
    return Trigger(
        name="t",
        trigger_type=Trigger.Type.SCHEDULE,
        workflow=workflow,
        config=config or {"interval_seconds": 600},
    )


def errors_of(trigger: Trigger) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as excinfo:
        trigger.full_clean()
    return excinfo.value.message_dict


# --- Validation -----------------------------------------------------------------------------


def test_it_accepts_valid_configs_of_every_type(workflow: Workflow, tmp_path: Path) -> None:
    for trigger_type, config in [
        (Trigger.Type.SCHEDULE, {"interval_seconds": 60}),
        (Trigger.Type.SCHEDULE, {"cron": "30 2 * * 1-5", "timezone": "Europe/Paris"}),
        (Trigger.Type.SCHEDULE, {"interval_seconds": 3600, "start_time": "22:00", "end_time": "06:00"}),
        (Trigger.Type.FILE, {"path": str(tmp_path)}),
        (Trigger.Type.FILE, {"path": str(tmp_path), "pattern": "*.csv", "settle_seconds": 5}),
        (Trigger.Type.MANUAL, {}),
    ]:
        trigger = Trigger(name="t", trigger_type=trigger_type, workflow=workflow, config=config)
        trigger.full_clean()  # a refusal raises ValidationError
        trigger.save()
        stored = Trigger.objects.get(pk=trigger.pk)
        assert (stored.trigger_type, stored.config, stored.workflow) == (trigger_type, config, workflow)
    assert Trigger.objects.count() == 6


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"interval_seconds": 0}, "interval_seconds"),
        ({"interval_seconds": -5}, "interval_seconds"),
        ({"interval_seconds": 2.5}, "interval_seconds"),
        ({"interval_seconds": False}, "interval_seconds"),
        ({"interval_seconds": "60"}, "interval_seconds"),
        ({"cron": "* * * *"}, "cron"),
        ({"cron": "* * * * * *"}, "cron"),
        ({"cron": "garbage in here x y"}, "cron"),
        ({"cron": "* * * * *", "interval_seconds": 60}, "cron"),
        ({}, "interval_seconds"),
        ({"interval_seconds": 60, "start_time": "09:00"}, "end_time"),
        ({"interval_seconds": 60, "start_time": "9am", "end_time": "17:00"}, "start_time"),
        ({"interval_seconds": 60, "start_time": "09:00", "end_time": "09:00"}, "end_time"),
        ({"interval_seconds": 60, "weekdays": ["someday"]}, "weekdays"),
        ({"interval_seconds": 60, "timezone": "Europe/Atlantis"}, "timezone"),
        ({"interval_seconds": 60, "repeat": True}, "repeat"),
        ({"cron": "0 12 * * *", "start_time": "13:00", "end_time": "14:00"}, "never fires"),
        ("every minute", "JSON object"),
    ],
)
def test_it_refuses_a_bad_schedule_config_naming_the_field(
    workflow: Workflow, config: Any, field: str
) -> None:
    trigger = Trigger(name="t", trigger_type=Trigger.Type.SCHEDULE, workflow=workflow, config=config)
    errors = errors_of(trigger)
    assert list(errors) == ["config"]
    assert field in errors["config"][0]


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({}, "path"),
        ({"path": ""}, "path"),
        ({"path": 7}, "path"),
        ({"path": "/nonexistent/inbox"}, "path"),
        ({"pattern": "*.csv"}, "path"),
        ({"path": "{tmp}", "pattern": "in/*.csv"}, "pattern"),
        ({"path": "{tmp}", "pattern": ""}, "pattern"),
        ({"path": "{tmp}", "pattern": 5}, "pattern"),
        ({"path": "{tmp}", "settle_seconds": -1}, "settle_seconds"),
        ({"path": "{tmp}", "settle_seconds": "5"}, "settle_seconds"),
        ({"path": "{tmp}", "recursive": True}, "recursive"),
        ({"path": "{tmp}", "interval_seconds": 60}, "interval_seconds"),
        (["{tmp}"], "JSON object"),
    ],
)
def test_it_refuses_a_bad_file_config_naming_the_field(
    workflow: Workflow, tmp_path: Path, config: Any, field: str
) -> None:
    if isinstance(config, dict):
        config = {k: str(tmp_path) if v == "{tmp}" else v for k, v in config.items()}
    errors = errors_of(Trigger(name="t", trigger_type=Trigger.Type.FILE, workflow=workflow, config=config))
    assert list(errors) == ["config"]
    assert field in errors["config"][0]


def test_it_refuses_a_file_path_that_is_not_a_directory(workflow: Workflow, tmp_path: Path) -> None:
    a_file = tmp_path / "report.csv"
    a_file.write_text("x")
    config = {"path": str(a_file)}
    errors = errors_of(Trigger(name="t", trigger_type=Trigger.Type.FILE, workflow=workflow, config=config))
    assert "path" in errors["config"][0]
    assert "not a directory" in errors["config"][0]


@pytest.mark.parametrize("config", [{"interval_seconds": 60}, {"cron": "* * * * *"}, {"x": 1}, [], "now"])
def test_it_refuses_any_config_on_a_manual_trigger(workflow: Workflow, config: Any) -> None:
    errors = errors_of(Trigger(name="t", trigger_type=Trigger.Type.MANUAL, workflow=workflow, config=config))
    assert list(errors) == ["config"]


def test_it_requires_exactly_one_target_in_clean(workflow: Workflow, chain: Chain) -> None:
    assert "workflow" in errors_of(Trigger(name="t", trigger_type=Trigger.Type.MANUAL))
    both = Trigger(name="t", trigger_type=Trigger.Type.MANUAL, workflow=workflow, chain=chain)
    assert "workflow" in errors_of(both)


def test_it_accepts_a_chain_as_the_only_target(chain: Chain) -> None:
    trigger = Trigger(name="t", trigger_type=Trigger.Type.MANUAL, chain=chain)
    trigger.full_clean()  # a refusal raises ValidationError
    trigger.save()
    stored = Trigger.objects.get(pk=trigger.pk)
    assert (stored.chain, stored.workflow) == (chain, None)


def test_it_lets_the_database_refuse_both_targets(workflow: Workflow, chain: Chain) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Trigger(name="t", trigger_type=Trigger.Type.MANUAL, workflow=workflow, chain=chain).save()
    assert not Trigger.objects.exists()


def test_it_lets_the_database_refuse_no_target() -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Trigger(name="t", trigger_type=Trigger.Type.MANUAL).save()
    assert not Trigger.objects.exists()


def test_it_lets_the_database_refuse_an_update_adding_a_second_target(
    workflow: Workflow, chain: Chain
) -> None:
    trigger = Trigger.objects.create(name="t", trigger_type=Trigger.Type.MANUAL, workflow=workflow)
    with pytest.raises(IntegrityError), transaction.atomic():
        Trigger.objects.filter(pk=trigger.pk).update(chain=chain)
    with pytest.raises(IntegrityError), transaction.atomic():
        Trigger.objects.filter(pk=trigger.pk).update(workflow=None)


# --- next_fire_at ---------------------------------------------------------------------------


def test_it_computes_next_fire_at_on_save(workflow: Workflow) -> None:
    with time_machine.travel(NOW, tick=False):
        trigger = schedule_trigger(workflow, interval_seconds=600)
        trigger.save()
    trigger.refresh_from_db()
    assert trigger.next_fire_at == utc(2026, 5, 4, 10, 10)


def test_it_computes_next_fire_at_of_a_cron_in_its_timezone(workflow: Workflow) -> None:
    with time_machine.travel(NOW, tick=False):
        trigger = schedule_trigger(workflow, cron="30 2 * * *", timezone="Europe/Paris")
        trigger.save()
    assert Trigger.objects.get().next_fire_at == utc(2026, 5, 5, 0, 30)


def test_it_leaves_next_fire_at_empty_when_disabled(workflow: Workflow) -> None:
    trigger = schedule_trigger(workflow)
    trigger.enabled = False
    trigger.save()
    assert Trigger.objects.get().next_fire_at is None


@pytest.mark.parametrize("trigger_type", [Trigger.Type.FILE, Trigger.Type.MANUAL])
def test_it_leaves_next_fire_at_empty_for_non_schedule_triggers(
    workflow: Workflow, tmp_path: Path, trigger_type: str
) -> None:
    config = {"path": str(tmp_path)} if trigger_type == Trigger.Type.FILE else {}
    Trigger.objects.create(name="t", trigger_type=trigger_type, workflow=workflow, config=config)
    assert Trigger.objects.get().next_fire_at is None


def test_it_reschedules_from_now_when_enabled_again(workflow: Workflow) -> None:
    with time_machine.travel(NOW, tick=False):
        trigger = schedule_trigger(workflow, interval_seconds=600)
        trigger.save()
        trigger.set_enabled(False)
    assert Trigger.objects.get().next_fire_at is None
    with time_machine.travel(utc(2026, 5, 4, 12, 34), tick=False):
        trigger.set_enabled(True)
    stored = Trigger.objects.get()
    assert stored.enabled
    assert stored.next_fire_at == utc(2026, 5, 4, 12, 40)  # slots missed while disabled never fire


def test_it_clears_the_problem_when_enabled(workflow: Workflow, tmp_path: Path) -> None:
    trigger = Trigger.objects.create(
        name="t", trigger_type=Trigger.Type.FILE, workflow=workflow, config={"path": str(tmp_path)}
    )
    Trigger.objects.filter(pk=trigger.pk).update(problem="cannot read directory")
    trigger.refresh_from_db()
    trigger.set_enabled(True)
    assert Trigger.objects.get().problem == ""


# --- Property 4: trigger listing completeness ----------------------------------------------

TRIGGER_SPECS = st.lists(
    st.tuples(st.sampled_from(list(Trigger.Type)), st.sampled_from(["workflow", "chain"]), st.booleans()),
    max_size=8,
)


@given(specs=TRIGGER_SPECS)
def test_it_lists_every_created_trigger_exactly_once(
    workflow: Workflow, chain: Chain, tmp_path: Path, specs: list[tuple[str, str, bool]]
) -> None:
    Trigger.objects.all().delete()
    configs = {
        Trigger.Type.SCHEDULE: {"interval_seconds": 60},
        Trigger.Type.FILE: {"path": str(tmp_path)},
        Trigger.Type.MANUAL: {},
    }
    created: dict[int, tuple[str, str, bool]] = {}
    for n, (trigger_type, target, enabled) in enumerate(specs):
        trigger = Trigger(
            name=f"trigger {n}",
            trigger_type=trigger_type,
            config=configs[Trigger.Type(trigger_type)],
            enabled=enabled,
            **{target: workflow if target == "workflow" else chain},
        )
        trigger.full_clean()
        trigger.save()
        created[trigger.pk] = (trigger_type, target, enabled)
    listed = list(Trigger.objects.select_related("workflow", "chain"))
    assert sorted(t.pk for t in listed) == sorted(created)  # each exactly once, nothing else
    for trigger in listed:
        trigger_type, target, enabled = created[trigger.pk]
        assert trigger.trigger_type == trigger_type
        assert trigger.enabled == enabled
        assert trigger.target == (workflow if target == "workflow" else chain)
        assert trigger.target_slug == ("bot" if target == "workflow" else "nightly")


# --- Property 5: enable/disable persists ----------------------------------------------------


@given(initially=st.booleans(), calls=st.lists(st.booleans(), min_size=1, max_size=10))
def test_it_persists_the_last_enable_or_disable(
    workflow: Workflow, initially: bool, calls: list[bool]
) -> None:
    with time_machine.travel(NOW, tick=False):
        trigger = schedule_trigger(workflow, interval_seconds=600)
        trigger.enabled = initially
        trigger.save()
        for enabled in calls:
            Trigger.objects.get(pk=trigger.pk).set_enabled(enabled)
            stored = Trigger.objects.get(pk=trigger.pk)
            assert stored.enabled is enabled
            assert (stored.next_fire_at is None) is (not enabled)
    stored = Trigger.objects.get(pk=trigger.pk)
    assert stored.enabled is calls[-1]
    assert stored.next_fire_at == (utc(2026, 5, 4, 10, 10) if calls[-1] else None)
