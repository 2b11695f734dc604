"""Schedule configs: validation and the next fire time, DST-correct.

A `schedule` trigger's config is exactly one of
  {"interval_seconds": 900}          every 900 s of real (UTC) time, aligned to the epoch,
                                     or to the window's start when a window is set;
  {"cron": "30 2 * * 1-5"}           5-field cron, Debian-cron semantics (via cronsim),
plus optionally
  "start_time"/"end_time": "HH:MM"   a daily window in local time (may cross midnight,
                                     e.g. 22:00-06:00; the end is exclusive);
  "weekdays": ["mon", ...]           the days on which the window starts (or the slot falls);
  "timezone": "Europe/Paris"         IANA name; default settings.TIME_ZONE.

All local-time reasoning happens in the trigger's timezone; results are aware
datetimes. A 02:30 cron job on a spring-forward day runs once soon after the
change (03:00), and once, not twice, on a fall-back day.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from django.conf import settings

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
SCHEDULE_KEYS = frozenset({"interval_seconds", "cron", "start_time", "end_time", "weekdays", "timezone"})
HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
# How far ahead to look for a slot before declaring that a schedule never fires.
HORIZON = timedelta(days=800)
MAX_CRON_CANDIDATES = 200_000


class ScheduleError(ValueError):
    """Invalid schedule config: `errors` maps each bad field to its reason."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class Schedule:
    interval_seconds: int | None
    cron: str | None
    start_time: time | None
    end_time: time | None
    weekdays: frozenset[int] | None
    tz: tzinfo

    @classmethod
    def from_config(cls, config: Any, check_fires: bool = False) -> Schedule:
        """Parse and validate a config; ScheduleError names every bad field.

        `check_fires` also refuses schedules whose window/weekdays exclude every slot
        (done when a person saves a config, not on every tick)."""
        if not isinstance(config, dict):
            raise ScheduleError({"config": "must be a JSON object"})
        errors: dict[str, str] = {}
        unknown = sorted(set(config) - SCHEDULE_KEYS)
        if unknown:
            errors["config"] = (
                f"unknown keys: {', '.join(unknown)} (allowed: {', '.join(sorted(SCHEDULE_KEYS))})"
            )
        interval = _interval(config, errors)
        cron = _cron(config, errors)
        if "interval_seconds" in config and "cron" in config:
            errors["cron"] = "give either interval_seconds or cron, not both"
        elif "interval_seconds" not in config and "cron" not in config:
            errors["interval_seconds"] = "a schedule needs interval_seconds or cron"
        start, end = _hhmm(config, "start_time", errors), _hhmm(config, "end_time", errors)
        if ("start_time" in config) != ("end_time" in config):
            missing = "end_time" if "start_time" in config else "start_time"
            errors.setdefault(missing, "start_time and end_time go together")
        elif start is not None and start == end:
            errors["end_time"] = "the window is empty (end_time equals start_time)"
        weekdays = _weekdays(config, errors)
        tz = _timezone(config, errors)
        if errors:
            raise ScheduleError(errors)
        schedule = cls(interval, cron, start, end, weekdays, tz)
        if check_fires and schedule.next_after(datetime.now(UTC)) is None:
            raise ScheduleError(
                {"config": "this schedule never fires (the window or weekdays exclude every slot)"}
            )
        return schedule

    @property
    def has_window(self) -> bool:
        return self.start_time is not None and self.end_time is not None

    def next_after(self, after: datetime) -> datetime | None:
        """The first slot strictly after `after` (aware), or None within the horizon."""
        # In UTC: aware datetimes sharing a tzinfo compare by wall time (fold ignored),
        # which is wrong in the repeated hour of a fall-back night.
        after = after.astimezone(UTC)
        if self.cron is not None:
            return self._next_cron(after)
        return self._next_interval(after)

    def upcoming(self, after: datetime, count: int) -> list[datetime]:
        slots: list[datetime] = []
        moment: datetime | None = after
        while len(slots) < count and moment is not None:
            moment = self.next_after(moment)
            if moment is not None:
                slots.append(moment)
        return slots

    # -- cron ---------------------------------------------------------------

    def _next_cron(self, after: datetime) -> datetime | None:
        assert self.cron is not None
        limit = after + HORIZON
        local_after = after.astimezone(self.tz)
        for n, candidate in enumerate(CronSim(self.cron, local_after)):
            # Iterating from a local wall time can yield a slot that already passed
            # in real time (the repeated hour of a fall-back day): skip it.
            if candidate <= after:
                continue
            if candidate > limit or n > MAX_CRON_CANDIDATES:
                return None
            if self._allowed(candidate):
                return candidate.astimezone(UTC)
        return None

    def _allowed(self, moment: datetime) -> bool:
        """Is a (cron) slot inside the window and on an allowed day?"""
        local = moment.astimezone(self.tz)
        if not self.has_window:
            return self.weekdays is None or local.weekday() in self.weekdays
        moment = moment.astimezone(UTC)  # compared with local bounds in real time, not wall time
        for day in (local.date() - timedelta(days=1), local.date()):
            window = self._window(day)
            if window is not None and window[0] <= moment < window[1]:
                return True
        return False

    # -- interval -----------------------------------------------------------

    def _next_interval(self, after: datetime) -> datetime | None:
        assert self.interval_seconds is not None
        step = timedelta(seconds=self.interval_seconds)
        if not self.has_window:
            return self._next_interval_unwindowed(after, step)
        local_day = after.astimezone(self.tz).date() - timedelta(days=1)
        for offset in range(HORIZON.days):
            window = self._window(local_day + timedelta(days=offset))
            if window is None:
                continue
            start, end = window
            slot = _first_slot_after(start, step, after)
            if slot < end:
                return slot.astimezone(UTC)
        return None

    def _next_interval_unwindowed(self, after: datetime, step: timedelta) -> datetime | None:
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        slot = _first_slot_after(epoch, step, after)
        limit = after + HORIZON
        while slot <= limit:
            local = slot.astimezone(self.tz)
            if self.weekdays is None or local.weekday() in self.weekdays:
                return slot
            # Jump to the start of the next local day, then back onto the grid.
            next_day = datetime.combine(local.date() + timedelta(days=1), time.min)
            slot = _first_slot_after(epoch, step, _localize(next_day, self.tz) - timedelta(microseconds=1))
        return None

    # -- windows ------------------------------------------------------------

    def _window(self, day: date) -> tuple[datetime, datetime] | None:
        """The window that starts on local `day` as aware datetimes, if that day is allowed."""
        if self.weekdays is not None and day.weekday() not in self.weekdays:
            return None
        assert self.start_time is not None
        assert self.end_time is not None
        start = _localize(datetime.combine(day, self.start_time), self.tz)
        end_day = day + timedelta(days=1) if self.end_time <= self.start_time else day
        end = _localize(datetime.combine(end_day, self.end_time), self.tz)
        return start, end


def _first_slot_after(anchor: datetime, step: timedelta, after: datetime) -> datetime:
    """anchor + k*step for the smallest k with the result > after (k ≥ 0)."""
    if after < anchor:
        return anchor
    k = (after - anchor) // step + 1
    return anchor + k * step


def _localize(naive: datetime, tz: tzinfo) -> datetime:
    """A local wall time as an aware datetime; a time skipped by DST moves forward past the gap."""
    aware = naive.replace(tzinfo=tz)
    round_trip = aware.astimezone(UTC).astimezone(tz)
    if round_trip.replace(tzinfo=None) != naive:  # in the spring-forward gap
        return round_trip
    return aware


def iter_dst_marks(slots: list[datetime], tz: tzinfo) -> Iterator[tuple[datetime, bool]]:
    """(local slot, True when its UTC offset differs from the previous slot's)."""
    previous = None
    for slot in slots:
        local = slot.astimezone(tz)
        offset = local.utcoffset()
        yield local, previous is not None and offset != previous
        previous = offset


def _interval(config: dict[str, Any], errors: dict[str, str]) -> int | None:
    if "interval_seconds" not in config:
        return None
    value = config["interval_seconds"]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        errors["interval_seconds"] = f"must be an integer > 0, got {value!r}"
        return None
    if value > 366 * 86400:
        errors["interval_seconds"] = "must be at most one year"
        return None
    return value


def _cron(config: dict[str, Any], errors: dict[str, str]) -> str | None:
    if "cron" not in config:
        return None
    value = config["cron"]
    if not isinstance(value, str) or len(value.split()) != 5:
        errors["cron"] = f"must be a 5-field cron expression (minute hour day month weekday), got {value!r}"
        return None
    try:
        CronSim(value, datetime(2026, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        errors["cron"] = f"{value!r} is not a valid cron expression: {exc}"
        return None
    return value


def _hhmm(config: dict[str, Any], key: str, errors: dict[str, str]) -> time | None:
    if key not in config:
        return None
    value = config[key]
    match = HHMM.match(value) if isinstance(value, str) else None
    if match is None:
        errors[key] = f"must be HH:MM (24-hour), got {value!r}"
        return None
    return time(int(match.group(1)), int(match.group(2)))


def _weekdays(config: dict[str, Any], errors: dict[str, str]) -> frozenset[int] | None:
    if "weekdays" not in config:
        return None
    value = config["weekdays"]
    if not isinstance(value, list) or not value:
        errors["weekdays"] = f"must be a non-empty list of day names ({', '.join(WEEKDAYS)})"
        return None
    days = set()
    for item in value:
        name = item.strip().lower() if isinstance(item, str) else None
        if name in WEEKDAY_NAMES:
            name = name[:3]
        if name not in WEEKDAYS:
            errors["weekdays"] = f"{item!r} is not a day name ({', '.join(WEEKDAYS)})"
            return None
        days.add(WEEKDAYS.index(name))
    return frozenset(days)


def _timezone(config: dict[str, Any], errors: dict[str, str]) -> tzinfo:
    name = config.get("timezone", settings.TIME_ZONE)
    if not isinstance(name, str) or not name:
        errors["timezone"] = f"must be an IANA time zone name, got {name!r}"
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        errors["timezone"] = f"unknown time zone {name!r}"
        return UTC
