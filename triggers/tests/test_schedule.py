"""Schedule configs: next fire times (intervals, windows, weekdays, cron across DST) and validation."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from pytest_django.fixtures import Settings

from triggers.schedule import Schedule, ScheduleError

PARIS = ZoneInfo("Europe/Paris")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def paris(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, *, fold: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=PARIS, fold=fold)


def schedule(**config: Any) -> Schedule:
    return Schedule.from_config(config)


def slots_between(sched: Schedule, start: datetime, end: datetime) -> list[datetime]:
    """Every slot in [start, end)."""
    slots, moment = [], start - timedelta(microseconds=1)
    while (moment := sched.next_after(moment)) is not None and moment < end:  # type: ignore[assignment]
        slots.append(moment)
    return slots


def local_times(slots: list[datetime], tz: ZoneInfo = PARIS) -> list[str]:
    return [s.astimezone(tz).strftime("%a %H:%M") for s in slots]


# --- Intervals ----------------------------------------------------------------------------


def test_it_aligns_intervals_to_the_epoch() -> None:
    sched = schedule(interval_seconds=900, timezone="UTC")
    assert sched.next_after(utc(2026, 5, 4, 10, 7, 13)) == utc(2026, 5, 4, 10, 15)
    assert sched.upcoming(utc(2026, 5, 4, 10, 7), 3) == [
        utc(2026, 5, 4, 10, 15),
        utc(2026, 5, 4, 10, 30),
        utc(2026, 5, 4, 10, 45),
    ]


def test_it_returns_the_slot_strictly_after_a_slot() -> None:
    sched = schedule(interval_seconds=60, timezone="UTC")
    assert sched.next_after(utc(2026, 5, 4, 10, 0)) == utc(2026, 5, 4, 10, 1)


def test_it_returns_aware_utc_datetimes() -> None:
    slot = schedule(interval_seconds=60, timezone="Europe/Paris").next_after(paris(2026, 5, 4, 10, 0, 30))
    assert slot is not None
    assert slot.utcoffset() == timedelta(0)
    assert slot == paris(2026, 5, 4, 10, 1)


def test_it_aligns_interval_slots_to_the_window_start() -> None:
    sched = schedule(interval_seconds=7200, start_time="09:30", end_time="17:00", timezone="Europe/Paris")
    slots = slots_between(sched, paris(2026, 5, 4), paris(2026, 5, 5))
    assert local_times(slots) == ["Mon 09:30", "Mon 11:30", "Mon 13:30", "Mon 15:30"]


def test_it_treats_the_window_end_as_exclusive() -> None:
    sched = schedule(interval_seconds=3600, start_time="09:00", end_time="12:00", timezone="UTC")
    assert local_times(slots_between(sched, utc(2026, 5, 4), utc(2026, 5, 5)), ZoneInfo("UTC")) == [
        "Mon 09:00",
        "Mon 10:00",
        "Mon 11:00",
    ]
    assert sched.next_after(utc(2026, 5, 4, 11, 0)) == utc(2026, 5, 5, 9, 0)


def test_it_fires_in_a_window_crossing_midnight() -> None:
    sched = schedule(interval_seconds=3600, start_time="22:00", end_time="06:00", timezone="Europe/Paris")
    slots = slots_between(sched, paris(2026, 5, 4, 12), paris(2026, 5, 5, 12))
    expected = ["Mon 22:00", "Mon 23:00"] + [f"Tue 0{h}:00" for h in range(6)]
    assert local_times(slots) == expected


def test_it_continues_a_midnight_window_that_started_yesterday() -> None:
    sched = schedule(interval_seconds=3600, start_time="22:00", end_time="06:00", timezone="Europe/Paris")
    assert sched.next_after(paris(2026, 5, 5, 3, 10)) == paris(2026, 5, 5, 4)
    assert sched.next_after(paris(2026, 5, 5, 5, 0)) == paris(2026, 5, 5, 22)  # 06:00 is excluded


def test_it_fires_cron_only_inside_a_midnight_window() -> None:
    sched = schedule(cron="0 * * * *", start_time="22:00", end_time="06:00", timezone="UTC")
    slots = slots_between(sched, utc(2026, 5, 4, 12), utc(2026, 5, 5, 12))
    assert [s.hour for s in slots] == [22, 23, 0, 1, 2, 3, 4, 5]


# --- Weekdays -----------------------------------------------------------------------------


def test_it_fires_intervals_only_on_the_given_weekdays_in_local_time() -> None:
    sched = schedule(interval_seconds=6 * 3600, weekdays=["sat", "Sunday"], timezone="Europe/Paris")
    # Slots are 00/06/12/18 UTC; Friday 20:00 Paris (18:00 UTC) is skipped, Saturday 02:00 Paris is first.
    assert sched.next_after(paris(2026, 5, 8, 12)) == paris(2026, 5, 9, 2)
    days = {s.astimezone(PARIS).strftime("%a") for s in sched.upcoming(paris(2026, 5, 4), 20)}
    assert days == {"Sat", "Sun"}


def test_it_fires_cron_only_on_the_given_weekdays() -> None:
    sched = schedule(cron="30 8 * * *", weekdays=["mon", "wed"], timezone="UTC")
    assert local_times(sched.upcoming(utc(2026, 5, 4), 4), ZoneInfo("UTC")) == [
        "Mon 08:30",
        "Wed 08:30",
        "Mon 08:30",
        "Wed 08:30",
    ]


def test_it_takes_the_weekday_of_a_midnight_window_from_the_day_it_starts() -> None:
    sched = schedule(
        interval_seconds=3600, start_time="22:00", end_time="02:00", weekdays=["fri"], timezone="Europe/Paris"
    )
    # Friday 2026-05-08 22:00 to Saturday 02:00, then nothing until next Friday.
    assert local_times(sched.upcoming(paris(2026, 5, 4), 5)) == [
        "Fri 22:00",
        "Fri 23:00",
        "Sat 00:00",
        "Sat 01:00",
        "Fri 22:00",
    ]
    # Thursday's night (which ends on Friday morning) is not a Friday window.
    assert sched.next_after(paris(2026, 5, 8, 0, 30)) == paris(2026, 5, 8, 22)


def test_it_applies_the_start_day_rule_to_cron_in_a_midnight_window() -> None:
    sched = schedule(cron="0 * * * *", start_time="23:00", end_time="02:00", weekdays=["sun"], timezone="UTC")
    assert local_times(sched.upcoming(utc(2026, 5, 4, 12), 4), ZoneInfo("UTC")) == [
        "Sun 23:00",
        "Mon 00:00",
        "Mon 01:00",
        "Sun 23:00",
    ]


# --- Cron and DST (Europe/Paris, 2026) ----------------------------------------------------


def test_it_runs_a_cron_job_in_the_configured_timezone() -> None:
    sched = schedule(cron="30 2 * * *", timezone="Europe/Paris")
    assert sched.next_after(utc(2026, 1, 10, 12)) == utc(2026, 1, 11, 1, 30)  # CET, UTC+1
    assert sched.next_after(utc(2026, 7, 10, 12)) == utc(2026, 7, 11, 0, 30)  # CEST, UTC+2


def test_it_runs_a_0230_job_once_at_0300_on_spring_forward() -> None:
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that night.
    sched = schedule(cron="30 2 * * *", timezone="Europe/Paris")
    slots = slots_between(sched, paris(2026, 3, 28, 12), paris(2026, 3, 30, 12))
    assert slots == [utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]
    assert slots[0].astimezone(PARIS).strftime("%H:%M %Z") == "03:00 CEST"


def test_it_runs_a_0230_job_once_not_twice_on_fall_back() -> None:
    # 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice on the clock.
    sched = schedule(cron="30 2 * * *", timezone="Europe/Paris")
    slots = slots_between(sched, paris(2026, 10, 24, 12), paris(2026, 10, 26, 12))
    assert slots == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]


def test_it_does_not_fire_again_in_the_repeated_hour_after_the_first_0230() -> None:
    sched = schedule(cron="30 2 * * *", timezone="Europe/Paris")
    assert sched.next_after(paris(2026, 10, 25, 2, 30, fold=0)) == paris(2026, 10, 26, 2, 30)
    assert sched.next_after(utc(2026, 10, 25, 1, 10)) == paris(2026, 10, 26, 2, 30)  # 02:10 CET


def test_it_never_returns_a_slot_before_an_after_given_in_the_schedules_own_timezone() -> None:
    # Regression (triggers/schedule.py, Schedule._next_cron: `if candidate <= after`): Python compares two
    # datetimes sharing a tzinfo by wall time, ignoring fold. For `after` = 02:10 CET (fold=1,
    # 01:10 UTC) on the fall-back day, the 02:30 CEST candidate (00:30 UTC, already past) is not
    # skipped and next_after returns a moment BEFORE `after`. The scheduler passes UTC datetimes
    # and is not affected; any caller passing local time is. Fix: convert `after` to UTC first.
    sched = schedule(cron="30 2 * * *", timezone="Europe/Paris")
    after = paris(2026, 10, 25, 2, 10, fold=1)
    slot = sched.next_after(after)
    assert slot is not None
    assert slot > after
    assert slot == paris(2026, 10, 26, 2, 30)


@pytest.mark.parametrize(
    ("day", "fires"),
    [
        (datetime(2026, 3, 29), 23),  # spring forward: the 02:00 hour does not exist
        (datetime(2026, 10, 25), 25),  # fall back: the 02:00 hour happens twice
        (datetime(2026, 6, 1), 24),
    ],
)
def test_it_fires_an_hourly_cron_once_per_real_hour_on_dst_days(day: datetime, fires: int) -> None:
    sched = schedule(cron="0 * * * *", timezone="Europe/Paris")
    start, end = day.replace(tzinfo=PARIS), (day + timedelta(days=1)).replace(tzinfo=PARIS)
    slots = slots_between(sched, start, end)
    assert len(slots) == fires
    assert len(set(slots)) == fires
    gaps = {b - a for a, b in itertools.pairwise(slots)}
    assert gaps == {timedelta(hours=1)}  # in UTC every fire is exactly one hour after the previous


def test_it_keeps_intervals_in_real_time_across_dst() -> None:
    sched = schedule(interval_seconds=3600, timezone="Europe/Paris")
    slots = slots_between(sched, paris(2026, 3, 29), paris(2026, 3, 30))
    assert len(slots) == 23


# --- Timezone default ---------------------------------------------------------------------


def test_it_defaults_the_timezone_to_settings_time_zone(settings: Settings) -> None:
    settings.TIME_ZONE = "Europe/Paris"
    sched = schedule(cron="0 9 * * *")
    assert sched.tz == PARIS
    assert sched.next_after(utc(2026, 1, 10, 12)) == utc(2026, 1, 11, 8)


def test_it_uses_utc_when_settings_time_zone_is_utc(settings: Settings) -> None:
    settings.TIME_ZONE = "UTC"
    assert schedule(cron="0 9 * * *").next_after(utc(2026, 1, 10, 12)) == utc(2026, 1, 11, 9)


# --- Upcoming -----------------------------------------------------------------------------


def test_it_lists_upcoming_slots_in_order() -> None:
    slots = schedule(cron="*/20 * * * *", timezone="UTC").upcoming(utc(2026, 5, 4, 10, 5), 5)
    assert slots == [utc(2026, 5, 4, 10, m) for m in (20, 40)] + [utc(2026, 5, 4, 11, m) for m in (0, 20, 40)]


def test_it_lists_the_next_slots_from_now_under_frozen_time() -> None:
    with time_machine.travel(utc(2026, 5, 4, 10, 7), tick=False):
        sched = Schedule.from_config({"interval_seconds": 600, "timezone": "UTC"}, check_fires=True)
        assert sched.upcoming(datetime.now(UTC), 2) == [utc(2026, 5, 4, 10, 10), utc(2026, 5, 4, 10, 20)]


# --- Bad configs --------------------------------------------------------------------------


def errors_of(config: Any) -> dict[str, str]:
    with pytest.raises(ScheduleError) as excinfo:
        Schedule.from_config(config, check_fires=True)
    return excinfo.value.errors


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"interval_seconds": 0}, "interval_seconds"),
        ({"interval_seconds": -60}, "interval_seconds"),
        ({"interval_seconds": 1.5}, "interval_seconds"),
        ({"interval_seconds": 60.0}, "interval_seconds"),
        ({"interval_seconds": True}, "interval_seconds"),
        ({"interval_seconds": "60"}, "interval_seconds"),
        ({"interval_seconds": None}, "interval_seconds"),
        ({"cron": "* * * *"}, "cron"),
        ({"cron": "0 * * * * *"}, "cron"),
        ({"cron": "every minute"}, "cron"),
        ({"cron": "a b c d e"}, "cron"),
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "0 0 31 2 *"}, "cron"),
        ({"cron": ""}, "cron"),
        ({"cron": 5}, "cron"),
        ({"cron": "* * * * *", "interval_seconds": 60}, "cron"),
        ({}, "interval_seconds"),
        ({"timezone": "UTC"}, "interval_seconds"),
        ({"interval_seconds": 60, "start_time": "09:00"}, "end_time"),
        ({"interval_seconds": 60, "end_time": "17:00"}, "start_time"),
        ({"interval_seconds": 60, "start_time": "9:00", "end_time": "17:00"}, "start_time"),
        ({"interval_seconds": 60, "start_time": "24:00", "end_time": "17:00"}, "start_time"),
        ({"interval_seconds": 60, "start_time": "09:00", "end_time": "17:60"}, "end_time"),
        ({"interval_seconds": 60, "start_time": "09:00", "end_time": "5pm"}, "end_time"),
        ({"interval_seconds": 60, "start_time": 900, "end_time": "17:00"}, "start_time"),
        ({"interval_seconds": 60, "start_time": "09:00", "end_time": "09:00"}, "end_time"),
        ({"interval_seconds": 60, "weekdays": ["mon", "funday"]}, "weekdays"),
        ({"interval_seconds": 60, "weekdays": []}, "weekdays"),
        ({"interval_seconds": 60, "weekdays": "mon"}, "weekdays"),
        ({"interval_seconds": 60, "weekdays": [1]}, "weekdays"),
        ({"interval_seconds": 60, "timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"interval_seconds": 60, "timezone": ""}, "timezone"),
        ({"interval_seconds": 60, "timezone": 2}, "timezone"),
        ({"interval_seconds": 60, "every": "day"}, "config"),
        ({"interval_seconds": 60, "Cron": "* * * * *"}, "config"),
        ([], "config"),
        ("* * * * *", "config"),
        (None, "config"),
    ],
)
def test_it_refuses_a_bad_config_naming_the_field(config: Any, field: str) -> None:
    errors = errors_of(config)
    assert field in errors
    assert errors[field]


def test_it_names_every_bad_field_at_once() -> None:
    errors = errors_of({"interval_seconds": 0, "weekdays": ["x"], "timezone": "Nowhere/City", "foo": 1})
    assert set(errors) == {"interval_seconds", "weekdays", "timezone", "config"}
    assert "foo" in errors["config"]


def test_it_names_the_unknown_keys() -> None:
    assert "every" in errors_of({"interval_seconds": 60, "every": "day"})["config"]


@pytest.mark.parametrize(
    "config",
    [
        {"cron": "0 12 * * *", "start_time": "13:00", "end_time": "14:00", "timezone": "UTC"},
        {"cron": "0 12 * * 1", "weekdays": ["tue"], "timezone": "UTC"},
        # Weekly from the epoch (a Thursday, 00:00 UTC): never on a Monday.
        {"interval_seconds": 7 * 86400, "weekdays": ["mon"], "timezone": "UTC"},
    ],
)
def test_it_refuses_a_schedule_that_never_fires(config: dict[str, Any]) -> None:
    with time_machine.travel(utc(2026, 5, 4, 10), tick=False):
        assert "never fires" in errors_of(config)["config"]
        assert Schedule.from_config(config).next_after(datetime.now(UTC)) is None


def test_it_accepts_a_rare_but_real_cron() -> None:
    with time_machine.travel(utc(2026, 5, 4, 10), tick=False):
        sched = Schedule.from_config({"cron": "0 0 29 2 *", "timezone": "UTC"}, check_fires=True)
        assert sched.next_after(datetime.now(UTC)) == utc(2028, 2, 29)
