"""Deferred replies against real Redis: kept until due, put back on the topic, sent once, restart-proof."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from redis.asyncio import Redis

from processors.policy.load import parse_policy
from processors.send.stage import SendAction, SendStage, decide
from processors.stage import Output, Record
from processors.stores.cards import CardStore
from router.settings import Settings
from router.vocabulary import VOCABULARY
from schemas import DeliveryReceipt, Identity, OutboundMessage, decode, encode
from schemas.topics import DELIVERY, OUTBOUND
from tests.paths import FIXTURES

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
RESET = T0 + timedelta(hours=20)
MINIMAL = (FIXTURES / "policy" / "valid_minimal.yaml").read_text()


@dataclass
class Clock:
    """The stage's clock: tests move it, nothing reads the wall clock."""

    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Capped:
    """A channel under a 24-hour cap until RESET: before, it defers; after, it sends."""

    clock: Clock
    sent: list[str] = field(default_factory=list)
    asked: int = 0
    seen: list[OutboundMessage] = field(default_factory=list)

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        self.asked += 1
        self.seen.append(message)
        receipt = DeliveryReceipt(reply_id=message.reply_id, conversation_id=message.conversation_id,
                                  channel=message.channel, status="sent", at=self.clock.now)
        if self.clock.now < RESET:
            return msgspec.structs.replace(receipt, status="deferred", retry_at=RESET,
                                           reason="the day's DM cap is reached")
        self.sent.append(message.reply_id)
        return receipt


@pytest.fixture
async def redis(stack: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(stack.redis_dsn)
    yield client
    await client.aclose()


def reply(reply_id: str, text: str = "Your parcel left today.") -> OutboundMessage:
    return OutboundMessage(reply_id=reply_id, conversation_id="con_1", channel="x",
                           recipient=Identity(kind="xid", value="750362064426721281"),
                           kind="agent_reply", text=text, created_at=T0, queue="general")


def record(value: bytes, offset: int) -> Record:
    return Record("sb.outbound.v1", 0, offset, value)


def stage(redis: Redis, ns: str, channel: Capped, clock: Clock, policy_text: str = MINIMAL,
          **more: timedelta) -> SendStage:
    policy = parse_policy(policy_text, "policy.yaml", VOCABULARY)
    return SendStage(redis, {"x": channel.send}, namespace=ns, ttl_seconds=600, policy=lambda: policy,
                     cards=CardStore(ns, 600), clock=clock, **more)


def receipts(outputs: Sequence[Output]) -> list[DeliveryReceipt]:
    return [decode(o.value, DeliveryReceipt) for o in outputs if o.topic is DELIVERY]


class Topic:
    """Where redelivered replies land: what the worker's producer would put on sb.outbound.v1."""

    def __init__(self, fail: bool = False) -> None:
        self.records: list[Output] = []
        self.fail = fail

    async def produce(self, outputs: Sequence[Output]) -> None:
        if self.fail:
            raise ConnectionError("Kafka is away")
        self.records += outputs


def test_a_deferred_claim_is_taken_only_when_due() -> None:
    claim = f"deferred:sb.outbound.v1/0/3|{RESET.timestamp():.3f}|cap".encode()
    assert decide(claim, "sb.outbound.v1/0/9", RESET.timestamp() - 1)[0] is SendAction.DUPLICATE
    assert decide(claim, "sb.outbound.v1/0/3", RESET.timestamp() - 1)[0] is SendAction.REPEAT
    assert decide(claim, "sb.outbound.v1/0/9", RESET.timestamp())[0] is SendAction.SEND


async def test_a_capped_reply_waits_survives_a_restart_and_is_sent_once(redis: Redis) -> None:
    ns, clock = f"t{uuid.uuid4().hex}", Clock()
    channel = Capped(clock)
    first = stage(redis, ns, channel, clock)
    [told] = receipts(await first.process([record(encode(reply("rep_1")), 1)]))
    assert (told.status, told.retry_at) == ("deferred", RESET)  # the agent's tool hears until when
    # the same record read again after a crash: its receipt again, nothing sent, still scheduled
    [again] = receipts(await first.process([record(encode(reply("rep_1")), 1)]))
    assert (again.status, again.retry_at) == ("deferred", RESET)
    # the agent's tool retrying the same reply id before the reset: a duplicate
    assert await first.process([record(encode(reply("rep_1")), 2)]) == []
    topic = Topic()
    assert await first.redeliver(topic.produce) == 0 and channel.asked == 1

    clock.now = RESET + timedelta(seconds=1)
    restarted = stage(redis, ns, channel, clock)  # a new worker: all it knows is in Redis
    assert await restarted.redeliver(topic.produce) == 1
    [due] = topic.records
    assert due.topic is OUTBOUND and due.key == b"con_1"
    [sent] = receipts(await restarted.process([record(due.value, 3)]))
    assert sent.status == "sent" and channel.sent == ["rep_1"]
    assert await restarted.redeliver(topic.produce) == 0
    assert await restarted.deferrals.pending(redis) == 0
    # any later copy of the reply is a duplicate
    assert await restarted.process([record(due.value, 4), record(encode(reply("rep_1")), 5)]) == []
    assert channel.sent == ["rep_1"]


async def test_a_worker_that_dies_before_kafka_has_the_due_reply_leaves_it_to_the_next(redis: Redis) -> None:
    ns, clock = f"t{uuid.uuid4().hex}", Clock()
    channel = Capped(clock)
    first = stage(redis, ns, channel, clock)
    await first.process([record(encode(reply("rep_2")), 1)])
    clock.now = RESET
    with pytest.raises(ConnectionError):
        await first.redeliver(Topic(fail=True).produce)
    topic = Topic()
    other = stage(redis, ns, channel, clock)
    assert await other.redeliver(topic.produce) == 0  # leased by the worker that died
    clock.now = RESET + timedelta(minutes=2)  # the lease lapsed
    assert await other.redeliver(topic.produce) == 1
    await other.process([record(topic.records[0].value, 7)])
    assert channel.sent == ["rep_2"]


async def test_a_deferral_past_the_longest_wait_fails_with_the_reason(redis: Redis) -> None:
    ns, clock = f"t{uuid.uuid4().hex}", Clock()
    channel = Capped(clock)
    impatient = stage(redis, ns, channel, clock, max_defer=timedelta(hours=1))
    [failed] = receipts(await impatient.process([record(encode(reply("rep_3")), 1)]))
    assert failed.status == "failed" and "past the longest wait" in (failed.reason or "")
    assert await impatient.deferrals.pending(redis) == 0


PRIVATE = MINIMAL + """
private_replies:
  - name: billing-in-private
    reason: invoices are not for a public thread
    queues: [general]
    keywords: [invoice]
    public_note: We've answered you in a private message.
"""


async def test_the_policy_marks_replies_that_go_privately(redis: Redis) -> None:
    ns, clock = f"t{uuid.uuid4().hex}", Clock(RESET)
    channel = Capped(clock)
    private = stage(redis, ns, channel, clock, policy_text=PRIVATE)
    await private.process([record(encode(reply("rep_4", "Your invoice is corrected.")), 1),
                           record(encode(reply("rep_5", "Your parcel left.")), 2)])
    marked, plain = channel.seen
    assert marked.privately == "billing-in-private: invoices are not for a public thread"
    assert marked.public_note == "We've answered you in a private message."
    assert (plain.privately, plain.public_note) == (None, None)
