from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from processors.policy.calendar import (
    ALWAYS_OPEN,
    Calendar,
    add_business_time,
    business_time_between,
    is_open,
    next_open,
    open_intervals,
    parse_hours,
)

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = Calendar("office", BERLIN, parse_hours(["mon-fri 09:00-17:00"]), frozenset({date(2026, 12, 25)}))
# a night shift across both DST changes of 2026 (29 March, 25 October, both Sundays)
NIGHTS = Calendar("nights", BERLIN, parse_hours(["sun 01:00-04:00"]))


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


@pytest.mark.parametrize(("at", "open_"), [
    (local(2026, 3, 2, 8, 59), False),   # Monday before opening
    (local(2026, 3, 2, 9, 0), True),
    (local(2026, 3, 2, 16, 59), True),
    (local(2026, 3, 2, 17, 0), False),   # closing time is closed
    (local(2026, 3, 7, 12, 0), False),   # Saturday
    (local(2026, 12, 25, 12, 0), False),  # holiday, a Friday
    (datetime(2026, 3, 2, 8, 30, tzinfo=UTC), True),  # 09:30 in Berlin
])
def test_is_open(at: datetime, open_: bool) -> None:
    assert is_open(at, OFFICE) is open_


@pytest.mark.parametrize(("start", "duration", "expected"), [
    (local(2026, 3, 2, 10, 0), timedelta(hours=2), local(2026, 3, 2, 12, 0)),
    (local(2026, 3, 2, 16, 0), timedelta(hours=2), local(2026, 3, 3, 10, 0)),   # over the night
    (local(2026, 3, 6, 16, 0), timedelta(hours=2), local(2026, 3, 9, 10, 0)),   # over the weekend
    (local(2026, 3, 7, 12, 0), timedelta(hours=1), local(2026, 3, 9, 10, 0)),   # received closed
    (local(2026, 12, 24, 16, 0), timedelta(hours=2), local(2026, 12, 28, 10, 0)),  # over a holiday
    (local(2026, 3, 2, 10, 0), timedelta(hours=16), local(2026, 3, 4, 10, 0)),  # 2 business days
    (local(2026, 3, 7, 12, 0), timedelta(0), local(2026, 3, 9, 9, 0)),          # zero: next opening
    # Friday before the spring change to Monday after: CET then CEST, 2 business hours
    (local(2026, 3, 27, 16, 0), timedelta(hours=2), local(2026, 3, 30, 10, 0)),
    (local(2026, 10, 23, 16, 30), timedelta(hours=1), local(2026, 10, 26, 9, 30)),
])
def test_add_business_time(start: datetime, duration: timedelta, expected: datetime) -> None:
    result = add_business_time(start, duration, OFFICE)
    assert result == expected
    assert result.tzinfo is UTC


def test_monday_after_spring_change_is_cest() -> None:
    result = add_business_time(local(2026, 3, 27, 16, 0), timedelta(hours=2), OFFICE)
    assert result == datetime(2026, 3, 30, 8, 0, tzinfo=UTC)  # 10:00 CEST


@pytest.mark.parametrize(("day", "length"), [
    (date(2026, 3, 22), timedelta(hours=3)),
    (date(2026, 3, 29), timedelta(hours=2)),   # 02:00-03:00 does not exist that night
    (date(2026, 10, 25), timedelta(hours=4)),  # 02:00-03:00 happens twice
])
def test_a_shift_keeps_its_real_length_across_dst(day: date, length: timedelta) -> None:
    start = datetime(day.year, day.month, day.day, tzinfo=BERLIN)
    assert business_time_between(start, start + timedelta(hours=12), NIGHTS) == length


def test_spring_night_shift_spills_into_the_next_week() -> None:
    start = local(2026, 3, 29, 0, 0)
    assert add_business_time(start, timedelta(hours=2, minutes=30), NIGHTS) == local(2026, 4, 5, 1, 30)


def test_24x7_counts_real_elapsed_time_across_dst() -> None:
    start = local(2026, 3, 28, 12, 0)
    assert add_business_time(start, timedelta(hours=24), ALWAYS_OPEN) == local(2026, 3, 29, 13, 0)
    assert is_open(local(2026, 12, 25, 3, 0), ALWAYS_OPEN)


@pytest.mark.parametrize(("at", "expected"), [
    (local(2026, 3, 2, 10, 0), local(2026, 3, 2, 10, 0)),
    (local(2026, 3, 2, 18, 0), local(2026, 3, 3, 9, 0)),
    (local(2026, 12, 24, 17, 0), local(2026, 12, 28, 9, 0)),
])
def test_next_open(at: datetime, expected: datetime) -> None:
    assert next_open(at, OFFICE) == expected


@pytest.mark.parametrize("minute", [
    local(2026, 3, 2, 8, 59), local(2026, 3, 2, 9, 0), local(2026, 3, 2, 16, 59), local(2026, 3, 2, 17, 0),
    local(2026, 3, 7, 12, 0),
])
def test_next_open_within_a_minute_is_the_first_open_instant(minute: datetime) -> None:
    # next_open is memoised per minute: every instant of one, in any order, gets the walked answer
    for offset in (59_999_999, 0, 30_000_000, 1, 59_999_999):
        at = minute + timedelta(microseconds=offset)
        assert next_open(at, OFFICE) == next(open_intervals(at, OFFICE))[0]


@pytest.mark.parametrize(("start", "end", "expected"), [
    (local(2026, 3, 6, 16, 0), local(2026, 3, 9, 10, 0), timedelta(hours=2)),
    (local(2026, 3, 7, 0, 0), local(2026, 3, 8, 23, 0), timedelta(0)),
    (local(2026, 3, 9, 10, 0), local(2026, 3, 6, 16, 0), timedelta(0)),  # end before start
    (local(2026, 3, 2, 0, 0), local(2026, 3, 9, 0, 0), timedelta(hours=40)),
])
def test_business_time_between(start: datetime, end: datetime, expected: timedelta) -> None:
    assert business_time_between(start, end, OFFICE) == expected


def test_adding_then_measuring_gives_the_same_duration() -> None:
    rng = random.Random(7)
    for _ in range(300):
        start = local(2026, 1, 1) + timedelta(minutes=rng.randrange(0, 365 * 24 * 60))
        duration = timedelta(minutes=rng.randrange(0, 60 * 60))
        end = add_business_time(start, duration, OFFICE)
        assert business_time_between(start, end, OFFICE) == duration


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        is_open(datetime(2026, 3, 2, 10, 0), OFFICE)


@pytest.mark.parametrize(("lines", "monday", "saturday", "sunday"), [
    (["mon-fri 09:00-17:00"], ((540, 1020),), (), ()),
    (["mon 08:00-12:00,13:00-17:00"], ((480, 720), (780, 1020)), (), ()),
    (["sat-mon 10:00-24:00"], ((600, 1440),), ((600, 1440),), ((600, 1440),)),
    (["MON,sat 00:00-01:00"], ((0, 60),), ((0, 60),), ()),
])
def test_parse_hours(lines: list[str], monday: tuple[tuple[int, int], ...],
                     saturday: tuple[tuple[int, int], ...], sunday: tuple[tuple[int, int], ...]) -> None:
    week = parse_hours(lines)
    assert (week[0], week[5], week[6]) == (monday, saturday, sunday)


@pytest.mark.parametrize(("lines", "reason"), [
    (["mon-fri"], "needs days and hours"),
    (["weekdays 09:00-17:00"], "not a weekday"),
    (["mon 9-17"], "not a time range"),
    (["mon 17:00-09:00"], "overnight"),
    (["mon 09:00-24:30"], "from 00:00 to 24:00"),
    (["mon 09:00-12:00,11:00-13:00"], "overlapping"),
    ([], "no open hours"),
])
def test_parse_hours_refuses(lines: list[str], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_hours(lines)
