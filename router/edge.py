"""The router's side of the connector seam: what pushed routes may do, done with Kafka and Redis.

Every failure of Kafka or Redis becomes a TransientError whose reason is safe to show a
caller (no host, no port); the cause is logged. The HTTP layer answers it 503 with
Retry-After.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

import msgspec
from aiohttp import web
from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisClusterException, RedisError

from connectors.routes import HoldState, Outlook, Refusal
from processors.brain.acknowledge import prospect
from processors.intake.identify import Binding, parse_identity
from processors.metrics import MESSAGES_IN
from processors.policy.model import Policy
from processors.send.replies import reply_to
from processors.stores.cards import CardStore
from processors.stores.history import HistoryStore
from processors.stores.identities import IdentityStore
from processors.stores.tags import Tags
from router.held import HeldStore, run_timer
from router.http.integrations import Denied, Integrations, Scope
from router.settings import Settings
from schemas.codec import decode, encode
from schemas.conversation import ConversationCard, ConversationEvent, LifecycleKind
from schemas.errors import TransientError
from schemas.inbound import InboundMessage
from schemas.outbound import DeliveryReceipt
from schemas.topics import CONVERSATION, DELIVERY, INBOUND, OUTBOUND

__all__ = ["Publisher", "RouterEdge"]

log = logging.getLogger(__name__)
_binding = msgspec.json.Decoder(Binding)
Publisher = Callable[[str, bytes, bytes], Awaitable[None]]
T = TypeVar("T")
HELD_RELEASED = Counter("sb_held_released_total", "Held messages accepted at their deadline, not settled")


class RouterEdge:
    """Implements connectors.routes.Edge for the routes this process serves."""

    def __init__(self, settings: Settings, publish: Publisher, redis: Callable[[], Redis],
                 policy: Callable[[], Policy], access: Integrations, *, timeout: float = 2.0,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 release_every: float = 1.0) -> None:
        self._settings = settings
        self._publish = publish
        self._redis = redis
        self._policy = policy
        self._access = access
        # reads only: the card's TTL is the writers' business
        tags = Tags(settings.kafka_partitions)
        self._cards = CardStore(f"{settings.topic_prefix}sb", ttl_seconds=0, tags=tags)
        self._ns = f"{settings.topic_prefix}sb"
        self._ids = IdentityStore(self._ns, HistoryStore(self._ns, tags=tags))
        self._timeout = timeout
        self._clock = clock
        self._held = HeldStore(self._ns, ttl_seconds=settings.dedupe_ttl_seconds,
                               cluster=settings.redis_cluster)
        self._release_every = release_every

    def caller(self, request: web.Request, scope: str) -> str:
        """The integration a bearer token names, if it may use `scope`; else a 401/403 Refusal."""
        try:
            return self._access.authorize(request.headers, cast(Scope, scope)).name
        except Denied as e:
            raise Refusal(e.status, e.code, e.message, **({"scope": e.scope} if e.scope else {})) from e

    async def accept(self, message: InboundMessage) -> None:
        """A customer's message onto the inbound topic, keyed by its thread."""
        await self._put(INBOUND.named(self._settings.topic_prefix), message.thread_key, encode(message),
                        "could not hand the message to Kafka", event_id=message.event_id)
        MESSAGES_IN.labels(message.channel, message.channel).inc()

    def destinations(self, kind: str) -> Mapping[str, Any]:
        """The policy's destinations of one tool kind, with their typed settings."""
        return {d.name: d.config for d in self._policy().destinations.values() if d.kind == kind}

    async def outlook(self, channel: str, identity: str) -> Outlook:
        """The acknowledgement's promise for this customer now: tier from the directory, else default."""
        redis = self._redis()
        try:
            async with asyncio.timeout(self._timeout):
                bound = await redis.get(self._ids.identity_key(parse_identity(identity)))
                customer = None if bound is None else _binding.decode(bound).customer_id
                pipe = redis.pipeline(transaction=False)
                if customer is not None:
                    pipe.hget(self._ids.profile_key(customer), "tier")
                pipe.hgetall(f"{self._ns}:backlog")
                *tier, backlog = await pipe.execute()
        except (TimeoutError, RedisError, RedisClusterException) as e:
            log.warning("customer store unavailable", extra={"reason": repr(e)})
            raise TransientError("customer store unavailable") from e
        known = tier[0].decode() if tier and tier[0] is not None else None
        seen = prospect(channel=channel, tier=known, policy=self._policy(), now=self._clock(),
                        backlog={k.decode(): int(v) for k, v in backlog.items()})
        return Outlook(tier=seen.tier, open_now=seen.open_now, opens=seen.opens, expected=seen.expected,
                       opens_text=seen.opens_text, expected_text=seen.expected_text,
                       reply_mode=seen.reply_mode)

    async def conversation_of(self, destination: str, reference: str) -> ConversationCard | None:
        """The card of the conversation a tool's thread belongs to."""
        redis = self._redis()
        try:
            async with asyncio.timeout(self._timeout):
                conversation_id = await self._cards.conversation_of(redis, destination, reference)
                return await self._cards.get(redis, conversation_id) if conversation_id else None
        except (TimeoutError, RedisError, RedisClusterException) as e:
            log.warning("conversation store unavailable", extra={"reason": repr(e)})
            raise TransientError("conversation store unavailable") from e

    async def reply(self, card: ConversationCard, *, text: str, author: str, reply_id: str) -> None:
        """The agent's answer on the customer's channel, for the send stage."""
        message = reply_to(card, text=text, author=author, reply_id=reply_id, now=self._clock())
        await self._put(OUTBOUND.named(self._settings.topic_prefix), card.conversation_id, encode(message),
                        "Kafka did not take the reply", reply_id=reply_id)

    async def note(self, card: ConversationCard, *, event_id: str, text: str, author: str,
                   at: datetime, source: str) -> None:
        """An internal note, as a conversation event keyed by customer like every lifecycle event."""
        await self._event(card, "note", event_id=event_id, text=text, author=author, at=at, source=source)

    async def called_back(self, card: ConversationCard, *, event_id: str, text: str | None, author: str,
                          at: datetime, source: str) -> None:
        """The call back made, as a conversation event the brain applies like a sent reply."""
        await self._event(card, "called_back", event_id=event_id, text=text, author=author, at=at,
                          source=source)

    async def transfer(self, card: ConversationCard, *, event_id: str, queue: str, text: str | None,
                       author: str, at: datetime, source: str) -> None:
        """The conversation moved to `queue`, checked against the live policy as the API checks it."""
        queues = self._policy().queues
        if queue not in queues:
            raise Refusal(422, "unknown_queue", f"the policy has no queue {queue!r}; "
                          f"it has {', '.join(sorted(queues))}")
        if queue == card.queue:
            raise Refusal(409, "same_queue", f"the conversation is already in queue {queue}")
        if card.status == "closed":
            raise Refusal(409, "closed", "the conversation is closed")
        await self._event(card, "transferred", event_id=event_id, text=text, author=author, at=at,
                          source=source, queue=queue)

    async def _event(self, card: ConversationCard, kind: LifecycleKind, *, event_id: str,
                     text: str | None, author: str, at: datetime, source: str,
                     queue: str | None = None) -> None:
        """One conversation event by an agent, keyed by customer like every lifecycle event."""
        # a transfer names the new queue; every other event the one it happened in
        event = ConversationEvent(event_id=event_id, conversation_id=card.conversation_id,
                                  customer_id=card.customer_id, kind=kind, at=at, author=author,
                                  text=text, queue=queue or card.queue, source=source)
        await self._put(CONVERSATION.named(self._settings.topic_prefix), card.customer_id, encode(event),
                        f"Kafka did not take the {kind} event", event_id=event_id)

    async def receipt(self, receipt: DeliveryReceipt) -> None:
        """A reply's receipt, which dispatch shows in the agent's tool."""
        await self._put(DELIVERY.named(self._settings.topic_prefix), receipt.conversation_id,
                        encode(receipt), "Kafka did not take the receipt", reply_id=receipt.reply_id)

    async def hold(self, key: str, message: InboundMessage, *, after: timedelta,
                   replace: bool = True) -> HoldState:
        """Keep a message under `key` for `after`; the timer accepts it then, unless settled."""
        until = (self._clock() + after).timestamp()
        return await self._held_call(self._held.hold(self._redis(), key, encode(message), until,
                                                     replace=replace))

    async def holding(self, key: str) -> InboundMessage | None:
        """What `key` holds while it waits, to build on; None when new or final."""
        raw = await self._held_call(self._held.peek(self._redis(), key))
        return None if raw is None else decode(raw, InboundMessage)

    async def settle(self, key: str, message: InboundMessage) -> HoldState:
        """Accept `message` now in place of what `key` holds, unless the key is already final."""
        raw = encode(message)
        lease = self._clock().timestamp() + self._held.lease
        # held with a short lease first: a kill before the publish leaves it to the timer
        before = await self._held_call(self._held.hold(self._redis(), key, raw, lease))
        if before in ("settled", "released"):
            return before
        await self.accept(message)
        await self._held_call(self._held.done(self._redis(), key, raw, "settled"))
        return before

    async def release_due(self) -> int:
        """Accept every held message past its deadline; how many."""
        redis = self._redis()
        due = await self._held_call(self._held.due(redis, self._clock().timestamp()))
        for key, raw in due:
            message = decode(raw, InboundMessage)
            await self.accept(message)
            if await self._held_call(self._held.done(redis, key, raw, "released")):
                HELD_RELEASED.inc()
                log.info("held message released at its deadline",
                         extra={"event_id": message.event_id, "channel": message.channel})
        return len(due)

    async def releasing(self, _: web.Application) -> AsyncIterator[None]:
        """The timer that releases held messages, for as long as the HTTP server runs."""
        task = asyncio.create_task(run_timer(self.release_due, self._release_every), name="held-release")
        yield
        task.cancel()
        # a tick stuck on a dead socket must not hold up the stop: what is due stays due
        await asyncio.wait({task}, timeout=self._timeout)

    async def _held_call(self, call: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self._timeout):
                return await call
        except (TimeoutError, RedisError, RedisClusterException) as e:
            log.warning("held items store unavailable", extra={"reason": repr(e)})
            raise TransientError("held items store unavailable") from e

    async def _put(self, topic: str, key: str, value: bytes, refusal: str, **ids: str) -> None:
        try:
            await self._publish(topic, key.encode(), value)
        except TransientError as e:
            log.warning("publish failed", extra={**ids, "topic": topic, "reason": e.reason})
            raise TransientError(refusal) from e
