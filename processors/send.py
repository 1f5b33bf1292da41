"""Send: every message to a customer sent at most once, and a receipt for each.

The reply id is claimed in Redis (`sending:<record>`) before the send and marked
`sent:`/`failed:` after. A message whose claim is already final is a duplicate and is
skipped. A claim still `sending` means an earlier attempt died between claim and
result: the send may or may not have happened, so it is reported `uncertain` for a
person to check, never blindly sent again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

from redis.asyncio import Redis

from processors.bulk import queue_claim_many, queue_set_many
from processors.intake import Output, Record, decode_records
from processors.metrics import REDIS_ROUNDTRIPS, Tally
from schemas.codec import encode
from schemas.errors import SwitchboardError
from schemas.outbound import DeliveryReceipt, OutboundMessage
from schemas.topics import DELIVERY

__all__ = ["SendFn", "SendStage", "Verdict", "decide"]

STAGE = "send"
log = logging.getLogger(__name__)
SendFn = Callable[[OutboundMessage], Awaitable[DeliveryReceipt]]


class Verdict(Enum):
    """What to do with one outbound message after its claim."""

    SEND = "send"
    DUPLICATE = "duplicate"
    UNCERTAIN = "uncertain"


def decide(previous: bytes | None) -> tuple[Verdict, str]:
    """Judge one claim from what the reply's key held before it, with the reason."""
    if previous is None:
        return Verdict.SEND, "first attempt"
    state = previous.decode()
    if state.startswith("sending:"):
        return Verdict.UNCERTAIN, (f"an earlier attempt ({state[8:]}) stopped between claim and "
                                   "result; it may have been sent, so it is not sent again")
    return Verdict.DUPLICATE, f"already {state.partition(':')[0]}"


@dataclass(frozen=True, slots=True)
class _Claimed:
    record: Record
    message: OutboundMessage
    verdict: Verdict
    reason: str


class SendStage:
    """Claims a batch of outbound messages in one round trip, sends, records the results."""

    def __init__(self, redis: Redis, senders: Mapping[str, SendFn], *, namespace: str,
                 ttl_seconds: int, concurrency: int = 16) -> None:
        self._redis = redis
        self._senders = senders
        self._prefix = f"{namespace}:reply:"
        self._ttl = ttl_seconds
        self._limit = asyncio.Semaphore(concurrency)

    async def process(self, records: Sequence[Record]) -> list[Output]:
        """Send what is ours to send in this batch; returns receipts and dead letters."""
        outputs: list[Output] = []
        decoded = decode_records(records, OutboundMessage, STAGE, outputs)
        if not decoded:
            return outputs
        claimed = await self._claim(decoded)
        receipts = await asyncio.gather(*(self._one(c) for c in claimed))
        tally = Tally(STAGE)
        for c in claimed:
            tally.seen[c.message.channel] += 1
            counts = tally.dropped if c.verdict is Verdict.DUPLICATE else tally.passed
            counts[c.message.channel] += 1
        tally.report()
        final = [(self._prefix + c.message.reply_id, f"{receipt.status}:{receipt.reason or ''}")
                 for c, receipt in zip(claimed, receipts, strict=True)
                 if receipt is not None and c.verdict is Verdict.SEND]
        if final:
            pipe = self._redis.pipeline(transaction=False)
            queue_set_many(pipe, final, self._ttl)
            await pipe.execute()
            REDIS_ROUNDTRIPS.labels(STAGE).inc()
        for receipt in receipts:
            if receipt is not None:
                outputs.append(Output(DELIVERY, receipt.conversation_id.encode(), encode(receipt)))
        return outputs

    async def _claim(self, decoded: Sequence[tuple[Record, OutboundMessage]]) -> list[_Claimed]:
        pipe = self._redis.pipeline(transaction=False)
        queue_claim_many(pipe, [self._prefix + m.reply_id for _, m in decoded],
                         [f"sending:{r.owner}" for r, _ in decoded], self._ttl)
        [previous] = await pipe.execute()
        REDIS_ROUNDTRIPS.labels(STAGE).inc()
        claimed, seen = [], set()
        for (record, message), before in zip(decoded, previous, strict=True):
            if message.reply_id in seen:  # the claim above is this batch's own
                claimed.append(_Claimed(record, message, Verdict.DUPLICATE, "repeated in one batch"))
                continue
            seen.add(message.reply_id)
            claimed.append(_Claimed(record, message, *decide(before)))
        return claimed

    async def _one(self, claimed: _Claimed) -> DeliveryReceipt | None:
        message = claimed.message
        context = {"reply_id": message.reply_id, "conversation_id": message.conversation_id,
                   "channel": message.channel}
        if claimed.verdict is Verdict.DUPLICATE:
            log.info("duplicate reply skipped", extra={**context, "reason": claimed.reason})
            return None
        if claimed.verdict is Verdict.UNCERTAIN:
            log.error("reply send uncertain", extra={**context, "reason": claimed.reason})
            return _receipt(message, "uncertain", claimed.reason)
        sender = self._senders.get(message.channel)
        if sender is None:
            return _receipt(message, "failed", f"no sender is configured for channel {message.channel!r}")
        async with self._limit:
            try:
                receipt = await sender(message)
            except SwitchboardError as e:
                receipt = _receipt(message, "failed", e.reason)
        log.info("reply " + receipt.status, extra={**context, "reason": receipt.reason})
        return receipt


def _receipt(message: OutboundMessage, status: str, reason: str) -> DeliveryReceipt:
    return DeliveryReceipt(reply_id=message.reply_id, conversation_id=message.conversation_id,
                           channel=message.channel, status=status,  # type: ignore[arg-type]
                           at=datetime.now(UTC), reason=reason)
