"""Intake: the first pipeline stage, one stream batch at a time.

decode → dedupe (one Redis round trip per batch) → identify → route, producing
RoutedConversations, and DeadLetters for whatever cannot be decoded.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from processors import dedupe, identify, route
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
from schemas.topics import DEADLETTER, ROUTED, TopicSpec

__all__ = ["STAGE", "Intake", "Output", "Record"]

STAGE = "intake"
log = logging.getLogger(__name__)
_decode = decoder(InboundMessage).decode


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


def _dead_letter(record: Record, reason: str, channel: str | None = None) -> Output:
    letter = DeadLetter(
        stage=STAGE,
        reason=reason,
        original=record.value or b"",
        at=datetime.now(UTC),
        channel=channel,
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
    )
    return Output(DEADLETTER, STAGE.encode(), encode(letter))


def routed_conversation(message: InboundMessage, policy: route.DefaultPolicy,
                        dedupe_reason: str) -> RoutedConversation:
    """Identify and route one message: the pure core, shared with `switchboard explain`."""
    customer_id = identify.customer_id_for(message.sender)
    conversation_id = identify.conversation_id_for(message)
    routed = route.decide(message, policy)
    return RoutedConversation(
        event_id=message.event_id,
        conversation_id=conversation_id,
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
            Decision(
                stage="identify",
                outcome=customer_id,
                reasons=(
                    f"customer {customer_id} from sender {message.sender.kind} identity",
                    f"conversation {conversation_id} from {message.channel} thread",
                ),
            ),
            routed.decision,
        ),
    )


class Intake:
    """Runs the intake stage over a batch; the Faust agent only moves bytes."""

    def __init__(self, claims: dedupe.ClaimStore, policy: route.DefaultPolicy) -> None:
        self._claims = claims
        self._policy = policy

    async def process(self, records: Sequence[Record]) -> list[Output]:
        """Turn one batch of inbound records into routed conversations and dead letters."""
        BATCH_SIZE.labels(STAGE).observe(len(records))
        outputs: list[Output] = []
        decoded: list[tuple[Record, InboundMessage]] = []
        for record in records:
            try:
                if record.value is None:
                    raise ParseError("record has no value")
                decoded.append((record, _decode(record.value)))
            except Exception as e:  # noqa: BLE001 - any decode failure is this record's fault
                reason = e.reason if isinstance(e, ParseError) else f"not a valid InboundMessage: {e}"
                outputs.append(_dead_letter(record, reason))
                DEADLETTERED.labels(STAGE, "unknown").inc()
                log.warning("dead-lettered record", extra={
                    "topic": record.topic, "partition": record.partition,
                    "offset": record.offset, "reason": reason})
        claims = [dedupe.Claim(m.event_id, f"{r.topic}/{r.partition}/{r.offset}") for r, m in decoded]
        previous = await self._claims.claim(claims)
        if claims:
            REDIS_ROUNDTRIPS.labels(STAGE).inc()
        seen: Counter[str] = Counter()
        passed: Counter[str] = Counter()
        dropped: Counter[str] = Counter()
        now = time.time()
        debug = log.isEnabledFor(logging.DEBUG)  # once per batch: the check is not free
        for (_, message), claim, before in zip(decoded, claims, previous, strict=True):
            seen[message.channel] += 1
            verdict, reason = dedupe.decide(claim, before)
            if verdict is dedupe.Verdict.DUPLICATE:
                dropped[message.channel] += 1
                log.info("duplicate dropped", extra={"event_id": message.event_id, "reason": reason})
                continue
            conversation = routed_conversation(message, self._policy, reason)
            outputs.append(Output(ROUTED, conversation.customer_id.encode(), encode(conversation)))
            passed[message.channel] += 1
            STAGE_LATENCY.labels(STAGE).observe(max(0.0, now - message.received_at.timestamp()))
            if debug:
                log.debug("routed", extra={"event_id": message.event_id,
                                           "conversation_id": conversation.conversation_id,
                                           "queue": conversation.queue})
        for channel, n in seen.items():
            MESSAGES_IN.labels(STAGE, channel).inc(n)
        for channel, n in passed.items():
            MESSAGES_OUT.labels(STAGE, channel).inc(n)
        for channel, n in dropped.items():
            DEDUPLICATED.labels(STAGE, channel).inc(n)
        return outputs
