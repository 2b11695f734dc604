"""The triggers admin: list, config errors as form errors, next fire times, actions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from chains.models import Chain, ChainRun, Workflow
from triggers.models import Trigger, TriggerFire

pytestmark = pytest.mark.django_db

MAX_QUERIES = 12


@pytest.fixture
def workflow() -> Workflow:
    return Workflow.objects.create(slug="bot", name="bot", command=["true"])


@pytest.fixture
def chain(workflow: Workflow) -> Chain:
    return Chain.objects.create_with_steps("chain", "chain", ["bot"])


def schedule(name: str, chain: Chain, **config: object) -> Trigger:
    trigger = Trigger(name=name, trigger_type=Trigger.Type.SCHEDULE, chain=chain, config=config)
    trigger.full_clean()
    trigger.save()
    return trigger


def add(client: Client, **data: str) -> tuple[int, str]:
    fields = {"name": "t", "trigger_type": "schedule", "config": "{}", "params": "{}", "overlap": "skip"}
    response = client.post(reverse("admin:triggers_trigger_add"), {**fields, **data})
    return response.status_code, response.content.decode()


def test_it_lists_triggers_with_a_bounded_number_of_queries(
    admin_client: Client, chain: Chain, django_assert_max_num_queries: object
) -> None:
    for n in range(30):
        schedule(f"every {n + 1} min", chain, interval_seconds=60 * (n + 1))
    with django_assert_max_num_queries(MAX_QUERIES):  # type: ignore[operator]
        response = admin_client.get(reverse("admin:triggers_trigger_changelist"))
    assert response.status_code == 200
    assert "every 30 min" in response.content.decode()


@pytest.mark.parametrize(
    ("config", "field_words"),
    [
        ('{"interval_seconds": 0}', "interval_seconds"),
        ('{"cron": "* * *"}', "cron"),
        ('{"interval_seconds": 60, "cron": "* * * * *"}', "either interval_seconds or cron"),
        ('{"interval_seconds": 60, "start_time": "25:00", "end_time": "06:00"}', "start_time"),
        ('{"interval_seconds": 60, "weekdays": ["funday"]}', "weekdays"),
        ('{"interval_seconds": 60, "timezone": "Mars/Olympus"}', "timezone"),
        ('{"interval_seconds": 60, "colour": "red"}', "unknown keys: colour"),
        ("not json", "Enter a valid JSON"),
    ],
)
def test_it_shows_bad_schedule_configs_as_form_errors_and_stores_nothing(
    admin_client: Client, chain: Chain, config: str, field_words: str
) -> None:
    status, html = add(admin_client, chain=str(chain.pk), config=config)
    assert status == 200
    assert "errornote" in html
    assert field_words in html
    assert not Trigger.objects.exists()


def test_it_requires_exactly_one_target(admin_client: Client, chain: Chain, workflow: Workflow) -> None:
    status, html = add(admin_client, config='{"interval_seconds": 60}')
    assert (status, "exactly one target" in html) == (200, True)
    status, html = add(
        admin_client, config='{"interval_seconds": 60}', chain=str(chain.pk), workflow=str(workflow.pk)
    )
    assert (status, "exactly one target" in html) == (200, True)
    assert not Trigger.objects.exists()


def test_it_saves_a_valid_trigger_and_schedules_it(admin_client: Client, chain: Chain) -> None:
    status, _ = add(admin_client, chain=str(chain.pk), config='{"interval_seconds": 300}', enabled="on")
    assert status == 302
    trigger = Trigger.objects.get()
    assert trigger.next_fire_at is not None


@time_machine.travel(datetime(2026, 3, 27, 12, 0, tzinfo=UTC), tick=False)
def test_it_shows_the_next_five_fire_times_and_marks_a_dst_change(admin_client: Client, chain: Chain) -> None:
    trigger = schedule("nightly", chain, cron="30 2 * * *", timezone="Europe/Paris")
    html = admin_client.get(reverse("admin:triggers_trigger_change", args=[trigger.pk])).content.decode()
    assert "Sat 2026-03-28 02:30 CET" in html
    assert "Sun 2026-03-29 03:00 CEST" in html  # 02:30 does not exist that night: runs at the change
    assert html.count("DST change") == 1
    assert "Wed 2026-04-01 02:30 CEST" in html


def test_fire_now_enqueues_a_run_and_records_the_fire(admin_client: Client, chain: Chain) -> None:
    trigger = Trigger.objects.create(name="by hand", trigger_type=Trigger.Type.MANUAL, chain=chain)
    url = reverse("admin:triggers_trigger_changelist")
    response = admin_client.post(
        url, {"action": "fire_selected", "_selected_action": [trigger.pk]}, follow=True
    )
    assert response.status_code == 200
    fire = TriggerFire.objects.get(trigger=trigger)
    assert fire.outcome == TriggerFire.Outcome.STARTED
    assert fire.requested_by is not None
    assert ChainRun.objects.get(trigger=trigger).status == "queued"


def test_enable_and_disable_toggle_many_at_once(admin_client: Client, chain: Chain) -> None:
    triggers = [schedule(f"t{n}", chain, interval_seconds=60) for n in range(3)]
    url = reverse("admin:triggers_trigger_changelist")
    ids = [t.pk for t in triggers]
    admin_client.post(url, {"action": "disable", "_selected_action": ids})
    assert list(Trigger.objects.values_list("enabled", "next_fire_at")) == [(False, None)] * 3
    admin_client.post(url, {"action": "enable", "_selected_action": ids})
    assert all(t.enabled and t.next_fire_at for t in Trigger.objects.all())


def test_fire_list_is_read_only_and_shows_lateness(admin_client: Client, chain: Chain) -> None:
    trigger = schedule("t", chain, interval_seconds=60)
    TriggerFire.objects.create(
        trigger=trigger,
        due_at=datetime(2026, 1, 1, tzinfo=UTC),
        fired_at=datetime(2026, 1, 1, 0, 2, 5, tzinfo=UTC),
        outcome=TriggerFire.Outcome.SKIPPED,
        lateness_seconds=125,
        detail="previous run still running",
    )
    html = admin_client.get(reverse("admin:triggers_triggerfire_changelist")).content.decode()
    assert "2m05s" in html
    assert "previous run still running" in html
    assert admin_client.get(reverse("admin:triggers_triggerfire_add")).status_code == 403


def test_firing_and_toggling_are_recorded_in_the_triggers_history(admin_client: Client, chain: Chain) -> None:
    from django.contrib.admin.models import LogEntry as AdminLogEntry

    trigger = schedule("audited", chain, interval_seconds=60)
    url = reverse("admin:triggers_trigger_changelist")
    admin_client.post(url, {"action": "fire_selected", "_selected_action": [trigger.pk]})
    admin_client.post(url, {"action": "disable", "_selected_action": [trigger.pk]})
    messages = list(
        AdminLogEntry.objects.filter(object_id=str(trigger.pk))
        .order_by("id")
        .values_list("change_message", flat=True)
    )
    assert messages == ["Fired now: started", "Disabled"]
