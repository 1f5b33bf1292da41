"""The simulated day's clock and arrival curve, on injected clocks."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bench.day.clock import REAL_WAITS, SimClock
from bench.day.curve import HOURLY, arrivals, expected_per_hour
from bench.day.desk import Shift, staffed
from bench.day.plan import Texts, plan_day
from bench.day.run import SHIFTS, last_weekday, scaled

BERLIN = ZoneInfo("Europe/Berlin")
MONDAY = datetime(2026, 11, 30, tzinfo=BERLIN)


def test_the_clock_runs_speed_times_faster_from_its_origin() -> None:
    real = [1000.0]
    clock = SimClock(
        start=datetime(2026, 11, 30, 7, tzinfo=UTC), speed=120, origin=1000.0, real=lambda: real[0]
    )
    assert clock.now() == datetime(2026, 11, 30, 7, tzinfo=UTC)
    real[0] = 1030.0  # half a real minute is an hour
    assert clock.now() == datetime(2026, 11, 30, 8, tzinfo=UTC)
    assert clock.real_at(datetime(2026, 11, 30, 9, tzinfo=UTC)) == 1060.0
    assert clock.real_seconds(timedelta(minutes=10)) == 5.0


def test_processes_get_the_same_clock_through_libfaketime() -> None:
    clock = SimClock(
        start=datetime(2026, 11, 30, 7, tzinfo=UTC), speed=120, origin=1000.0, real=lambda: 1015.0
    )
    env = clock.faketime_env()
    assert env["FAKETIME"] == "@2026-11-30 07:30:00 x120"
    assert env["FAKETIME_DONT_FAKE_MONOTONIC"] == "1"  # timeouts and Kafka sessions stay real
    assert env["LD_PRELOAD"].endswith("libfaketimeMT.so.1")
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(REAL_WAITS)


# how often the event loop turns while one timer 0.3 s away is pending
_TURNS = """
import asyncio
async def main():
    loop, turns = asyncio.get_running_loop(), [0]
    turn = loop._run_once
    def counted():
        turns[0] += 1
        turn()
    loop._run_once = counted
    due = loop.create_future()
    loop.call_later(0.3, due.set_result, None)  # the pending timer under test, not a wait for state
    await due
    print(turns[0])
asyncio.run(main())
"""


def test_a_sped_up_process_waits_in_real_time_instead_of_spinning() -> None:
    clock = SimClock(start=datetime(2026, 11, 30, 7, tzinfo=UTC), speed=240, origin=0.0, real=lambda: 0.0)
    env = {**os.environ, **clock.faketime_env()}
    turns = int(subprocess.run([sys.executable, "-c", _TURNS], env=env, check=True, capture_output=True,
                               text=True, timeout=60).stdout)
    # libfaketime alone shortens each wait 240-fold: tens of thousands of turns, a core spent
    assert turns < 50, turns


def test_the_curve_has_a_morning_peak_a_lunch_dip_and_a_night_trickle() -> None:
    rates = expected_per_hour(240)
    assert abs(sum(rates) - 240) < 1e-9
    peak = max(range(24), key=lambda h: HOURLY[h])
    assert 9 <= peak <= 11
    assert rates[12] < rates[11] and rates[12] < rates[14]
    assert max(rates[0:6]) < rates[10] / 10


def test_arrivals_follow_the_curve_and_repeat_with_the_seed() -> None:
    found = arrivals(random.Random(3), MONDAY, 2400, BERLIN)
    assert found == arrivals(random.Random(3), MONDAY, 2400, BERLIN)
    assert found == sorted(found) and all(a.date() == MONDAY.date() for a in found)
    per_hour = Counter(a.astimezone(BERLIN).hour for a in found)
    assert 2000 < len(found) < 2800
    assert per_hour[10] > 5 * per_hour[3]
    assert per_hour[12] < per_hour[10]


def test_only_the_hours_asked_for() -> None:
    found = arrivals(random.Random(1), MONDAY, 2400, BERLIN, range(8, 10))
    assert {a.astimezone(BERLIN).hour for a in found} == {8, 9}


def test_a_plan_is_reproducible_and_has_every_kind_of_customer() -> None:
    texts = Texts.load()
    one = plan_day(16, MONDAY, BERLIN, per_day=400, run="abcd1234", texts=texts)
    two = plan_day(16, MONDAY, BERLIN, per_day=400, run="abcd1234", texts=texts)
    assert [(c.at, c.text, c.customer.address) for c in one.contacts] == [
        (c.at, c.text, c.customer.address) for c in two.contacts
    ]
    tiers = Counter(c.tier for c in one.customers)
    assert set(tiers) == {"enterprise", "premium", "standard"}
    assert any(c.angry for c in one.contacts)
    assert any(c.chases for c in one.customers) and any(c.out_of_office for c in one.customers)
    assert one.start == MONDAY and one.end == MONDAY + timedelta(hours=24)
    assert b"identity,tier,name" in one.directory_csv("x")


def test_shifts_and_half_staffing() -> None:
    general = SHIFTS["general"]
    assert staffed(general, 10.5) == 6 and staffed(general, 12.5) == 3 and staffed(general, 3) == 1
    half = scaled(general, 0.5)
    assert staffed(half, 10.5) == 3 and staffed(half, 3) == 1  # someone stays on call
    assert staffed((Shift(8, 18, 0),), 9) == 0


def test_the_day_is_a_monday_in_the_past() -> None:
    friday = datetime(2026, 12, 4, 9, tzinfo=UTC)
    assert last_weekday(friday) == datetime(2026, 11, 30, tzinfo=BERLIN)
    tuesday = datetime(2026, 12, 1, 9, tzinfo=UTC)
    assert last_weekday(tuesday) == datetime(2026, 11, 23, tzinfo=BERLIN)
