"""SLA clock: pure state derived from a conversation's events, and what falls due when.

One clock per conversation. The customer's first message starts the first-response
target; every public agent reply meets the running target and starts the next-response
target afresh (so a reply also resets the "waiting for an update" timer). Waiting on the
customer pauses the clock, their reply resumes it; resolving stops it for good and
disabling the policy clears every pending warning and escalation. Time counts only in
the open hours of the calendar that applies (the tier's, else the queue's).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from msgspec.structs import replace

from processors.brain.priority import Target, tier_for
from processors.brain.slaclock import SlaClock
from processors.policy.calendar import ALWAYS_OPEN, Calendar, add_business_time, business_time_between
from processors.policy.derived import Derived
from processors.policy.model import EscalationStep, Policy, format_duration

__all__ = [
    "ClockEvent",
    "DueEvent",
    "EventKind",
    "SlaClock",
    "SlaEventKind",
    "apply",
    "due_events",
    "mark_fired",
    "next_due",
]

EventKind = Literal["customer_message", "agent_public_reply", "waiting_on_customer",
                    "customer_replied", "resolved", "policy_disabled"]
SlaEventKind = Literal["warn", "breach", "status_update", "escalate_step"]


@dataclass(frozen=True, slots=True)
class ClockEvent:
    """Something that happened to the conversation, at the time it happened."""

    kind: EventKind
    at: datetime


@dataclass(frozen=True, slots=True)
class DueEvent:
    """Something to do now: warn, breach, status_update or an escalation step."""

    kind: SlaEventKind
    at: datetime
    key: str
    reasons: tuple[str, ...]
    step: EscalationStep | None = None


def _start(clock: SlaClock, target: Target, at: datetime, policy: Policy) -> SlaClock:
    tier, _ = tier_for(clock.tier, policy)
    budgets = tier.first_response if target == "first_response" else tier.next_response
    return replace(clock, target=target, budget=budgets[clock.urgency], used=timedelta(0),
                   running_since=at, paused=False, resolved=False, fired=frozenset())


def _calendar(clock: SlaClock, policy: Policy) -> Calendar:
    # a queue dropped by a policy reload must not break the clock: count around the clock
    if clock.queue not in policy.queues:
        return ALWAYS_OPEN
    return policy.calendar_for(clock.queue, clock.tier)


def _words(clock: SlaClock) -> str:
    return f"{(clock.target or 'response').replace('_', ' ')} {format_duration(clock.budget)}"


def _customer_wrote(clock: SlaClock, event: ClockEvent, policy: Policy) -> tuple[SlaClock, str]:
    if clock.paused:
        return replace(clock, paused=False, running_since=event.at), f"{_words(clock)} resumed"
    if clock.target is not None:
        return clock, f"{_words(clock)} continues"
    target: Target = "next_response" if clock.replied else "first_response"
    started = _start(clock, target, event.at, policy)
    reopened = "reopened: " if clock.resolved else ""
    return started, f"{reopened}{_words(started)} starts"


def _elapsed(clock: SlaClock, at: datetime, policy: Policy) -> timedelta:
    if clock.running_since is None:
        return clock.used
    return clock.used + business_time_between(clock.running_since, at, _calendar(clock, policy))


def _pause(clock: SlaClock, event: ClockEvent, policy: Policy) -> tuple[SlaClock, str]:
    if not policy.sla.pause_when_waiting_on_customer:
        return clock, "waiting on customer: the policy keeps the clock running"
    if clock.running_since is None:
        return clock, "waiting on customer: no clock running"
    used = _elapsed(clock, event.at, policy)
    return replace(clock, used=used, running_since=None, paused=True), (
        f"{_words(clock)} paused while waiting on the customer, {format_duration(used)} used")


def _reply(clock: SlaClock, event: ClockEvent, policy: Policy) -> tuple[SlaClock, str]:
    if clock.resolved:
        return clock, "agent reply after resolution: no clock until the customer writes"
    met = ""
    if clock.target is not None:
        took = _elapsed(clock, event.at, policy)
        verdict = "met" if took <= clock.budget else "missed"
        met = f"{_words(clock)} {verdict} after {format_duration(took)}; "
    started = replace(_start(clock, "next_response", event.at, policy), replied=True)
    return started, f"{met}{_words(started)} starts"


def _stop(clock: SlaClock, kind: EventKind) -> tuple[SlaClock, str]:
    stopped = replace(clock, target=None, running_since=None, paused=False, fired=frozenset())
    if kind == "resolved":
        return replace(stopped, resolved=True), "resolved: clock stopped"
    return replace(stopped, disabled=True), "SLA policy disabled: pending warnings and escalations cleared"


def apply(clock: SlaClock, event: ClockEvent, policy: Policy) -> tuple[SlaClock, str]:
    """The clock after `event`, and what changed in words."""
    if clock.disabled:
        return clock, f"{event.kind}: SLA disabled for this conversation"
    if event.kind in ("resolved", "policy_disabled"):
        return _stop(clock, event.kind)
    if event.kind == "agent_public_reply":
        return _reply(clock, event, policy)
    if event.kind == "waiting_on_customer":
        return _pause(clock, event, policy)
    return _customer_wrote(clock, event, policy)


def _thresholds(clock: SlaClock, policy: Policy) -> list[tuple[str, SlaEventKind, timedelta,
                                                                EscalationStep | None]]:
    warn = clock.budget * policy.sla.warn_at
    found: list[tuple[str, SlaEventKind, timedelta, EscalationStep | None]] = [
        ("status_update", "status_update", clock.budget * policy.sla.status_update_at, None),
        ("warn", "warn", warn, None),
        ("breach", "breach", clock.budget, None),
    ]
    queue = policy.queues.get(clock.queue)
    steps = policy.escalations.get(queue.escalation, ()) if queue and queue.escalation else ()
    for i, step in enumerate(steps):
        base = warn if step.at == "warn" else clock.budget
        found.append((f"escalate:{i}", "escalate_step", base + step.offset, step))
    return found


def _reason(clock: SlaClock, kind: SlaEventKind, elapsed: timedelta, step: EscalationStep | None,
            calendar: Calendar) -> str:
    share = elapsed / clock.budget
    used = f"{share:.0%} of {_words(clock)} used ({format_duration(elapsed)}, calendar {calendar.name})"
    if step is None:
        return f"{kind.replace('_', ' ')}: {used}"
    target = f" {step.target}" if step.target else ""
    return f"escalate at {step.label}: {step.action}{target}; {used}"


def _schedule(clock: SlaClock, policy: Policy) -> list[DueEvent]:
    """Every threshold not yet fired, with the time it falls due."""
    if clock.target is None or clock.running_since is None or clock.disabled:
        return []
    calendar = _calendar(clock, policy)
    events = []
    for name, kind, elapsed, step in _thresholds(clock, policy):
        key = f"{clock.target}:{name}"
        if key in clock.fired:
            continue
        left = max(elapsed - clock.used, timedelta(0))
        at = add_business_time(clock.running_since, left, calendar)
        events.append(DueEvent(kind, at, key,
                               (_reason(clock, kind, elapsed, step, calendar),), step))
    return sorted(events, key=lambda e: e.at)


def due_events(clock: SlaClock, now: datetime, policy: Policy) -> list[DueEvent]:
    """What is due at `now` and not yet fired, earliest first."""
    return [e for e in _schedule(clock, policy) if e.at <= now]


# each threshold's key and open time, soonest first, by (target, budget, queue): every routed
# message asks, and a batch's clocks share a few budgets and queues
_Offsets = tuple[tuple[str, timedelta], ...]
_offsets_seen: Derived[tuple[str, timedelta, str], _Offsets] = Derived(1024)


def _offsets(clock: SlaClock, target: str, policy: Policy) -> _Offsets:
    """`_thresholds` as (key, elapsed), soonest first, worked out once per policy, budget and queue."""
    key = (target, clock.budget, clock.queue)
    known = _offsets_seen.get(policy, key)
    if known is not None:
        return known
    keyed = [(f"{target}:{name}", elapsed) for name, _, elapsed, _ in _thresholds(clock, policy)]
    return _offsets_seen.put(policy, key, tuple(sorted(keyed, key=lambda t: t[1])))


def next_due(clock: SlaClock, policy: Policy) -> datetime | None:
    """When the clock next has something due, for the watcher's timer; None when idle."""
    # on the hot path (every routed message): the earliest unfired threshold only, no reasons
    if clock.target is None or clock.running_since is None or clock.disabled:
        return None
    fired = clock.fired
    offsets = _offsets(clock, clock.target, policy)
    soonest = next((elapsed for key, elapsed in offsets if key not in fired), None)
    if soonest is None:
        return None
    left = max(soonest - clock.used, timedelta(0))
    return add_business_time(clock.running_since, left, _calendar(clock, policy))


def due_at(clock: SlaClock, policy: Policy) -> datetime | None:
    """When the running target falls due (is breached), in business time; None when no clock runs."""
    if clock.target is None or clock.running_since is None:
        return None
    left = max(clock.budget - clock.used, timedelta(0))
    return add_business_time(clock.running_since, left, _calendar(clock, policy))


def mark_fired(clock: SlaClock, events: list[DueEvent]) -> SlaClock:
    """The clock after `events` were acted on, so they never fire twice."""
    return replace(clock, fired=clock.fired | {e.key for e in events})
