"""The SLA watcher: what has fallen due becomes events, status updates and escalations.

Runs on one worker (the leader) on a timer: takes due clocks from Redis, lets the pure
`sla.due_events` say what fired, publishes an `SlaEvent` for each (escalation steps
carry the policy's action and target for the agents' tools; a reassignment is also a
`transferred` event, so the conversation really moves queue), sends the customer a
truthful "we haven't forgotten you" update when one is due, and stores the clocks back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import msgspec
from prometheus_client import Counter
from redis.asyncio import Redis

from processors import metrics
from processors.brain import acknowledge, sla
from processors.metrics import REDIS_ROUNDTRIPS
from processors.policy.model import Policy
from processors.stage import Output
from processors.stores.clocks import ClockStore, SlaEntry, Write
from processors.stores.tags import pipeline
from schemas.codec import encode
from schemas.conversation import ConversationEvent
from schemas.ids import sla_event_id
from schemas.outbound import OutboundMessage
from schemas.sla import SlaEvent, SlaKind
from schemas.topics import CONVERSATION, OUTBOUND, SLA

__all__ = ["SlaWatch", "fire"]

log = logging.getLogger(__name__)
FIRED = Counter("sb_sla_events_total", "SLA events fired", ["kind"])
_KINDS: dict[str, SlaKind] = {"warn": "warn", "breach": "breach", "status_update": "status_update",
                              "escalate_step": "escalate"}


def _status_update(entry: SlaEntry, due: datetime, policy: Policy, now: datetime
                   ) -> OutboundMessage | None:
    clock = entry.clock
    decided = acknowledge.status_update(
        channel=entry.channel, recipient=entry.recipient.kind, name=entry.name,
        reference=entry.conversation_id, tier=clock.tier,
        queue=clock.queue, backlog=0, handling_time=None, due=due, policy=policy, now=now)
    if decided.ack is None:
        if decided.unreachable:
            metrics.UNREACHABLE.labels("status_update", entry.channel, entry.recipient.kind).inc()
            log.info("no status update", extra={"conversation_id": entry.conversation_id,
                                                "reason": decided.reasons[0]})
        return None
    return OutboundMessage(
        reply_id=sla_event_id(entry.conversation_id, f"status-update@{due.isoformat()}", "upd_"),
        conversation_id=entry.conversation_id, channel=entry.channel, recipient=entry.recipient,
        kind="status_update", text=decided.ack.text, created_at=now, subject=entry.subject,
        author="switchboard", in_reply_to=entry.in_reply_to)


def fire(entry: SlaEntry, now: datetime, policy: Policy) -> tuple[Write, list[Output]]:
    """What one due clock produces now, and the clock to store back: pure."""
    events = sla.due_events(entry.clock, now, policy)
    target = entry.clock.target or "first_response"
    outputs: list[Output] = []
    breach_at = sla.due_at(entry.clock, policy) or now
    for e in events:
        kind = _KINDS[e.kind]
        FIRED.labels(kind).inc()
        step = e.step
        event = SlaEvent(
            event_id=sla_event_id(entry.conversation_id, e.key), kind=kind,
            conversation_id=entry.conversation_id,
            customer_id=entry.customer_id, target=target, due_at=breach_at, at=e.at,
            reasons=e.reasons, action=step.action if step else None,
            action_target=step.target if step else None)
        outputs.append(Output(SLA, entry.customer_id.encode(), encode(event)))
        if step is not None and step.action == "reassign" and step.target:
            moved = _reassigned(entry, e.key, step.target, e.at, e.reasons)
            outputs.append(Output(CONVERSATION, entry.customer_id.encode(), encode(moved)))
        if e.kind == "status_update" and (update := _status_update(entry, breach_at, policy, now)):
            outputs.append(Output(OUTBOUND, entry.conversation_id.encode(), encode(update)))
        log.info("sla " + kind, extra={"conversation_id": entry.conversation_id, "key": e.key})
    clock = sla.mark_fired(entry.clock, events)
    return Write(msgspec.structs.replace(entry, clock=clock), sla.next_due(clock, policy)), outputs


def _reassigned(entry: SlaEntry, key: str, queue: str, at: datetime,
                reasons: tuple[str, ...]) -> ConversationEvent:
    """The escalation's move to another queue, as the brain applies any transfer."""
    return ConversationEvent(
        event_id=sla_event_id(entry.conversation_id, key, "esc_"), conversation_id=entry.conversation_id,
        customer_id=entry.customer_id, kind="transferred", at=at, queue=queue, source="sla",
        text="escalated: " + "; ".join(reasons) if reasons else "escalated")


class SlaWatch:
    """Takes what is due from Redis, fires it, stores the clocks back: two round trips."""

    def __init__(self, redis: Redis, clocks: ClockStore, policy: Callable[[], Policy]) -> None:
        self._redis = redis
        self._clocks = clocks
        self._policy = policy

    async def tick(self, now: datetime, limit: int = 500) -> list[Output]:
        """Fire everything due at `now` (at most `limit` clocks); returns what to publish."""
        due = await self._clocks.due(self._redis, now, limit)
        if not due:
            return []
        policy = self._policy()
        writes, outputs = [], []
        for entry in due:
            write, produced = fire(entry, now, policy)
            writes.append(write)
            outputs += produced
        pipe = pipeline(self._redis)  # split per hash tag on a Cluster
        self._clocks.queue_write(pipe, writes)
        await pipe.execute()
        REDIS_ROUNDTRIPS.labels("sla").inc(2)
        return outputs
