"""Priority: tier and urgency → a priority number and the promised response times.

Urgency orders first and tier breaks ties: a critical standard message is answered
before a normal enterprise one, and at the same urgency enterprise comes before premium
before standard. Due times count only the open hours of the team's calendar.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

import msgspec

from processors.policy.calendar import add_business_time, next_open
from processors.policy.model import Policy, Tier, format_duration
from schemas.codec import isoformat

__all__ = [
    "Due", "Priority", "Target", "due", "first_response_due", "next_response_due", "priority", "tier_for",
]

Target = Literal["first_response", "next_response"]


class Priority(msgspec.Struct, frozen=True):
    """A priority number (1 is the most pressing) and why."""

    number: int
    reasons: tuple[str, ...]


class Due(msgspec.Struct, frozen=True):
    """When a response is due, the target it came from, the calendar counted in, and why."""

    at: datetime
    target: timedelta
    calendar: str
    reasons: tuple[str, ...]


def tier_for(name: str | None, policy: Policy) -> tuple[Tier, tuple[str, ...]]:
    """The policy's tier of that name, or the default tier with a reason saying so."""
    if name is not None and name in policy.tiers:
        return policy.tiers[name], ()
    default = policy.tiers[policy.default_tier]
    why = f"unknown tier {name!r}" if name else "no tier known for this customer"
    return default, (f"tier={default.name}: {why}, default tier",)


def priority(tier: str, urgency: str, policy: Policy) -> Priority:
    """The priority number of a tier and urgency: urgency first, then tier rank."""
    resolved, reasons = tier_for(tier, policy)
    levels = policy.urgency.levels
    ranked = policy.tiers_by_rank
    urgency_pos = len(levels) - 1 - policy.urgency.rank(urgency)
    tier_pos = ranked.index(resolved.name)
    number = urgency_pos * len(ranked) + tier_pos + 1
    return Priority(number, (*reasons, (
        f"priority={number}: urgency {urgency} ({urgency_pos + 1} of {len(levels)}, most urgent "
        f"first), then tier {resolved.name} ({tier_pos + 1} of {len(ranked)}, highest rank first)")))


def due(target: Target, start: datetime, *, tier: str, urgency: str, queue: str, policy: Policy) -> Due:
    """When the `target` response to a message at `start` is due, in business hours."""
    resolved, reasons = tier_for(tier, policy)
    budget = (resolved.first_response if target == "first_response" else resolved.next_response)[urgency]
    calendar = policy.calendar_for(queue, resolved.name)
    at = add_business_time(start, budget, calendar)
    kind = "around the clock" if calendar.always_open else "business hours"
    whose = f" of tier {resolved.name}" if resolved.calendar else f" of queue {queue}"
    words = target.replace("_", " ")
    found = [*reasons, f"tier={resolved.name}: {words} {format_duration(budget)} for urgency "
             f"{urgency} ({kind}, calendar {calendar.name}{whose}), due {isoformat(at)}"]
    opens = next_open(start, calendar)
    if opens != start:
        opens = opens.astimezone(calendar.timezone)
        found.append(f"calendar {calendar.name} is closed at receipt; the clock starts "
                     f"{opens:%a %Y-%m-%d %H:%M %Z}")
    return Due(at, budget, calendar.name, tuple(found))


def first_response_due(received_at: datetime, tier: str, urgency: str, queue: str,
                       policy: Policy) -> Due:
    """When the first response to a new conversation is due."""
    return due("first_response", received_at, tier=tier, urgency=urgency, queue=queue, policy=policy)


def next_response_due(replied_at: datetime, tier: str, urgency: str, queue: str,
                      policy: Policy) -> Due:
    """When the next response is due after an agent's reply."""
    return due("next_response", replied_at, tier=tier, urgency=urgency, queue=queue, policy=policy)

