"""Send: every message to a customer sent at most once, guarded, and a receipt for each.

A batch claims its reply ids in Redis as `queued:<record>` in one round trip (a reply's
claim is `<ns>:{p<N>}:reply:<reply id>`, tagged by the reply id so that `retag` can move
the claims from before the tags and none is sent twice across an upgrade; on a Cluster
the batch's calls are split per tag, decision 0021); just before
one reply goes to its channel its claim moves to `sending:<record>`, and after, to its
result (`sent:`/`failed:`/`held:` + the record). So a worker killed mid-batch leaves
`sending` only on the replies it was actually sending: those may or may not have gone
out and are reported `uncertain` for a person to check, never blindly sent again. Its
`queued` replies were never tried and are sent by the next attempt. A result written by
this very record (a restart after the results, before the receipts were produced) gives
its receipt again; a result of another record is a duplicate and is skipped.

A policy's `private_replies` rule marks the message `privately` (with its public note)
before the sender sees it; a channel with public threads answers privately then.

A channel that cannot send now but knows when it can returns a `deferred` receipt with
`retry_at` (processors/send/deferred.py): the claim records it, Redis keeps the message
until then, the agent's tool is told it is delayed and until when, and the timer puts it
back on the topic when due, to be sent once. A deferral past `max_defer` is a failure.

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
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, cast

import msgspec
from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from processors.metrics import REDIS_ROUNDTRIPS, Tally
from processors.policy.model import Policy
from processors.send import first_reply, guard
from processors.send.deferred import TAKE_DUE, Deferrals, deferred_result, due_of
from processors.send.ratelimit import RateLimits
from processors.stage import Output, Record, decode_records
from processors.stores.bulk import queue_set_many
from processors.stores.cards import CardStore
from processors.stores.results import Result, parse_result, result
from processors.stores.tags import pipeline, split
from schemas.codec import decode, encode
from schemas.conversation import ConversationCard, ConversationEvent
from schemas.errors import SwitchboardError, TransientError
from schemas.outbound import DeliveryReceipt, DeliveryStatus, GuardFlag, OutboundMessage
from schemas.topics import CONVERSATION, DELIVERY, OUTBOUND

__all__ = ["SendAction", "SendFn", "SendStage", "decide"]

STAGE = "send"
log = logging.getLogger(__name__)
SendFn = Callable[[OutboundMessage], Awaitable[DeliveryReceipt]]
Produce = Callable[[Sequence[Output]], Awaitable[None]]
DEFERRALS = Counter("sb_send_deferred_total", "Replies a channel asked to send later", ["channel"])
REDELIVERED = Counter("sb_send_redelivered_total", "Deferred replies put back on the outbound topic when due")
_SOLVED = frozenset({"resolved", "closed"})
QUEUED, SENDING = "queued:", "sending:"
# this attempt's own queued claim becomes `sending`; anything else there means another attempt
_TO_SENDING = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
  return 1
end
return 0
"""


class SendAction(Enum):
    """What to do with one outbound message after its claim."""

    SEND = "send"
    DUPLICATE = "duplicate"
    UNCERTAIN = "uncertain"
    # this record's own result, found again after a restart: its receipt is produced again
    REPEAT = "repeat"


def decide(previous: bytes | None, owner: str, now: float = 0.0) -> tuple[SendAction, str]:
    """Judge one claim by `owner` (the record) at `now` (epoch) from what the reply's key held before."""
    if previous is None:
        return SendAction.SEND, "first attempt"
    state = previous.decode()
    if state.startswith(QUEUED):
        return SendAction.SEND, f"an earlier attempt ({state[len(QUEUED):]}) stopped before sending it"
    if state.startswith(SENDING):
        return SendAction.UNCERTAIN, (f"an earlier attempt ({state[len(SENDING):]}) stopped between send "
                                      "and result; it may have been sent, so it is not sent again")
    return _after(parse_result(previous), owner, now)


def _after(done: Result, owner: str, now: float) -> tuple[SendAction, str]:
    """Judge a claim whose earlier attempt ended (sent, failed, held or deferred)."""
    deferred = due_of(done)
    if deferred is not None and deferred[0] <= now:
        return SendAction.SEND, f"deferred by {done.owner} until {_when(deferred[0])}, now due"
    if done.by(owner):
        return SendAction.REPEAT, f"{done.status} by this record before a restart"
    if deferred is not None:
        return SendAction.DUPLICATE, f"deferred until {_when(deferred[0])}; it goes then"
    return SendAction.DUPLICATE, f"already {done.status}"


def _when(epoch: float) -> str:
    return f"{datetime.fromtimestamp(epoch, UTC):%Y-%m-%d %H:%M:%S} UTC"


class _NotTried:
    """A reply this attempt could not move to `sending` because Redis failed: the next one sends it."""


@dataclass(frozen=True, slots=True)
class _Claimed:
    record: Record
    message: OutboundMessage
    verdict: SendAction
    reason: str
    card: ConversationCard | None = None
    previous: bytes | None = None


class SendStage:
    """Claims a batch of outbound messages in one round trip, sends, records the results."""

    def __init__(self, redis: Redis, senders: Mapping[str, SendFn], *, namespace: str,
                 ttl_seconds: int, policy: Callable[[], Policy], cards: CardStore,
                 rates: Mapping[str, float] | None = None, concurrency: int = 16,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 max_defer: timedelta = timedelta(days=3)) -> None:
        self._redis = redis
        self._senders = senders
        self._namespace = namespace
        self._ttl = ttl_seconds
        self._policy = policy
        self._cards = cards
        self._rates = RateLimits(rates or {})
        self._limit = asyncio.Semaphore(concurrency)
        self._clock = clock
        self._max_defer = max_defer
        self.deferrals = Deferrals(namespace)

    async def process(self, records: Sequence[Record]) -> list[Output]:
        """Send what is ours to send in this batch; returns receipts, events and dead letters."""
        outputs: list[Output] = []
        decoded = decode_records(records, OutboundMessage, STAGE, outputs)
        if not decoded:
            return outputs
        claimed = await self._claim(decoded)
        attempts = await asyncio.gather(*(self._one(c) for c in claimed))
        tally = Tally(STAGE)
        for c in claimed:
            tally.seen[c.message.channel] += 1
            counts = tally.dropped if c.verdict is SendAction.DUPLICATE else tally.passed
            counts[c.message.channel] += 1
        tally.report()
        final, later = [], []
        for c, r in zip(claimed, attempts, strict=True):
            if not isinstance(r, DeliveryReceipt) or c.verdict is not SendAction.SEND:
                continue
            key = self._key(c.message)
            if r.status == "deferred" and r.retry_at is not None:
                due = r.retry_at.timestamp()
                final.append((key, deferred_result(c.record.owner, due, r.reason)))
                later.append((c.message.reply_id, due, encode(c.message)))
                DEFERRALS.labels(c.message.channel).inc()
            else:
                final.append((key, result(r.status, c.record.owner, r.reason)))
        if final:
            pipe = pipeline(self._redis)
            # the schedule first: a claim that says "deferred" always has its message kept
            self.deferrals.queue_schedule(pipe, later)
            queue_set_many(pipe, final, self._ttl)
            await pipe.execute()
            REDIS_ROUNDTRIPS.labels(STAGE).inc()
        if any(isinstance(r, _NotTried) for r in attempts):
            # the results above stand; the batch runs again, sending what is still queued
            # and giving the receipts of what was sent (REPEAT)
            raise TransientError("could not mark replies as sending")
        for c, receipt in zip(claimed, attempts, strict=True):
            if not isinstance(receipt, DeliveryReceipt):
                continue
            outputs.append(Output(DELIVERY, receipt.conversation_id.encode(), encode(receipt)))
            event = _answered(c, receipt)
            if event is not None:
                outputs.append(Output(CONVERSATION, event.customer_id.encode(), encode(event)))
                first_reply.observe(c.card, receipt, self._policy(), c.message.author)
        return outputs

    async def _claim(self, decoded: Sequence[tuple[Record, OutboundMessage]]) -> list[_Claimed]:
        """Claim every reply and read the conversations' cards, in one round trip."""
        # a reply twice in one batch is claimed by its first record only
        first: dict[str, Record] = {}
        for record, message in decoded:
            first.setdefault(message.reply_id, record)
        now = self._clock().timestamp()
        pipe = pipeline(self._redis)
        self._queue_take(pipe, [(self._key(m), QUEUED + r.owner)
                                for r, m in decoded if first[m.reply_id] is r], now)
        wanted = sorted({m.conversation_id for _, m in decoded})
        self._cards.queue_read(pipe, wanted)
        previous, *more = await pipe.execute()
        REDIS_ROUNDTRIPS.labels(STAGE).inc()
        cards = dict(zip(wanted, self._cards.parse_read(more[0]), strict=True))
        before = dict(zip(first, previous, strict=True))
        claimed = []
        for record, message in decoded:
            if first[message.reply_id] is not record:
                claimed.append(_Claimed(record, message, SendAction.DUPLICATE, "repeated in one batch"))
                continue
            held = before[message.reply_id]
            claimed.append(_Claimed(record, message, *decide(held, record.owner, now),
                                    card=cards.get(message.conversation_id), previous=held))
        return claimed

    def _key(self, message: OutboundMessage) -> str:
        """A reply's claim, tagged by its own id."""
        return f"{self._namespace}:{self._cards.tags.of(message.reply_id)}reply:{message.reply_id}"

    def _queue_take(self, pipe: Any, claims: Sequence[tuple[str, str]], now: float) -> None:
        """Queue the claim of every (key, claim); its answer is what each key held before, in order."""
        def queue(pipe: Any, part: list[int]) -> None:
            pipe.eval(TAKE_DUE, len(part), *(claims[i][0] for i in part), self._ttl, QUEUED, now,
                      *(claims[i][1] for i in part))
        split(pipe, [k for k, _ in claims], queue)

    def _flags(self, claimed: _Claimed) -> tuple[GuardFlag, ...]:
        """The reply guard's flags on an agent's reply, and a collision warning; not on machines' own."""
        if claimed.message.kind != "agent_reply":
            return ()
        card = claimed.card
        solved = card is not None and card.status in _SOLVED
        flags = guard.check(claimed.message.text, self._policy().guard, resolved=solved)
        # two agents answering one customer: the second one's tool is told
        crossed = guard.collision(claimed.message.author, card.agent if card else None)
        return (*flags, crossed) if crossed else flags

    async def _sending(self, claimed: _Claimed) -> bool:
        """Move this attempt's queued claim to `sending`; False when another attempt holds it."""
        owner = claimed.record.owner
        moved = await self._redis.eval(_TO_SENDING, 1, self._key(claimed.message),
                                       QUEUED + owner, SENDING + owner)
        return bool(moved)

    async def _one(self, claimed: _Claimed) -> DeliveryReceipt | _NotTried | None:
        message = claimed.message
        context = {"reply_id": message.reply_id, "conversation_id": message.conversation_id,
                   "channel": message.channel}
        if claimed.verdict is not SendAction.SEND:
            return _settled(claimed, context)
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
                if not await self._sending(claimed):
                    reason = "another attempt took this reply over; it may have been sent"
                    log.error("reply send uncertain", extra={**context, "reason": reason})
                    return _receipt(message, "uncertain", reason)
            except (RedisError, TimeoutError) as e:
                log.warning("could not mark a reply as sending", extra={**context, "error": repr(e)})
                return _NotTried()
            receipt = await _attempt(sender, self._privately(claimed), context)
        receipt = self._bounded(_completed(receipt, message, flags), message)
        log.info("reply " + receipt.status, extra={**context, "reason": receipt.reason})
        return receipt

    def _privately(self, claimed: _Claimed) -> OutboundMessage:
        """The message, marked private when a policy rule moves it out of public view."""
        message, card = claimed.message, claimed.card
        queue = message.queue or (card.queue if card else None)
        for rule in self._policy().private_replies:
            if rule.matches(tier=card.tier if card else None, queue=queue, channel=message.channel,
                            text=message.text):
                return msgspec.structs.replace(message, privately=f"{rule.name}: {rule.reason}",
                                               public_note=rule.public_note)
        return message

    def _bounded(self, receipt: DeliveryReceipt, message: OutboundMessage) -> DeliveryReceipt:
        """A deferral without a time, or past the longest wait, is a failure the agent is told of."""
        if receipt.status != "deferred":
            return receipt
        latest = message.created_at + self._max_defer
        if receipt.retry_at is None or receipt.retry_at > latest:
            when = f"until {receipt.retry_at:%Y-%m-%d %H:%M} UTC" if receipt.retry_at else "without a time"
            why = f"{receipt.reason or 'deferred'}; not sent: it would wait {when}, past the longest " \
                  f"wait of {self._max_defer}"
            return msgspec.structs.replace(receipt, status="failed", reason=why, retry_at=None)
        return receipt

    async def redeliver(self, produce: Produce) -> int:
        """Put the deferred replies that are due back on the outbound topic; returns how many."""
        leased = await self.deferrals.lease(self._redis, self._clock().timestamp())
        if not leased.messages:
            return 0
        outputs = []
        for reply_id, body in leased.messages:
            message = decode(body, OutboundMessage)
            outputs.append(Output(OUTBOUND, message.conversation_id.encode(), body))
            log.info("deferred reply due",
                     extra={"reply_id": reply_id, "conversation_id": message.conversation_id})
        await produce(outputs)  # a lease that lapses before this returns is taken again
        await self.deferrals.forget(self._redis, leased)
        REDELIVERED.inc(len(outputs))
        return len(outputs)


def _settled(claimed: _Claimed, context: dict[str, str]) -> DeliveryReceipt | None:
    """What a reply that is not ours to send gets: nothing, `uncertain`, or its receipt again."""
    message = claimed.message
    if claimed.verdict is SendAction.UNCERTAIN:
        log.error("reply send uncertain", extra={**context, "reason": claimed.reason})
        return _receipt(message, "uncertain", claimed.reason)
    if claimed.verdict is SendAction.REPEAT and claimed.previous is not None:
        done = parse_result(claimed.previous)
        log.info("reply receipt repeated", extra={**context, "reason": claimed.reason})
        deferred = due_of(done)
        if deferred is not None:
            return msgspec.structs.replace(_receipt(message, "deferred", deferred[1] or None),
                                           retry_at=datetime.fromtimestamp(deferred[0], UTC))
        return _receipt(message, cast(DeliveryStatus, done.status), done.detail or None)
    log.info("duplicate reply skipped", extra={**context, "reason": claimed.reason})
    return None


async def _attempt(sender: SendFn, message: OutboundMessage, context: dict[str, str]) -> DeliveryReceipt:
    """One send; any failure is this reply's receipt, never the batch's exception."""
    try:
        return await sender(message)
    except SwitchboardError as e:
        return _receipt(message, "failed", e.reason)
    except Exception as e:  # noqa: BLE001 - one reply's surprise must not stop the others
        # the sender did not say how far it got: never send it again, and say so
        log.error("sender raised", extra={**context, "error": repr(e)})
        return _receipt(message, "uncertain", f"the {message.channel} sender failed "
                        f"unexpectedly ({type(e).__name__}); not sent again")


def _completed(receipt: DeliveryReceipt, message: OutboundMessage,
               flags: tuple[GuardFlag, ...]) -> DeliveryReceipt:
    """A sender's receipt with what only this stage knows: the kind, the customer, the flags."""
    customer = message.customer_id
    return DeliveryReceipt(
        reply_id=receipt.reply_id, conversation_id=receipt.conversation_id, channel=receipt.channel,
        status=receipt.status, at=receipt.at, reason=receipt.reason, provider_id=receipt.provider_id,
        kind=message.kind, customer_id=customer, flags=flags, retry_at=receipt.retry_at,
        notice=receipt.notice)


def _receipt(message: OutboundMessage, status: DeliveryStatus, reason: str | None,
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
