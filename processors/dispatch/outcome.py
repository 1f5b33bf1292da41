"""What a delivery attempt leaves behind: the handoff it carried, its receipt, the alert.

A delivery no destination took becomes a failed HandoffReceipt, a dead letter with the
original record and the reason, an error log and `switchboard_handoff_failed_total`
labelled with the intended destination: that counter is what alerting watches.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from msgspec.structs import replace
from prometheus_client import Counter

from processors.dispatch.deliver import Outcome
from processors.dispatch.plan import HandoffAction, Plan
from processors.metrics import DEADLETTERED
from processors.stage import Output, dead_letter
from schemas.codec import encode
from schemas.handoff import Handoff, HandoffReceipt
from schemas.ids import delivery_id
from schemas.topics import HANDOFF

__all__ = ["HANDOFF_FAILED", "HANDOFF_FALLBACK", "STAGE", "Result", "Target", "channel_of", "context",
           "handoff_for", "outputs_for"]

STAGE = "dispatch"
log = logging.getLogger("processors.dispatch")
HANDOFF_FAILED = Counter("switchboard_handoff_failed", "Handoffs no destination took, fallbacks included",
                         ["destination"])
HANDOFF_FALLBACK = Counter("switchboard_handoff_fallback", "Handoffs a fallback took for a destination",
                           ["destination"])


@dataclass(frozen=True, slots=True)
class Target:
    """One (plan, intended destination) after its claim: deliver, deliver again, or skip."""

    plan: Plan
    destination: str
    verdict: HandoffAction
    reason: str
    # what the delivery's key held before the claim
    previous: bytes | None = None


@dataclass(frozen=True, slots=True)
class Result:
    """A target and what became of it."""

    target: Target
    outcome: Outcome


def handoff_for(plan: Plan, threads: Mapping[str, str], destination: str) -> Handoff:
    """The handoff of one plan to one destination, with the conversation's threads so far."""
    item, card = plan.item, plan.card
    assert card is not None  # a plan without a card is skipped before delivery
    return Handoff(delivery_id=delivery_id(item.source, destination), destination=destination,
                   event=item.event, card=replace(card, destinations=dict(threads)),
                   thread=threads.get(destination, ""), routed=item.routed, receipt=item.receipt,
                   text=item.text)


def outputs_for(result: Result, now: datetime) -> list[Output]:
    """The handoff receipt of one delivery, and a dead letter (and the alert) when nothing took it."""
    target, o = result.target, result.outcome
    item = target.plan.item
    reason = o.reason
    if target.verdict in (HandoffAction.REDELIVER, HandoffAction.REPEAT):
        reason = target.reason + (f"; {reason}" if reason else "")
    receipt = HandoffReceipt(
        delivery_id=delivery_id(item.source, o.actual), conversation_id=item.conversation_id,
        event_id=item.event_id, destination=o.actual, intended=o.intended,
        status="delivered" if o.delivered else "failed", attempts=o.attempts, at=now, reason=reason)
    outputs = [Output(HANDOFF, item.conversation_id.encode(), encode(receipt))]
    extra = context(target.plan, o.intended, reason)
    if not o.delivered:
        HANDOFF_FAILED.labels(o.intended).inc()
        DEADLETTERED.labels(STAGE, channel_of(target.plan)).inc()
        log.error("handoff failed: no destination took it", extra=extra)
        outputs.append(dead_letter(item.record, f"handoff to {o.intended} failed: {reason}", stage=STAGE))
    elif o.actual != o.intended:
        HANDOFF_FALLBACK.labels(o.intended).inc()
        # a destination not set up here was reported once at start; one that failed is news
        log.log(logging.INFO if o.unserved else logging.WARNING, "handoff delivered to a fallback",
                extra={**extra, "actual": o.actual})
    else:
        log.info("handoff delivered", extra=extra)
    return outputs


def context(plan: Plan, destination: str, reason: str | None) -> dict[str, Any]:
    """The log fields of one delivery."""
    item = plan.item
    return {"event_id": item.event_id, "conversation_id": item.conversation_id,
            "delivery_id": delivery_id(item.source, destination), "destination": destination,
            "reason": reason}


def channel_of(plan: Plan) -> str:
    """The metrics label of a plan: its conversation's channel."""
    return plan.card.channel if plan.card is not None else "unknown"
