from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from processors.brain.sla import ClockEvent, EventKind, SlaClock, apply, due_events, mark_fired, next_due
from processors.policy.load import load_policy
from processors.policy.model import Policy, Sla
from router.vocabulary import VOCABULARY
from schemas.codec import decode, encode
from tests.paths import ROOT

POLICY = load_policy(ROOT / "deploy" / "policy.example.yaml", VOCABULARY)
NO_PAUSE = dataclasses.replace(POLICY, sla=Sla(pause_when_waiting_on_customer=False))
BERLIN = ZoneInfo("Europe/Berlin")


def at(hour: int, minute: int = 0, day: int = 2) -> datetime:
    """A time on Monday 2 March 2026 (or `day`), Berlin; eu-support is open 08:00-18:00."""
    return datetime(2026, 3, day, hour, minute, tzinfo=BERLIN)


def run(events: list[tuple[EventKind, datetime]], policy: Policy = POLICY) -> SlaClock:
    clock = SlaClock(tier="premium", urgency="normal", queue="general")
    for kind, when in events:
        clock, _ = apply(clock, ClockEvent(kind, when), policy)
    return clock


def kinds(clock: SlaClock, now: datetime, policy: Policy = POLICY) -> list[str]:
    return [e.kind if e.step is None else f"{e.step.action}@{e.step.label}"
            for e in due_events(clock, now, policy)]


# premium/normal in queue general: first response 2h, next response 4h; status update at 50%,
# warn at 75%; chain: notify at warn, raise_priority and reassign at breach, page at breach+30m
CASES = [
    ("nothing due before half time", [("customer_message", at(9))], at(9, 59), [], POLICY),
    ("status update at half the target", [("customer_message", at(9))], at(10), ["status_update"], POLICY),
    ("warn and its escalation step", [("customer_message", at(9))], at(10, 30),
     ["status_update", "warn", "notify@warn"], POLICY),
    ("breach", [("customer_message", at(9))], at(11),
     ["status_update", "warn", "notify@warn", "breach", "raise_priority@breach", "reassign@breach"], POLICY),
    ("page 30m after breach", [("customer_message", at(9))], at(11, 30),
     ["status_update", "warn", "notify@warn", "breach", "raise_priority@breach", "reassign@breach",
      "page@breach+30m"], POLICY),
    ("the clock stops on resolve",
     [("customer_message", at(9)), ("resolved", at(9, 30))], at(17), [], POLICY),
    ("an agent reply resets the status-update timer",
     [("customer_message", at(9)), ("agent_public_reply", at(9, 45))], at(11, 44), [], POLICY),
    ("... and it runs again from the reply (50% of next response 4h)",
     [("customer_message", at(9)), ("agent_public_reply", at(9, 45))], at(11, 45), ["status_update"], POLICY),
    ("disabling the policy clears pending escalations",
     [("customer_message", at(9)), ("policy_disabled", at(10, 45))], at(17), [], POLICY),
    ("a disabled clock ignores later messages",
     [("customer_message", at(9)), ("policy_disabled", at(9, 5)), ("customer_message", at(9, 10))],
     at(17), [], POLICY),
    ("paused while waiting on the customer",
     [("customer_message", at(9)), ("waiting_on_customer", at(9, 30))], at(17), [], POLICY),
    ("resumed with what was left: 30m used, status update 30m after resuming",
     [("customer_message", at(9)), ("waiting_on_customer", at(9, 30)), ("customer_replied", at(13))],
     at(13, 30), ["status_update"], POLICY),
    ("a customer message while paused also resumes",
     [("customer_message", at(9)), ("waiting_on_customer", at(9, 30)), ("customer_message", at(13))],
     at(14, 29), ["status_update", "warn", "notify@warn"], POLICY),
    ("no pause when the policy says so",
     [("customer_message", at(9)), ("waiting_on_customer", at(9, 30))], at(11),
     ["status_update", "warn", "notify@warn", "breach", "raise_priority@breach", "reassign@breach"],
     NO_PAUSE),
    ("a second customer message does not restart the clock",
     [("customer_message", at(9)), ("customer_message", at(10, 45))], at(11),
     ["status_update", "warn", "notify@warn", "breach", "raise_priority@breach", "reassign@breach"], POLICY),
    ("business hours: Friday 17:30 breaches Saturday 11:30",
     [("customer_message", at(17, 30, day=6))], at(11, 29, day=7),
     ["status_update", "warn", "notify@warn"], POLICY),
    ("reopened after resolve: a next-response clock from the new message",
     [("customer_message", at(9)), ("agent_public_reply", at(9, 30)), ("resolved", at(10)),
      ("customer_message", at(12))], at(13, 59), [], POLICY),
    ("... whose status update comes 2h in",
     [("customer_message", at(9)), ("agent_public_reply", at(9, 30)), ("resolved", at(10)),
      ("customer_message", at(12))], at(14), ["status_update"], POLICY),
    ("an agent reply after resolve starts nothing",
     [("customer_message", at(9)), ("resolved", at(9, 30)), ("agent_public_reply", at(9, 40))],
     at(17), [], POLICY),
]


@pytest.mark.parametrize(("case", "events", "now", "expected", "policy"), CASES, ids=[c[0] for c in CASES])
def test_due_events(case: str, events: list[tuple[EventKind, datetime]], now: datetime,
                    expected: list[str], policy: Policy) -> None:
    assert kinds(run(events, policy), now, policy) == expected


def test_events_are_due_at_exact_business_times() -> None:
    clock = run([("customer_message", at(17, 30, day=6))])
    times = {e.key: e.at.astimezone(BERLIN) for e in due_events(clock, at(23, day=9), POLICY)}
    assert times["first_response:status_update"] == at(10, 30, day=7)
    assert times["first_response:breach"] == at(11, 30, day=7)
    assert times["first_response:escalate:3"] == at(12, 0, day=7)


def test_fired_events_never_fire_twice() -> None:
    clock = run([("customer_message", at(9))])
    first = due_events(clock, at(10, 30), POLICY)
    clock = mark_fired(clock, first)
    assert due_events(clock, at(10, 30), POLICY) == []
    assert kinds(clock, at(11), POLICY) == ["breach", "raise_priority@breach", "reassign@breach"]


def test_next_due_is_the_earliest_pending_event() -> None:
    clock = run([("customer_message", at(9))])
    assert next_due(clock, POLICY) == at(10)
    clock = mark_fired(clock, due_events(clock, at(10), POLICY))
    assert next_due(clock, POLICY) == at(10, 30)
    assert next_due(run([("customer_message", at(9)), ("resolved", at(9, 1))]), POLICY) is None


def test_next_due_is_the_earliest_unfired_threshold_whatever_has_fired() -> None:
    # next_due remembers the thresholds per policy, budget and queue: the full schedule agrees
    clock = run([("customer_message", at(9))])
    schedule = sorted(due_events(clock, at(23, day=31), POLICY), key=lambda e: e.at)
    assert len(schedule) >= 5
    for n in range(len(schedule) + 1):
        expected = schedule[n].at if n < len(schedule) else None
        assert next_due(mark_fired(clock, schedule[:n]), POLICY) == expected


def test_next_due_follows_a_reloaded_policy() -> None:
    clock = run([("customer_message", at(9))])
    assert next_due(clock, POLICY) == at(10)  # the status update at half of 2h
    later = dataclasses.replace(POLICY, sla=dataclasses.replace(POLICY.sla, status_update_at=0.9))
    assert next_due(clock, later) == at(10, 30)  # the warning at 75% comes first now
    assert next_due(clock, POLICY) == at(10)


def test_event_reasons() -> None:
    events = due_events(run([("customer_message", at(9))]), at(11, 30), POLICY)
    reasons = {e.key: e.reasons[0] for e in events}
    assert reasons["first_response:warn"] == (
        "warn: 75% of first response 2h used (1h30m, calendar eu-support)")
    assert reasons["first_response:escalate:3"] == (
        "escalate at breach+30m: page support-on-call; 125% of first response 2h used "
        "(2h30m, calendar eu-support)")


@pytest.mark.parametrize(("events", "said"), [
    ([("customer_message", at(9))], "first response 2h starts"),
    ([("customer_message", at(9)), ("customer_message", at(9, 5))], "first response 2h continues"),
    ([("customer_message", at(9)), ("agent_public_reply", at(9, 5))],
     "first response 2h met after 5m; next response 4h starts"),
    ([("customer_message", at(9)), ("agent_public_reply", at(11, 30))],
     "first response 2h missed after 2h30m; next response 4h starts"),
    ([("customer_message", at(9)), ("waiting_on_customer", at(9, 30))],
     "first response 2h paused while waiting on the customer, 30m used"),
    ([("customer_message", at(9)), ("resolved", at(9, 30))], "resolved: clock stopped"),
    ([("customer_message", at(9)), ("policy_disabled", at(9, 30))],
     "SLA policy disabled: pending warnings and escalations cleared"),
])
def test_transitions_say_what_changed(events: list[tuple[EventKind, datetime]], said: str) -> None:
    clock = run(events[:-1])
    _, reason = apply(clock, ClockEvent(*events[-1]), POLICY)
    assert reason == said


def test_enterprise_clock_runs_around_the_clock() -> None:
    clock = SlaClock(tier="enterprise", urgency="critical", queue="general")
    clock, _ = apply(clock, ClockEvent("customer_message", at(23, day=7)), POLICY)  # Saturday night
    breach = next(e for e in due_events(clock, at(23, 59, day=7), POLICY) if e.kind == "breach")
    assert breach.at == at(23, 15, day=7)
    assert clock.budget == timedelta(minutes=15)


def test_clock_round_trips_through_the_codec() -> None:
    clock = run([("customer_message", at(9))])
    clock = mark_fired(clock, due_events(clock, at(10), POLICY))
    clock, _ = apply(clock, ClockEvent("waiting_on_customer", at(10, 30)), POLICY)
    again = decode(encode(clock), SlaClock)
    assert again == clock
    assert again.used == timedelta(minutes=90) and again.paused
    assert again.fired == frozenset({"first_response:status_update"})
