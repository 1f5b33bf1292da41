"""Send: every message to a customer sent at most once, guarded, and a receipt for each.

The reply id is claimed in Redis (`sending:<record>`) before the send and marked
`sent:`/`failed:`/`held:` after. A message whose claim is already final is a duplicate
and is skipped. A claim still `sending` means an earlier attempt died between claim and
result: the send may or may not have happened, so it is reported `uncertain` for a
person to check, never blindly sent again.

An agent's reply first passes the policy's reply guard: a `hold` rule keeps it from the
customer (the receipt tells the agent why), a `warn` rule lets it go with the flag. Once
an agent's reply is sent, an `agent_reply` event on `sb.conversation.v1` tells the brain,
which stops the first-response clock; nothing else may claim an answer was given.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

from redis.asyncio import Redis

from processors.metrics import REDIS_ROUNDTRIPS, Tally
from processors.policy.model import Policy
from processors.send import guard
from processors.send.ratelimit import RateLimits
from processors.stage import Output, Record, decode_records
from processors.stores.bulk import queue_claim_many, queue_set_many
from processors.stores.cards import CardStore
from schemas.codec import encode
from schemas.conversation import ConversationCard, ConversationEvent
from schemas.errors import SwitchboardError
from schemas.outbound import DeliveryReceipt, DeliveryStatus, GuardFlag, OutboundMessage
from schemas.topics import CONVERSATION, DELIVERY

__all__ = ["SendAction", "SendFn", "SendStage", "decide"]

STAGE = "send"
log = logging.getLogger(__name__)
SendFn = Callable[[OutboundMessage], Awaitable[DeliveryReceipt]]
_SOLVED = frozenset({"resolved", "closed"})


class SendAction(Enum):
    """What to do with one outbound message after its claim."""

    SEND = "send"
    DUPLICATE = "duplicate"
    UNCERTAIN = "uncertain"


def decide(previous: bytes | None) -> tuple[SendAction, str]:
    """Judge one claim from what the reply's key held before it, with the reason."""
    if previous is None:
        return SendAction.SEND, "first attempt"
    state = previous.decode()
    if state.startswith("sending:"):
        return SendAction.UNCERTAIN, (f"an earlier attempt ({state[8:]}) stopped between claim and "
                                   "result; it may have been sent, so it is not sent again")
    return SendAction.DUPLICATE, f"already {state.partition(':')[0]}"


@dataclass(frozen=True, slots=True)
class _Claimed:
    record: Record
    message: OutboundMessage
    verdict: SendAction
    reason: str
    card: ConversationCard | None = None


class SendStage:
    """Claims a batch of outbound messages in one round trip, sends, records the results."""

    def __init__(self, redis: Redis, senders: Mapping[str, SendFn], *, namespace: str,
                 ttl_seconds: int, policy: Callable[[], Policy], cards: CardStore,
                 rates: Mapping[str, float] | None = None, concurrency: int = 16) -> None:
        self._redis = redis
        self._senders = senders
        self._prefix = f"{namespace}:reply:"
        self._ttl = ttl_seconds
        self._policy = policy
        self._cards = cards
        self._rates = RateLimits(rates or {})
        self._limit = asyncio.Semaphore(concurrency)

    async def process(self, records: Sequence[Record]) -> list[Output]:
        """Send what is ours to send in this batch; returns receipts, events and dead letters."""
        outputs: list[Output] = []
        decoded = decode_records(records, OutboundMessage, STAGE, outputs)
        if not decoded:
            return outputs
        claimed = await self._claim(decoded)
        receipts = await asyncio.gather(*(self._one(c) for c in claimed))
        tally = Tally(STAGE)
        for c in claimed:
            tally.seen[c.message.channel] += 1
            counts = tally.dropped if c.verdict is SendAction.DUPLICATE else tally.passed
            counts[c.message.channel] += 1
        tally.report()
        final = [(self._prefix + c.message.reply_id, f"{receipt.status}:{receipt.reason or ''}")
                 for c, receipt in zip(claimed, receipts, strict=True)
                 if receipt is not None and c.verdict is SendAction.SEND]
        if final:
            pipe = self._redis.pipeline(transaction=False)
            queue_set_many(pipe, final, self._ttl)
            await pipe.execute()
            REDIS_ROUNDTRIPS.labels(STAGE).inc()
        for c, receipt in zip(claimed, receipts, strict=True):
            if receipt is None:
                continue
            outputs.append(Output(DELIVERY, receipt.conversation_id.encode(), encode(receipt)))
            event = _answered(c, receipt)
            if event is not None:
                outputs.append(Output(CONVERSATION, event.customer_id.encode(), encode(event)))
        return outputs

    async def _claim(self, decoded: Sequence[tuple[Record, OutboundMessage]]) -> list[_Claimed]:
        """Claim every reply and read the conversations' cards, in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        queue_claim_many(pipe, [self._prefix + m.reply_id for _, m in decoded],
                         [f"sending:{r.owner}" for r, _ in decoded], self._ttl)
        wanted = sorted({m.conversation_id for _, m in decoded})
        self._cards.queue_read(pipe, wanted)
        previous, *more = await pipe.execute()
        REDIS_ROUNDTRIPS.labels(STAGE).inc()
        cards = dict(zip(wanted, self._cards.parse_read(more[0]), strict=True))
        claimed, seen = [], set()
        for (record, message), before in zip(decoded, previous, strict=True):
            card = cards.get(message.conversation_id)
            if message.reply_id in seen:  # the claim above is this batch's own
                claimed.append(_Claimed(record, message, SendAction.DUPLICATE, "repeated in one batch"))
                continue
            seen.add(message.reply_id)
            claimed.append(_Claimed(record, message, *decide(before), card=card))
        return claimed

    def _flags(self, claimed: _Claimed) -> tuple[GuardFlag, ...]:
        """The reply guard's flags on an agent's reply; machines' own messages are not guarded."""
        if claimed.message.kind != "agent_reply":
            return ()
        solved = claimed.card is not None and claimed.card.status in _SOLVED
        return guard.check(claimed.message.text, self._policy().guard, resolved=solved)

    async def _one(self, claimed: _Claimed) -> DeliveryReceipt | None:
        message = claimed.message
        context = {"reply_id": message.reply_id, "conversation_id": message.conversation_id,
                   "channel": message.channel}
        if claimed.verdict is SendAction.DUPLICATE:
            log.info("duplicate reply skipped", extra={**context, "reason": claimed.reason})
            return None
        if claimed.verdict is SendAction.UNCERTAIN:
            log.error("reply send uncertain", extra={**context, "reason": claimed.reason})
            return _receipt(message, "uncertain", claimed.reason)
        flags = self._flags(claimed)
        if guard.verdict(flags) == "hold":
            reason = "held by the reply guard: " + "; ".join(
                f"{f.rule} ({', '.join(repr(w) for w in f.matched)}): {f.reason}"
                for f in flags if f.action == "hold")
            log.warning("reply held", extra={**context, "reason": reason})
            return _receipt(message, "held", reason, flags)
        sender = self._senders.get(message.channel)
        if sender is None:
            return _receipt(message, "failed", f"no sender is configured for channel {message.channel!r}",
                            flags)
        async with self._limit:
            await self._rates.acquire(message.channel)
            try:
                receipt = await sender(message)
            except SwitchboardError as e:
                receipt = _receipt(message, "failed", e.reason)
            except Exception as e:  # noqa: BLE001 - one reply's surprise must not stop the others
                # the sender did not say how far it got: never send it again, and say so
                log.error("sender raised", extra={**context, "error": repr(e)})
                receipt = _receipt(message, "uncertain", f"the {message.channel} sender failed "
                                   f"unexpectedly ({type(e).__name__}); not sent again")
        receipt = _completed(receipt, message, flags)
        log.info("reply " + receipt.status, extra={**context, "reason": receipt.reason})
        return receipt


def _completed(receipt: DeliveryReceipt, message: OutboundMessage,
               flags: tuple[GuardFlag, ...]) -> DeliveryReceipt:
    """A sender's receipt with what only this stage knows: the kind, the customer, the flags."""
    customer = message.customer_id
    return DeliveryReceipt(
        reply_id=receipt.reply_id, conversation_id=receipt.conversation_id, channel=receipt.channel,
        status=receipt.status, at=receipt.at, reason=receipt.reason, provider_id=receipt.provider_id,
        kind=message.kind, customer_id=customer, flags=flags)


def _receipt(message: OutboundMessage, status: DeliveryStatus, reason: str,
             flags: tuple[GuardFlag, ...] = ()) -> DeliveryReceipt:
    return DeliveryReceipt(reply_id=message.reply_id, conversation_id=message.conversation_id,
                           channel=message.channel, status=status, at=datetime.now(UTC),
                           reason=reason, kind=message.kind, customer_id=message.customer_id,
                           flags=flags)


def _answered(claimed: _Claimed, receipt: DeliveryReceipt) -> ConversationEvent | None:
    """The lifecycle event of an agent's reply that reached the customer, if this was one."""
    message = claimed.message
    if receipt.status != "sent" or message.kind != "agent_reply":
        return None
    customer = message.customer_id or (claimed.card.customer_id if claimed.card else None)
    if customer is None:
        log.warning("sent reply has no customer; its SLA clock cannot be stopped",
                    extra={"reply_id": message.reply_id, "conversation_id": message.conversation_id})
        return None
    return ConversationEvent(
        event_id=f"evt_{message.reply_id}", conversation_id=message.conversation_id,
        customer_id=customer, kind="agent_reply", at=receipt.at, author=message.author,
        text=message.text[:280], queue=message.queue, source="send", reply_id=message.reply_id)
