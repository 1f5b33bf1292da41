"""Business hours: when a team is open, and how far a span of open time reaches.

Hours are local wall-clock times in the calendar's timezone; every computation runs on
UTC instants, so a shift keeps its real length across DST changes (a 02:00-04:00 shift
on the spring-forward night lasts one hour). Holidays close the whole local day.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from itertools import pairwise
from zoneinfo import ZoneInfo

from processors.policy.derived import Derived

__all__ = [
    "ALWAYS_OPEN",
    "WEEKDAYS",
    "Calendar",
    "Shift",
    "add_business_time",
    "business_time_between",
    "is_open",
    "next_open",
    "open_intervals",
    "parse_hours",
]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# a calendar with no open day within this many days is treated as broken, not looped on
_HORIZON_DAYS = 3660
_RANGE = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")

Shift = tuple[int, int]
"""Open minutes of one local day: start and end, 0..1440 (end 1440 is midnight)."""


@dataclass(frozen=True, slots=True)
class Calendar:
    """When a team works: shifts per weekday (Monday first), a timezone and holidays."""

    name: str
    timezone: ZoneInfo
    hours: tuple[tuple[Shift, ...], ...]
    holidays: frozenset[date] = frozenset()
    always_open: bool = False


ALWAYS_OPEN = Calendar(
    name="24x7", timezone=ZoneInfo("UTC"), hours=(((0, 1440),),) * 7, always_open=True
)


def _days(spec: str) -> list[int]:
    days: list[int] = []
    for part in spec.split(","):
        first, _, last = part.strip().partition("-")
        if first not in WEEKDAYS or (last and last not in WEEKDAYS):
            raise ValueError(f"{part.strip()!r} is not a weekday or range like mon-fri")
        start, end = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
        days.extend((start + k) % 7 for k in range((end - start) % 7 + 1))
    return days


def _shift(spec: str) -> Shift:
    match = _RANGE.match(spec.strip())
    if match is None:
        raise ValueError(f"{spec.strip()!r} is not a time range like 09:00-17:00")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start >= 1440 or end > 1440:
        raise ValueError(f"{spec.strip()!r}: hours run from 00:00 to 24:00")
    if end <= start:
        # overnight shifts would belong to two days; asking for two lines keeps holidays exact
        raise ValueError(f"{spec.strip()!r} ends before it starts; split overnight shifts by day")
    return start, end


def parse_hours(lines: Sequence[str]) -> tuple[tuple[Shift, ...], ...]:
    """Read lines like "mon-fri 09:00-17:00" or "sat 10:00-12:00,13:00-15:00" into shifts."""
    week: list[list[Shift]] = [[] for _ in WEEKDAYS]
    for line in lines:
        days, _, ranges = line.strip().partition(" ")
        if not ranges.strip():
            raise ValueError(f"{line!r} needs days and hours, like mon-fri 09:00-17:00")
        shifts = [_shift(r) for r in ranges.split(",")]
        for day in _days(days.lower()):
            week[day].extend(shifts)
    for name, shifts in zip(WEEKDAYS, week, strict=True):
        shifts.sort()
        for (_, end), (start, _) in pairwise(shifts):
            if start < end:
                raise ValueError(f"overlapping hours on {name}")
    if not any(week):
        raise ValueError("no open hours on any day")
    return tuple(tuple(s) for s in week)


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("business-time arithmetic needs timezone-aware datetimes")
    return at.astimezone(UTC)


@lru_cache(maxsize=4096)
def _day_intervals(day: date, calendar: Calendar) -> tuple[tuple[datetime, datetime], ...]:
    # cached: every routed message asks about the same few days, and the zone conversions
    # were most of the routing brain's time
    if day in calendar.holidays:
        return ()
    midnight = datetime(day.year, day.month, day.day, tzinfo=calendar.timezone)
    # aware + timedelta is wall-clock arithmetic: exactly the local shift times
    return tuple(
        ((midnight + timedelta(minutes=start)).astimezone(UTC),
         (midnight + timedelta(minutes=end)).astimezone(UTC))
        for start, end in calendar.hours[day.weekday()]
    )


def open_intervals(after: datetime, calendar: Calendar) -> Iterator[tuple[datetime, datetime]]:
    """The open spans (UTC) from `after` on, the first clipped to start at `after`."""
    start = _utc(after)
    if calendar.always_open:
        yield start, datetime.max.replace(tzinfo=UTC)
        return
    day = start.astimezone(calendar.timezone).date() - timedelta(days=1)
    for _ in range(_HORIZON_DAYS):
        for begin, end in _day_intervals(day, calendar):
            if end > start:
                yield max(begin, start), end
        day += timedelta(days=1)
    raise ValueError(f"calendar {calendar.name} has no open hours within {_HORIZON_DAYS} days")


def is_open(at: datetime, calendar: Calendar) -> bool:
    """Whether the team is working at `at`."""
    begin, _ = next(open_intervals(at, calendar))
    return begin == _utc(at)


def next_open(at: datetime, calendar: Calendar) -> datetime:
    """`at` itself when open, else the moment the team next opens (UTC)."""
    # no open time to add: the first open instant, memoised per minute like any other
    return add_business_time(at, _NOTHING, calendar)


def add_business_time(start: datetime, duration: timedelta, calendar: Calendar) -> datetime:
    """The instant (UTC) when `duration` of open time has passed since `start`."""
    if duration < timedelta(0):
        raise ValueError("duration must not be negative")
    if calendar.always_open:
        return _utc(start) + duration
    minute = (start - _EPOCH) // _MINUTE
    first = _EPOCH + minute * _MINUTE
    key = (duration, minute)
    entry = _walked.get(calendar, key)
    if entry is None:
        entry = _walked.put(calendar, key, _learn(first, duration, calendar))
    at, moves = entry
    if at is None:
        return _walk(start, duration, calendar)
    return at + (_utc(start) - first) if moves else at


# One walk per (calendar, duration, minute of start). Open hours begin and end on whole
# minutes in whole-minute zones, so within a minute the answer either moves with the start
# (open all minute) or stays (closed all minute); `_learn` proves which from the minute's
# first and last microsecond (the answer is non-decreasing in the start), else walks always.
# The SLA clock's next due time per routed message walked the calendar each time.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NOTHING = timedelta(0)
_MINUTE = timedelta(minutes=1)
_LAST = _MINUTE - timedelta(microseconds=1)
_walked: Derived[tuple[timedelta, int], tuple[datetime | None, bool]] = Derived(4096)


def _learn(first: datetime, duration: timedelta, calendar: Calendar) -> tuple[datetime | None, bool]:
    """A minute's answer at its first instant, and whether it moves with the start (None: neither)."""
    at, last = _walk(first, duration, calendar), _walk(first + _LAST, duration, calendar)
    if last == at:
        return at, False
    return (at if last - at == _LAST else None), True


def _walk(start: datetime, duration: timedelta, calendar: Calendar) -> datetime:
    left = duration
    for begin, end in open_intervals(start, calendar):
        if begin + left <= end:
            return begin + left
        left -= end - begin
    raise AssertionError("open_intervals never ends")  # pragma: no cover


def business_time_between(start: datetime, end: datetime, calendar: Calendar) -> timedelta:
    """Open time between two instants; zero when `end` is not after `start`."""
    stop = _utc(end)
    if stop <= _utc(start):
        return timedelta(0)
    if calendar.always_open:
        return stop - _utc(start)
    total = timedelta(0)
    for begin, finish in open_intervals(start, calendar):
        if begin >= stop:
            break
        total += min(finish, stop) - begin
    return total
