"""The event log as the suite reads it: every record of the topics that show what people see.

One consumer outside any group reads `sb.routed.v1`, `sb.outbound.v1`, `sb.delivery.v1`
and `sb.handoff.v1` from the beginning for the whole run, reconnecting by itself across
Kafka's restarts, and keeps only what the counts need, with each record's Kafka time.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import defaultdict, deque
from dataclasses import dataclass, field

import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from router.settings import Settings
from schemas.ids import mail_nonce
from schemas.topics import DELIVERY, HANDOFF, OUTBOUND, ROUTED

__all__ = ["Conversation", "Journal"]


class _Sender(msgspec.Struct):
    kind: str
    value: str


class _Message(msgspec.Struct):
    channel: str
    native_id: str
    sender: _Sender
    subject: str | None = None


class _Routed(msgspec.Struct):
    event_id: str
    conversation_id: str
    customer_id: str
    # None: a transfer's handoff, routed again without a message (not a customer's message)
    message: _Message | None = None


class _Outbound(msgspec.Struct):
    reply_id: str
    kind: str


class _Receipt(msgspec.Struct):
    reply_id: str
    status: str


class _Handoff(msgspec.Struct):
    event_id: str
    destination: str
    intended: str
    status: str


@dataclass(frozen=True)
class Conversation:
    """A routed email conversation an agent can answer."""

    conversation_id: str
    customer_id: str
    address: str
    native_id: str
    subject: str | None


@dataclass
class Journal:
    """What the topics say so far; `start()` reads them in the background."""

    settings: Settings
    # native id → (conversation id, time, event id) of each routed record carrying it
    routed: dict[str, list[tuple[str, float, str]]] = field(default_factory=lambda: defaultdict(list))
    routed_at: list[tuple[float, str]] = field(default_factory=list)  # (time, channel)
    outbound: dict[str, tuple[float, str]] = field(default_factory=dict)  # reply id → (time, kind)
    outbound_records: list[tuple[float, str]] = field(default_factory=list)  # (time, reply id)
    by_nonce: dict[str, str] = field(default_factory=dict)  # Message-ID nonce → reply id
    receipts: dict[str, list[tuple[str, float]]] = field(default_factory=lambda: defaultdict(list))
    receipt_records: list[tuple[float, str, str]] = field(default_factory=list)  # (time, reply, status)
    handoffs: dict[str, list[tuple[str, str, str, float]]] = field(
        default_factory=lambda: defaultdict(list))  # event id → (destination, intended, status, time)
    conversations: deque[Conversation] = field(default_factory=lambda: deque(maxlen=500))
    errors: int = 0
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Assign every partition of the four topics from the beginning; read in the background."""
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap,
                                          group_id=None, enable_auto_commit=False,
                                          auto_offset_reset="earliest", request_timeout_ms=10_000)
        await self._consumer.start()
        topics = [self.settings.topic(t) for t in (ROUTED, OUTBOUND, DELIVERY, HANDOFF)]
        # the processes made them (router.kafka.ensure_topics) with the settings' partitions
        partitions = [TopicPartition(t, p) for t in topics for p in range(self.settings.kafka_partitions)]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        self._task = asyncio.create_task(self._read())

    async def stop(self) -> None:
        """Stop reading."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    async def _read(self) -> None:
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            except KafkaError:
                # Kafka away: the consumer reconnects by itself; ask again shortly
                self.errors += 1
                await asyncio.sleep(0.5)
                continue
            for records in batches.values():
                for r in records:
                    self._take(r)

    def _take(self, r: ConsumerRecord[bytes, bytes]) -> None:
        if r.value is None:
            return
        at = r.timestamp / 1000
        topic = r.topic[len(self.settings.topic_prefix):]
        if topic == ROUTED.name:
            routed = msgspec.json.decode(r.value, type=_Routed)
            if routed.message is None:
                return
            self.routed[routed.message.native_id].append((routed.conversation_id, at, routed.event_id))
            self.routed_at.append((at, routed.message.channel))
            if routed.message.channel == "email" and routed.message.sender.kind == "email":
                self.conversations.append(Conversation(
                    routed.conversation_id, routed.customer_id, routed.message.sender.value,
                    routed.message.native_id, routed.message.subject))
        elif topic == OUTBOUND.name:
            out = msgspec.json.decode(r.value, type=_Outbound)
            self.outbound.setdefault(out.reply_id, (at, out.kind))
            self.outbound_records.append((at, out.reply_id))
            self.by_nonce[mail_nonce(out.reply_id)] = out.reply_id
        elif topic == DELIVERY.name:
            receipt = msgspec.json.decode(r.value, type=_Receipt)
            self.receipts[receipt.reply_id].append((receipt.status, at))
            self.receipt_records.append((at, receipt.reply_id, receipt.status))
        elif topic == HANDOFF.name:
            handoff = msgspec.json.decode(r.value, type=_Handoff)
            self.handoffs[handoff.event_id].append(
                (handoff.destination, handoff.intended, handoff.status, at))

    def answerable(self, rng: random.Random) -> Conversation | None:
        """One of the recently routed email conversations, for an agent to answer."""
        return rng.choice(self.conversations) if self.conversations else None
