"""Date-range parameters (`start`/`end`) shared by the export, the API and the admin."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from rpa_monitor.errors import InvalidDateRangeError

EXAMPLE = "e.g. 2026-11-24 or 2026-11-24T08:00"


def parse_moment(value: str, *, end: bool) -> datetime:
    """An ISO date or datetime as an aware datetime (naive means TIME_ZONE).

    A bare date as an `end` means the start of the next day, so that `end=<day>`
    includes that whole day. ValueError says what is wrong.
    """
    text = value.strip()
    try:
        # The date first: parse_datetime reads a bare date as its midnight.
        day = parse_date(text)
        if day is not None:
            moment = datetime.combine(day + timedelta(days=1) if end else day, time.min)
        else:
            parsed = parse_datetime(text)
            if parsed is None:
                raise ValueError(
                    f"{value!r} is not an ISO date or datetime (e.g. 2026-11-24 or 2026-11-24T08:00)"
                )
            moment = parsed
        if timezone.is_naive(moment):
            moment = timezone.make_aware(moment)
        moment.astimezone(UTC)  # the database compares in UTC: year 1 or 9999 may not fit
    except OverflowError:
        raise ValueError(f"{value!r} is out of range") from None
    except ValueError as exc:
        if "ISO date" in str(exc):
            raise
        raise ValueError(f"{value!r} is not a valid date: {exc}") from None
    return moment


def parse_bound(value: str | None, *, end: bool) -> datetime | None:
    """Lenient form for admin filters: a malformed value is ignored (None)."""
    if not value:
        return None
    try:
        return parse_moment(value, end=end)
    except ValueError:
        return None


@dataclass(frozen=True)
class DateRange:
    """[start, end): either side may be open."""

    start: datetime | None = None
    end: datetime | None = None

    @classmethod
    def parse(cls, start: str | None, end: str | None) -> DateRange:
        """Strict form for the API and commands: InvalidDateRangeError names the field."""
        bounds: dict[str, datetime | None] = {"start": None, "end": None}
        for field, value in (("start", start), ("end", end)):
            if value:
                try:
                    bounds[field] = parse_moment(value, end=field == "end")
                except ValueError as exc:
                    raise InvalidDateRangeError(f"{field}: {exc}", field=field) from None
        result = cls(bounds["start"], bounds["end"])
        # A bare end date was turned into the next midnight: start on that midnight
        # (start=03-11, end=03-10) is after the end day too.
        end_is_day = end is not None and parse_date(end.strip()) is not None
        if (
            result.start is not None
            and result.end is not None
            and (result.start > result.end or (end_is_day and result.start >= result.end))
        ):
            raise InvalidDateRangeError(f"start ({start}) is after end ({end})", field="start")
        return result
