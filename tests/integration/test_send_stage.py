"""The outbound send stage against real Redis: at most once to the customer."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from processors.intake import Record
from processors.send import SendStage, Verdict, decide
from router.settings import Settings
from schemas import DeadLetter, DeliveryReceipt, Identity, OutboundMessage, decode, encode
from schemas.topics import DEADLETTER, DELIVERY

pytestmark = pytest.mark.integration


def test_claim_verdicts() -> None:
    assert decide(None)[0] is Verdict.SEND
    assert decide(b"sent:")[0] is Verdict.DUPLICATE
    assert decide(b"failed:550 no such user")[0] is Verdict.DUPLICATE
    verdict, reason = decide(b"sending:sb.outbound.v1/0/7")
    assert verdict is Verdict.UNCERTAIN and "may have been sent" in reason


@pytest.fixture
async def redis(stack: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(stack.redis_dsn)
    yield client
    await client.aclose()


def reply(reply_id: str, channel: str = "email") -> OutboundMessage:
    return OutboundMessage(reply_id=reply_id, conversation_id="con_1", channel=channel,
                           recipient=Identity(kind="email", value="ada@example.com"),
                           kind="agent_reply", text="Your parcel left today.",
                           created_at=datetime.now(UTC))


def record(message: OutboundMessage | bytes, offset: int) -> Record:
    value = message if isinstance(message, bytes) else encode(message)
    return Record("sb.outbound.v1", 0, offset, value)


class Channel:
    """Stands in for the outside system a sender talks to: it records what it was sent."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        self.sent.append(message.reply_id)
        return DeliveryReceipt(reply_id=message.reply_id, conversation_id=message.conversation_id,
                               channel=message.channel, status="sent", at=datetime.now(UTC),
                               provider_id=f"<{message.reply_id}@x>")


async def test_each_reply_is_sent_once_and_receipted(redis: Redis) -> None:
    channel = Channel()
    stage = SendStage(redis, {"email": channel.send}, namespace=f"t{uuid.uuid4().hex}", ttl_seconds=600)
    a, b = reply("rep_a"), reply("rep_b")
    first = await stage.process([record(a, 1), record(b, 2), record(a, 3)])
    again = await stage.process([record(a, 4), record(b, 5)])
    assert channel.sent == ["rep_a", "rep_b"]
    receipts = [decode(o.value, DeliveryReceipt) for o in first]
    assert [(r.reply_id, r.status) for r in receipts] == [("rep_a", "sent"), ("rep_b", "sent")]
    assert again == []


async def test_a_claim_left_by_a_crash_is_uncertain_never_resent(redis: Redis) -> None:
    channel = Channel()
    ns = f"t{uuid.uuid4().hex}"
    # what a worker killed between claim and send leaves behind
    await redis.set(f"{ns}:reply:rep_c", "sending:sb.outbound.v1/0/9")
    stage = SendStage(redis, {"email": channel.send}, namespace=ns, ttl_seconds=600)
    [out] = await stage.process([record(reply("rep_c"), 9)])
    receipt = decode(out.value, DeliveryReceipt)
    assert channel.sent == []
    assert receipt.status == "uncertain" and "not sent again" in (receipt.reason or "")


async def test_unknown_channel_and_bad_record_are_visible(redis: Redis) -> None:
    stage = SendStage(redis, {}, namespace=f"t{uuid.uuid4().hex}", ttl_seconds=600)
    outs = await stage.process([record(reply("rep_d", channel="fax"), 1), record(b"{oops", 2)])
    by_topic = {o.topic: o for o in outs}
    receipt = decode(by_topic[DELIVERY].value, DeliveryReceipt)
    assert receipt.status == "failed"
    assert "no sender is configured for channel 'fax'" in (receipt.reason or "")
    assert DEADLETTER in by_topic
    assert decode(by_topic[DEADLETTER].value, DeadLetter).stage == "send"
