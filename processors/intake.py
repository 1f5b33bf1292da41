"""Intake: the first pipeline stage, one stream batch at a time.

decode → dedupe + thread context (one Redis round trip per batch) → identify → thread →
route, producing RoutedConversations; bounces become failed DeliveryReceipts; whatever
cannot be decoded becomes a DeadLetter. Thread state is written back in a second round
trip, so each of the two stateful stages makes exactly one per batch.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from redis.asyncio import Redis

from processors import dedupe, identify, route, thread
from processors.bounce import receipt_for_bounce
from processors.conversations import ConversationStore, Update
from processors.metrics import (
    BATCH_SIZE,
    DEADLETTERED,
    DEDUPLICATED,
    MESSAGES_IN,
    MESSAGES_OUT,
    REDIS_ROUNDTRIPS,
    STAGE_LATENCY,
)
from schemas.codec import decoder, encode
from schemas.deadletter import DeadLetter
from schemas.errors import ParseError
from schemas.inbound import InboundMessage
from schemas.routed import Decision, RoutedConversation
from schemas.topics import DEADLETTER, DELIVERY, ROUTED, TopicSpec

__all__ = ["STAGE", "Intake", "Output", "Record", "routed_conversation"]

STAGE = "intake"
log = logging.getLogger(__name__)
_decode = decoder(InboundMessage).decode
_latency = STAGE_LATENCY.labels(STAGE)  # labels() costs a lock and a lookup: once, not per message


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record as the stage sees it."""

    topic: str
    partition: int
    offset: int
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Output:
    """One record to produce: which topic, its key and value."""

    topic: TopicSpec
    key: bytes
    value: bytes


def dead_letter(record: Record, reason: str, channel: str | None = None) -> Output:
    """A dead letter keeping the record's original bytes and where they came from."""
    letter = DeadLetter(
        stage=STAGE, reason=reason, original=record.value or b"", at=datetime.now(UTC),
        channel=channel, source_topic=record.topic, source_partition=record.partition,
        source_offset=record.offset,
    )
    return Output(DEADLETTER, STAGE.encode(), encode(letter))


def routed_conversation(message: InboundMessage, customer_id: str, threaded: thread.ThreadDecision,
                        policy: route.DefaultPolicy, dedupe_reason: str) -> RoutedConversation:
    """Route one message whose customer and conversation are known: the pure core."""
    routed = route.decide(message, policy)
    return RoutedConversation(
        event_id=message.event_id,
        conversation_id=threaded.conversation_id,
        customer_id=customer_id,
        queue=routed.queue,
        priority=routed.priority,
        tier=routed.tier,
        urgency=routed.urgency,
        first_response_due=routed.first_response_due,
        routed_at=datetime.now(UTC),
        message=message,
        decisions=(
            Decision(stage="dedupe", outcome="new", reasons=(dedupe_reason,)),
            Decision(stage="identify", outcome=customer_id, reasons=(
                f"customer {customer_id} from sender {message.sender.kind} identity",)),
            threaded.decision,
            routed.decision,
        ),
    )


@dataclass(slots=True)
class _Item:
    """One decoded message and what the batch's Redis round trip told about it."""

    record: Record
    message: InboundMessage
    claim: dedupe.Claim
    customer: str
    previous: bytes | None = None
    context: thread.ThreadContext = field(default_factory=thread.ThreadContext)


def _opened(message: InboundMessage, ctx: thread.ThreadContext,
            threaded: thread.ThreadDecision) -> thread.OpenConversation:
    # a reply without a subject of its own keeps the conversation's subject
    kept = ctx.open.subject if ctx.open and threaded.joined else ""
    subject = thread.normalise_subject(message.subject) or kept
    return thread.OpenConversation(threaded.conversation_id, message.received_at, subject)


class _Tally:
    """Per-channel counts of one batch, reported to Prometheus once."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self.passed: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()

    def report(self) -> None:
        for channel, n in self.seen.items():
            MESSAGES_IN.labels(STAGE, channel).inc(n)
        for channel, n in self.passed.items():
            MESSAGES_OUT.labels(STAGE, channel).inc(n)
        for channel, n in self.dropped.items():
            DEDUPLICATED.labels(STAGE, channel).inc(n)


class Intake:
    """Runs the intake stage over a batch; the Faust agent only moves bytes."""

    def __init__(self, redis: Redis, claims: dedupe.ClaimStore, conversations: ConversationStore,
                 rules: thread.ThreadRules, policy: route.DefaultPolicy) -> None:
        self._redis = redis
        self._claims = claims
        self._conversations = conversations
        self._rules = rules
        self._policy = policy

    def _decode(self, records: Sequence[Record], outputs: list[Output]
                ) -> list[tuple[Record, InboundMessage]]:
        decoded = []
        for record in records:
            try:
                if record.value is None:
                    raise ParseError("record has no value")
                decoded.append((record, _decode(record.value)))
            except Exception as e:  # noqa: BLE001 - any decode failure is this record's fault
                reason = e.reason if isinstance(e, ParseError) else f"not a valid InboundMessage: {e}"
                outputs.append(dead_letter(record, reason))
                DEADLETTERED.labels(STAGE, "unknown").inc()
                log.warning("dead-lettered record", extra={
                    "topic": record.topic, "partition": record.partition,
                    "offset": record.offset, "reason": reason})
        return decoded

    async def process(self, records: Sequence[Record]) -> list[Output]:
        """Turn one batch of inbound records into routed conversations and dead letters."""
        BATCH_SIZE.labels(STAGE).observe(len(records))
        outputs: list[Output] = []
        decoded = self._decode(records, outputs)
        if not decoded:
            return outputs
        items = [_Item(r, m, dedupe.Claim(m.event_id, f"{r.topic}/{r.partition}/{r.offset}"),
                       identify.customer_id_for(m.sender)) for r, m in decoded]
        pipe = self._redis.pipeline(transaction=False)
        self._claims.queue(pipe, [i.claim for i in items])
        self._conversations.queue_reads(pipe, [(i.message, i.customer) for i in items])
        claimed, read = await pipe.execute()
        REDIS_ROUNDTRIPS.labels(STAGE).inc()
        contexts = self._conversations.contexts(read)
        for item, previous, ctx in zip(items, claimed, contexts, strict=True):
            item.previous, item.context = previous, ctx
        updates = self._route(items, outputs)
        if updates:
            pipe = self._redis.pipeline(transaction=False)
            self._conversations.queue_writes(pipe, updates)
            await pipe.execute()
            REDIS_ROUNDTRIPS.labels("thread").inc()
        return outputs

    def _route(self, items: Sequence[_Item], outputs: list[Output]) -> list[Update]:
        tally = _Tally()
        updates: list[Update] = []
        # decisions earlier in this batch are newer than what Redis said before it
        latest: dict[str, thread.OpenConversation] = {}
        threads: dict[tuple[str, str], str] = {}
        now = time.time()
        debug = log.isEnabledFor(logging.DEBUG)  # once per batch: the check is not free
        for item in items:
            message = item.message
            tally.seen[message.channel] += 1
            verdict, reason = dedupe.decide(item.claim, item.previous)
            if verdict is dedupe.Verdict.DUPLICATE:
                tally.dropped[message.channel] += 1
                log.info("duplicate dropped", extra={"event_id": message.event_id, "reason": reason})
                continue
            if "bounce" in message.tags:
                outputs.append(self._bounce(item.record, message))
                continue
            thread_id = (message.channel, message.thread_key)
            ctx = thread.ThreadContext(known_thread=threads.get(thread_id, item.context.known_thread),
                                       open=latest.get(item.customer, item.context.open))
            threaded = thread.decide(message, ctx, self._rules)
            conversation = routed_conversation(message, item.customer, threaded, self._policy, reason)
            outputs.append(Output(ROUTED, item.customer.encode(), encode(conversation)))
            latest[item.customer] = opened = _opened(message, ctx, threaded)
            threads[thread_id] = threaded.conversation_id
            updates.append(Update(message.channel, message.thread_key, item.customer, opened))
            tally.passed[message.channel] += 1
            _latency.observe(max(0.0, now - message.received_at.timestamp()))
            if debug:
                log.debug("routed", extra={"event_id": message.event_id,
                                           "conversation_id": conversation.conversation_id,
                                           "queue": conversation.queue})
        tally.report()
        return updates

    def _bounce(self, record: Record, message: InboundMessage) -> Output:
        receipt = receipt_for_bounce(message, self._rules.token_key)
        if receipt is None:
            DEADLETTERED.labels(STAGE, message.channel).inc()
            return dead_letter(record, "bounce for a message we did not send", message.channel)
        log.info("bounce", extra={"event_id": message.event_id, "reply_id": receipt.reply_id,
                                  "conversation_id": receipt.conversation_id})
        return Output(DELIVERY, receipt.conversation_id.encode(), encode(receipt))
