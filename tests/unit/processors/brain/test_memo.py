from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
import pytest

from bench.workload import Workload
from processors.brain.memo import Memo
from processors.brain.priority import due, priority
from processors.brain.route import Facts, decide
from processors.brain.thread import ThreadRules
from processors.intake.stage import identified_message
from processors.policy.calendar import _walk, add_business_time
from processors.policy.load import load_policy
from router.vocabulary import VOCABULARY
from schemas import Decision, InboundMessage, decode
from schemas.identified import CustomerProfile
from tests.paths import ROOT

POLICY = load_policy(ROOT / "deploy" / "policy.example.yaml", VOCABULARY)
BERLIN = ZoneInfo("Europe/Berlin")
CLOCK = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)


def _edges() -> list[datetime]:
    """Minutes where business time bends: openings, closings, a due time landing on a close,
    weekends, a holiday, both DST changes of 2026 in Berlin."""
    local = [
        datetime(2026, 3, 27, 7, 59), datetime(2026, 3, 27, 8, 0), datetime(2026, 3, 27, 16, 0),
        datetime(2026, 3, 27, 17, 59), datetime(2026, 3, 27, 18, 0), datetime(2026, 3, 28, 13, 59),
        datetime(2026, 3, 29, 2, 30), datetime(2026, 3, 30, 7, 59), datetime(2026, 4, 3, 9, 0),
        datetime(2026, 10, 24, 12, 0), datetime(2026, 10, 25, 2, 30), datetime(2026, 10, 26, 17, 30),
        datetime(2026, 12, 23, 17, 59), datetime(2026, 12, 31, 23, 59),
    ]
    return [t.replace(tzinfo=BERLIN).astimezone(UTC) for t in local]


def _arrivals(seed: int) -> list[datetime]:
    """Each edge minute at its first and last microsecond and at random seconds within it."""
    rng = random.Random(seed)
    out = []
    for minute in _edges():
        out += [minute, minute + timedelta(seconds=59, microseconds=999_999)]
        out += [minute + timedelta(seconds=rng.randrange(60), microseconds=rng.randrange(10**6))
                for _ in range(4)]
    return out


@pytest.mark.parametrize("target", ["first_response", "next_response"])
def test_memo_gives_exactly_what_due_gives(target: str) -> None:
    memo = Memo(lambda: CLOCK)
    for start in _arrivals(seed=15):
        for tier in POLICY.tiers:
            for urgency in POLICY.urgency.levels:
                for queue in ("general", "escalations"):
                    want = due(target, start, tier=tier, urgency=urgency, queue=queue,  # type: ignore[arg-type]
                               policy=POLICY)
                    got = memo.due(target, start, tier=tier, urgency=urgency, queue=queue,  # type: ignore[arg-type]
                                   policy=POLICY)
                    assert got == want, (start, tier, urgency, queue)


def test_a_due_time_on_a_closing_minute_is_not_stretched() -> None:
    # premium, normal: 2 business hours from 16:00:00 ends at the 18:00 close exactly; a
    # message 30 s later is due the next open day, not at 18:00:30
    memo = Memo(lambda: CLOCK)
    at = datetime(2026, 3, 27, 16, 0, tzinfo=BERLIN)
    on_time = memo.due("first_response", at, tier="premium", urgency="normal", queue="general",
                       policy=POLICY)
    later = memo.due("first_response", at + timedelta(seconds=30), tier="premium", urgency="normal",
                     queue="general", policy=POLICY)
    assert on_time.at == datetime(2026, 3, 27, 18, 0, tzinfo=BERLIN)
    assert later.at == datetime(2026, 3, 28, 10, 0, 30, tzinfo=BERLIN)  # Saturday's hours


def test_within_an_open_minute_due_times_move_with_arrival() -> None:
    memo = Memo(lambda: CLOCK)
    at = datetime(2026, 3, 27, 10, 0, 5, tzinfo=BERLIN)
    first = memo.due("first_response", at, tier="premium", urgency="high", queue="general", policy=POLICY)
    second = memo.due("first_response", at + timedelta(seconds=7, microseconds=3), tier="premium",
                      urgency="high", queue="general", policy=POLICY)
    assert second.at - first.at == timedelta(seconds=7, microseconds=3)
    assert second.reasons[-1].endswith(f"due {second.at.isoformat()}")


def test_a_new_policy_is_never_answered_from_the_old_one() -> None:
    memo = Memo(lambda: CLOCK)
    at = datetime(2026, 3, 27, 10, 0, tzinfo=BERLIN)
    before = memo.due("first_response", at, tier="premium", urgency="high", queue="general", policy=POLICY)
    premium = POLICY.tiers["premium"]
    faster = replace(POLICY, tiers={**POLICY.tiers, "premium": replace(
        premium, first_response={**premium.first_response, "high": timedelta(minutes=20)})})
    after = memo.due("first_response", at, tier="premium", urgency="high", queue="general", policy=faster)
    assert before.at - at == timedelta(hours=1)
    assert after.at - at == timedelta(minutes=20)
    assert memo.priority("premium", "high", faster) == priority("premium", "high", faster)


def test_the_clock_moving_on_keeps_answers_exact() -> None:
    now = [CLOCK]
    memo = Memo(lambda: now[0])
    at = datetime(2026, 3, 27, 10, 0, 5, tzinfo=BERLIN)
    for step in range(5):
        now[0] = CLOCK + timedelta(minutes=step * 7)
        start = at + timedelta(minutes=step * 7, seconds=step)
        assert memo.due("first_response", start, tier="standard", urgency="low", queue="general",
                        policy=POLICY) == due("first_response", start, tier="standard", urgency="low",
                                              queue="general", policy=POLICY)


def test_routing_with_the_memo_is_routing_without_it() -> None:
    # real support texts from many senders, over an afternoon that runs past the 18:00 close
    work = Workload("memo", customers=50)
    rules = ThreadRules(token_key=b"memo-test-key")
    memo = Memo(lambda: CLOCK)
    start = datetime(2026, 3, 27, 16, 0, tzinfo=BERLIN)
    seen = Decision(stage="identify", outcome="known", reasons=("test",))
    for i in range(400):
        message = msgspec.structs.replace(decode(work.next()[1], InboundMessage),
                                          received_at=start + timedelta(seconds=i * 17.3))
        tier = ("standard", "premium", "enterprise")[i % 3]
        facts = Facts(profile=CustomerProfile(customer_id=f"cus_{i % 50}", tier=tier))
        identified = identified_message(message, f"cus_{i % 50}", "test", seen, at=message.received_at)
        now = message.received_at
        assert decide(identified, facts, POLICY, rules, now, memo=memo) == decide(
            identified, facts, POLICY, rules, now)


def test_business_time_memoised_per_minute_is_the_calendar_walk() -> None:
    durations = [timedelta(0), timedelta(microseconds=1), timedelta(minutes=1), timedelta(minutes=30),
                 timedelta(hours=2, seconds=17, microseconds=3), timedelta(hours=8), timedelta(days=3)]
    for calendar in POLICY.calendars.values():
        for start in _arrivals(seed=16):
            for duration in durations:
                # twice: the second answer comes from the memo
                want = _walk(start, duration, calendar)
                assert add_business_time(start, duration, calendar) == want, (calendar.name, start, duration)
                assert add_business_time(start, duration, calendar) == want, (calendar.name, start, duration)
