"""Route: place a message in a queue with a priority, a due time and the reasons.

Until a policy file exists every message goes to one default queue; the shape of the
decision (queue, priority, tier, urgency, due, reasons) is the one later policies fill.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from schemas.inbound import InboundMessage
from schemas.routed import Decision

__all__ = ["DefaultPolicy", "RouteDecision", "decide"]


@dataclass(frozen=True, slots=True)
class DefaultPolicy:
    """The placeholder policy: one queue, one tier, one first-response target."""

    queue: str = "default"
    tier: str = "standard"
    urgency: str = "normal"
    priority: int = 3
    first_response: timedelta = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """Where a message goes and why."""

    queue: str
    priority: int
    tier: str
    urgency: str
    first_response_due: datetime
    decision: Decision


def decide(message: InboundMessage, policy: DefaultPolicy) -> RouteDecision:
    """Route one message under `policy`, returning the reasons with the outcome."""
    due = message.received_at + policy.first_response
    reasons = (
        f"tier={policy.tier}: no customer directory yet, default tier",
        f"urgency={policy.urgency}: no urgency rules yet",
        f"queue={policy.queue}: default policy routes every channel here",
        f"first response due {due.isoformat()} ({policy.first_response} after receipt)",
    )
    return RouteDecision(
        queue=policy.queue,
        priority=policy.priority,
        tier=policy.tier,
        urgency=policy.urgency,
        first_response_due=due,
        decision=Decision(stage="route", outcome=policy.queue, reasons=reasons),
    )
