"""The lifecycle watch: follow-ups and closes that resolving planned, fired when due.

The brain plans them in `<ns>:lifecycle-due` (sorted set of `customer|conversation|kind`
scored by the due time) in its write round trip, and cancels them there when the customer
writes. One worker (the leader) ticks: it takes what is due by moving it to a lease score
in one Lua call, so a second leader finds nothing; reads the conversations; publishes a
follow-up (an `OutboundMessage` and a `follow_up_sent` event) or a `closed` event; and
only once Kafka has them removes what it took. A tick that dies half-way leaves its lease
to expire and the next one fires again: the reply id and event ids come from the
conversation and its resolve time, so the send stage and the brain recognise a repeat.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from redis.asyncio import Redis

from processors.brain.lifecycle import DueKind, follow_up_text
from processors.metrics import REDIS_ROUNDTRIPS, UNREACHABLE
from processors.policy.model import Policy, format_duration
from processors.stage import Output
from processors.stores.clocks import ClockStore, SlaEntry
from processors.stores.history import ConversationSummary, HistoryStore
from processors.stores.tags import pipeline
from schemas.codec import encode
from schemas.conversation import ConversationEvent
from schemas.ids import follow_up_event_id
from schemas.outbound import OutboundMessage
from schemas.topics import CONVERSATION, OUTBOUND

__all__ = ["LifecycleSchedule", "LifecycleWatch", "Planned", "Produce", "Taken", "fire"]

log = logging.getLogger(__name__)
STAGE = "lifecycle"
_KINDS: dict[str, DueKind] = {"follow_up": "follow_up", "close": "close"}

# take the due members (at most ARGV[2]) by moving them to the lease score ARGV[3]
_TAKE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[3], member) end
return due
"""
# remove taken members still at their lease score: one the brain planned again meanwhile stays
_SETTLE = """
local lease = tonumber(ARGV[1])
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == lease then redis.call('ZREM', KEYS[1], ARGV[i]) end
end
return #ARGV - 1
"""
# ZADD or ZREM (score "") each member; ARGV = score, member pairs
_PLAN = """
for i = 1, #ARGV, 2 do
  if ARGV[i] == '' then
    redis.call('ZREM', KEYS[1], ARGV[i + 1])
  else
    redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return #ARGV / 2
"""


@dataclass(frozen=True, slots=True)
class Planned:
    """One conversation's follow-up or close: when it falls due, or None to cancel it."""

    customer_id: str
    conversation_id: str
    kind: DueKind
    at: datetime | None

    @property
    def member(self) -> str:
        """The sorted-set member naming it."""
        return f"{self.customer_id}|{self.conversation_id}|{self.kind}"


def _parse(member: bytes) -> Planned | None:
    customer, _, rest = member.decode().partition("|")
    conversation, _, kind = rest.partition("|")
    due = _KINDS.get(kind)
    return Planned(customer, conversation, due, None) if due and customer and conversation else None


@dataclass(frozen=True, slots=True)
class Taken:
    """What one tick took, and the lease score that marks it as taken."""

    planned: list[Planned]
    members: list[bytes]
    lease: float


class LifecycleSchedule:
    """Key `<ns>:lifecycle-due`; the brain queues plans on its pipeline, the watch takes them."""

    def __init__(self, namespace: str, lease_seconds: float = 60.0) -> None:
        self.key = f"{namespace}:lifecycle-due"
        self._lease = lease_seconds

    def queue_write(self, pipe: Any, plans: Sequence[Planned]) -> None:
        """Queue adding and cancelling plans as one command, if any."""
        if not plans:
            return
        args: list[str] = []
        for p in plans:
            args += ("" if p.at is None else repr(p.at.timestamp()), p.member)
        pipe.eval(_PLAN, 1, self.key, *args)

    async def take(self, redis: Redis, now: datetime, limit: int) -> Taken:
        """Lease what is due at `now` (oldest first): a concurrent tick cannot take it too."""
        lease = now.timestamp() + self._lease
        members = cast(list[bytes], await redis.eval(
            _TAKE, 1, self.key, repr(now.timestamp()), str(limit), repr(lease)))
        planned = [p for m in members if (p := _parse(m)) is not None]
        return Taken(planned, members, lease)

    async def settle(self, redis: Redis, taken: Taken) -> None:
        """Remove what a tick took once Kafka has what it produced."""
        await redis.eval(_SETTLE, 1, self.key, repr(taken.lease), *taken.members)


def _follow_up(planned: Planned, summary: ConversationSummary, entry: SlaEntry, policy: Policy,
               now: datetime) -> tuple[list[Output], str]:
    if summary.follow_up_at is not None:
        return [], "follow-up already sent"
    text = follow_up_text(policy, channel=entry.channel, tier=entry.clock.tier, name=entry.name,
                          reference=summary.conversation_id)
    if text is None:
        return [], f"no follow-up template for channel {entry.channel}"
    unreachable = policy.reach.unreachable(entry.channel, entry.recipient.kind)
    if unreachable is not None:
        UNREACHABLE.labels("follow_up", entry.channel, entry.recipient.kind).inc()
        return [], f"no follow-up: {unreachable}"
    message = OutboundMessage(
        reply_id=_id("fol_", summary), conversation_id=summary.conversation_id,
        channel=entry.channel, recipient=entry.recipient, kind="follow_up", text=text,
        created_at=now, subject=entry.subject, author="switchboard", in_reply_to=entry.in_reply_to,
        customer_id=planned.customer_id, queue=summary.queue)
    sent = ConversationEvent(
        event_id=_id("fus_", summary), conversation_id=summary.conversation_id,
        customer_id=planned.customer_id, kind="follow_up_sent", at=now, author="switchboard",
        text=text[:280], queue=summary.queue, source="lifecycle", reply_id=message.reply_id)
    return [Output(OUTBOUND, summary.conversation_id.encode(), encode(message)),
            Output(CONVERSATION, planned.customer_id.encode(), encode(sent))], "follow-up sent"


def fire(planned: Planned, summary: ConversationSummary | None, entry: SlaEntry | None,
         policy: Policy, now: datetime) -> tuple[list[Output], str]:
    """What one due plan produces now, and why: pure."""
    if summary is None or entry is None:
        return [], "conversation no longer known to this customer"
    if summary.status != "resolved":
        return [], f"conversation is {summary.status}: nothing planned applies"
    if planned.kind == "follow_up":
        return _follow_up(planned, summary, entry, policy, now)
    closed = ConversationEvent(
        event_id=_id("cls_", summary), conversation_id=summary.conversation_id,
        customer_id=planned.customer_id, kind="closed", at=now, author="switchboard",
        text=f"no word from the customer within {format_duration(policy.lifecycle.close_after)} "
             "of resolution", queue=summary.queue, source="lifecycle")
    return [Output(CONVERSATION, planned.customer_id.encode(), encode(closed))], "closed"


Produce = Callable[[Sequence[Output]], Awaitable[None]]


class LifecycleWatch:
    """Takes due plans, reads their conversations, produces, then settles: three round trips."""

    def __init__(self, redis: Redis, schedule: LifecycleSchedule, history: HistoryStore,
                 clocks: ClockStore, policy: Callable[[], Policy]) -> None:
        self._redis = redis
        self._schedule = schedule
        self._history = history
        self._clocks = clocks
        self._policy = policy

    async def tick(self, now: datetime, produce: Produce, limit: int = 500) -> list[Output]:
        """Fire everything due at `now` through `produce`; returns what was produced."""
        taken = await self._schedule.take(self._redis, now, limit)
        if not taken.members:
            REDIS_ROUNDTRIPS.labels(STAGE).inc()
            return []
        customers = sorted({p.customer_id for p in taken.planned})
        pipe = pipeline(self._redis)  # split per hash tag on a Cluster
        self._clocks.queue_read(pipe, customers)
        self._history.queue_read_recent(pipe, customers)
        clocks, recent = await pipe.execute() if customers else ([], [])
        entries = dict(zip(customers, self._clocks.parse_read(clocks), strict=True))
        summaries = {c: {s.conversation_id: s for s in found} for c, found in
                     zip(customers, self._history.parse_recent(recent), strict=True)}
        policy = self._policy()
        outputs: list[Output] = []
        for p in taken.planned:
            produced, why = fire(p, summaries[p.customer_id].get(p.conversation_id),
                                 entries[p.customer_id].get(p.conversation_id), policy, now)
            outputs += produced
            log.info("lifecycle " + p.kind, extra={"conversation_id": p.conversation_id, "reason": why})
        await produce(outputs)
        await self._schedule.settle(self._redis, taken)
        REDIS_ROUNDTRIPS.labels(STAGE).inc(3)
        return outputs


def _id(prefix: str, summary: ConversationSummary) -> str:
    # from the conversation and its resolve time: a second tick for the same resolve is a repeat
    return follow_up_event_id(prefix, summary.conversation_id,
                              (summary.resolved_at or summary.last_at).isoformat())
