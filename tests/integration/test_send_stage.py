"""The outbound send stage against real Redis: at most once to the customer."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from redis.asyncio import Redis

from processors.policy.load import load_policy
from processors.policy.model import GuardRule, Policy, keywords
from processors.send.stage import SendAction, SendStage, decide
from processors.stage import Record
from processors.stores.cards import CardStore, card_fields, status_fields
from router.settings import Settings
from router.vocabulary import VOCABULARY
from schemas import DeadLetter, DeliveryReceipt, Identity, OutboundMessage, decode, encode
from schemas.conversation import ConversationCard, ConversationEvent
from schemas.topics import CONVERSATION, DEADLETTER, DELIVERY
from tests.paths import FIXTURES

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "policy.example.yaml"
MINIMAL = load_policy(FIXTURES / "policy" / "valid_minimal.yaml", VOCABULARY)


def minimal_policy() -> Policy:
    """A real policy without reply-guard rules, for tests of what the guard does not touch."""
    return MINIMAL


OWNER = "sb.outbound.v1/0/7"


def test_claim_verdicts() -> None:
    assert decide(None, OWNER)[0] is SendAction.SEND
    assert decide(b"queued:sb.outbound.v1/0/3", OWNER)[0] is SendAction.SEND
    assert decide(b"sent:sb.outbound.v1/0/3|", OWNER)[0] is SendAction.DUPLICATE
    assert decide(b"failed:sb.outbound.v1/0/3|550 no such user", OWNER)[0] is SendAction.DUPLICATE
    assert decide(b"sent:", OWNER)[0] is SendAction.DUPLICATE  # written before the record was kept
    assert decide(b"sent:sb.outbound.v1/0/7|", OWNER)[0] is SendAction.REPEAT
    verdict, reason = decide(b"sending:sb.outbound.v1/0/7", OWNER)
    assert verdict is SendAction.UNCERTAIN and "may have been sent" in reason


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
    ns = f"t{uuid.uuid4().hex}"
    stage = SendStage(redis, {"email": channel.send}, namespace=ns, ttl_seconds=600, policy=minimal_policy,
                      cards=CardStore(ns, 600))
    a, b = reply("rep_a"), reply("rep_b")
    first = await stage.process([record(a, 1), record(b, 2), record(a, 3)])
    again = await stage.process([record(a, 4), record(b, 5)])
    assert channel.sent == ["rep_a", "rep_b"]
    receipts = [decode(o.value, DeliveryReceipt) for o in first]
    assert [(r.reply_id, r.status) for r in receipts] == [("rep_a", "sent"), ("rep_b", "sent")]
    assert again == []


async def test_a_claim_left_by_a_crash_mid_send_is_uncertain_never_resent(redis: Redis) -> None:
    channel = Channel()
    ns = f"t{uuid.uuid4().hex}"
    # what a worker killed while sending this reply leaves behind
    await redis.set(f"{ns}:reply:rep_c", "sending:sb.outbound.v1/0/9")
    stage = SendStage(redis, {"email": channel.send}, namespace=ns, ttl_seconds=600, policy=minimal_policy,
                      cards=CardStore(ns, 600))
    [out] = await stage.process([record(reply("rep_c"), 9)])
    receipt = decode(out.value, DeliveryReceipt)
    assert channel.sent == []
    assert receipt.status == "uncertain" and "not sent again" in (receipt.reason or "")


class Stalled:
    """A channel that sends its first reply, then hangs on the next as a dying worker would."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.hung = asyncio.Event()

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        if self.sent:
            self.hung.set()
            await asyncio.Event().wait()
        self.sent.append(message.reply_id)
        return DeliveryReceipt(reply_id=message.reply_id, conversation_id=message.conversation_id,
                               channel=message.channel, status="sent", at=datetime.now(UTC))


async def test_a_worker_killed_mid_batch_leaves_only_the_reply_it_was_sending_uncertain(redis: Redis) -> None:
    ns = f"t{uuid.uuid4().hex}"
    stalled = Stalled()
    # one reply at a time, as a rate limit would: the third was never tried when the worker died
    dying = SendStage(redis, {"email": stalled.send}, namespace=ns, ttl_seconds=600,
                      policy=minimal_policy, cards=CardStore(ns, 600), concurrency=1)
    batch = [record(reply("rep_1"), 1), record(reply("rep_2"), 2), record(reply("rep_3"), 3)]
    attempt = asyncio.ensure_future(dying.process(batch))
    await asyncio.wait_for(stalled.hung.wait(), 10)
    attempt.cancel()  # kill -9: no results written, no receipts produced
    with contextlib.suppress(asyncio.CancelledError):
        await attempt
    channel = Channel()
    restarted = SendStage(redis, {"email": channel.send}, namespace=ns, ttl_seconds=600,
                          policy=minimal_policy, cards=CardStore(ns, 600))
    outs = await restarted.process(batch)
    receipts = [decode(o.value, DeliveryReceipt) for o in outs if o.topic == DELIVERY]
    # rep_1 went out and rep_2 may have: both uncertain; rep_3 was only queued, so it is sent now
    assert channel.sent == ["rep_3"]
    assert {r.reply_id: r.status for r in receipts} == {
        "rep_1": "uncertain", "rep_2": "uncertain", "rep_3": "sent"}


async def test_a_restart_after_the_results_gives_the_receipts_again_and_sends_nothing(redis: Redis) -> None:
    ns = f"t{uuid.uuid4().hex}"
    channel = Channel()
    stage = SendStage(redis, {"email": channel.send}, namespace=ns, ttl_seconds=600,
                      policy=minimal_policy, cards=CardStore(ns, 600))
    batch = [record(reply("rep_r"), 5)]
    first = await stage.process(batch)
    # the worker died after writing the result, before Kafka had the receipt: the batch again
    again = await stage.process(batch)
    # the same reply in another record is a true duplicate: no second receipt
    elsewhere = await stage.process([record(reply("rep_r"), 6)])
    assert channel.sent == ["rep_r"]
    assert [decode(o.value, DeliveryReceipt).status for o in first if o.topic == DELIVERY] == ["sent"]
    assert [decode(o.value, DeliveryReceipt).status for o in again if o.topic == DELIVERY] == ["sent"]
    assert elsewhere == []


async def test_unknown_channel_and_bad_record_are_visible(redis: Redis) -> None:
    ns = f"t{uuid.uuid4().hex}"
    stage = SendStage(redis, {}, namespace=ns, ttl_seconds=600, policy=minimal_policy,
                      cards=CardStore(ns, 600))
    outs = await stage.process([record(reply("rep_d", channel="fax"), 1), record(b"{oops", 2)])
    by_topic = {o.topic: o for o in outs}
    receipt = decode(by_topic[DELIVERY].value, DeliveryReceipt)
    assert receipt.status == "failed"
    assert "no sender is configured for channel 'fax'" in (receipt.reason or "")
    assert DEADLETTER in by_topic
    assert decode(by_topic[DEADLETTER].value, DeadLetter).stage == "send"


# --- the reply guard and the lifecycle event -------------------------------------------

GUARD = [
    GuardRule(name="policy-quoting", phrases=keywords(["company policy"]), action="warn",
              reason="explain the reason, not the rule"),
    GuardRule(name="telling-feelings", phrases=keywords(["calm down"]), action="hold",
              reason="never tell a customer how to feel"),
    GuardRule(name="upsell-before-fix", phrases=keywords(["upgrade to premium"]), action="hold",
              reason="solve the problem first", unresolved_only=True),
]


def guarded_policy() -> Policy:
    return dataclasses.replace(load_policy(EXAMPLE, VOCABULARY), guard=tuple(GUARD))


def agent_reply(reply_id: str, text: str, conversation: str = "con_1") -> OutboundMessage:
    return OutboundMessage(reply_id=reply_id, conversation_id=conversation, channel="email",
                           recipient=Identity(kind="email", value="ada@example.com"),
                           kind="agent_reply", text=text, created_at=datetime.now(UTC),
                           customer_id="cus_ada", queue="billing", author="ana")


async def with_card(redis: Redis, ns: str, conversation: str, status: str) -> CardStore:
    cards = CardStore(ns, 600)
    now = datetime.now(UTC)
    card = ConversationCard(conversation_id=conversation, customer_id="cus_ada", channel="email",
                            recipient=Identity(kind="email", value="ada@example.com"), queue="billing",
                            tier="standard", urgency="normal", priority=1, status="open",
                            opened_at=now, updated_at=now)
    pipe = redis.pipeline(transaction=False)
    cards.queue_write(pipe, {conversation: {**card_fields(card), **status_fields(status)}})  # type: ignore[arg-type]
    await pipe.execute()
    return cards


async def test_guard_holds_or_warns_and_only_a_sent_reply_is_an_answer(redis: Redis) -> None:
    channel = Channel()
    ns = f"t{uuid.uuid4().hex}"
    stage = SendStage(redis, {"email": channel.send}, namespace=ns, ttl_seconds=600,
                      policy=guarded_policy, cards=await with_card(redis, ns, "con_1", "open"))
    outs = await stage.process([
        record(agent_reply("rep_hold", "Please calm down, we are on it."), 1),
        record(agent_reply("rep_warn", "Company Policy says refunds take 5 days."), 2),
        record(agent_reply("rep_sell", "Upgrade to premium and this goes away."), 3),
        record(agent_reply("rep_ok", "Your refund left today."), 4),
    ])
    receipts = {r.reply_id: r for r in
                (decode(o.value, DeliveryReceipt) for o in outs if o.topic == DELIVERY)}
    assert channel.sent == ["rep_warn", "rep_ok"]
    held = receipts["rep_hold"]
    assert held.status == "held" and "telling-feelings" in (held.reason or "")
    assert [(f.rule, f.action, f.matched) for f in held.flags] == [
        ("telling-feelings", "hold", ("calm down",))]
    assert receipts["rep_sell"].status == "held"
    warned = receipts["rep_warn"]
    assert warned.status == "sent" and [f.rule for f in warned.flags] == ["policy-quoting"]
    assert receipts["rep_ok"].flags == ()
    events = [decode(o.value, ConversationEvent) for o in outs if o.topic == CONVERSATION]
    # held replies reached nobody, so they must not stop the customer's clock
    assert sorted(e.reply_id or "" for e in events) == ["rep_ok", "rep_warn"]
    assert {(e.kind, e.customer_id, e.source) for e in events} == {("agent_reply", "cus_ada", "send")}
    # a held reply is final: the same record again (a restart) repeats its verdict, another
    # record of it is a duplicate; neither is a second judgement
    [repeated] = await stage.process([record(agent_reply("rep_hold", "Please calm down."), 1)])
    assert decode(repeated.value, DeliveryReceipt).status == "held"
    assert await stage.process([record(agent_reply("rep_hold", "Please calm down."), 99)]) == []


async def test_upsell_is_allowed_once_the_problem_is_solved(redis: Redis) -> None:
    channel = Channel()
    ns = f"t{uuid.uuid4().hex}"
    stage = SendStage(redis, {"email": channel.send}, namespace=ns, ttl_seconds=600,
                      policy=guarded_policy, cards=await with_card(redis, ns, "con_2", "resolved"))
    await stage.process([record(agent_reply("rep_up", "Glad it works! Upgrade to premium for 24/7.",
                                            "con_2"), 1)])
    assert channel.sent == ["rep_up"]


async def test_acknowledgements_are_not_guarded_nor_answers(redis: Redis) -> None:
    channel = Channel()
    ns = f"t{uuid.uuid4().hex}"
    stage = SendStage(redis, {"email": channel.send}, namespace=ns, ttl_seconds=600,
                      policy=guarded_policy, cards=CardStore(ns, 600))
    ack = msgspec.structs.replace(agent_reply("rep_ack", "Calm down, we have your message."),
                                  kind="acknowledgement")
    outs = await stage.process([record(ack, 1)])
    assert channel.sent == ["rep_ack"]
    assert [o.topic for o in outs] == [DELIVERY]


async def test_per_channel_rate_limit_spaces_sends(redis: Redis) -> None:
    channel = Channel()
    ns = f"t{uuid.uuid4().hex}"
    stage = SendStage(redis, {"email": channel.send}, namespace=ns, ttl_seconds=600,
                      policy=minimal_policy, cards=CardStore(ns, 600), rates={"email": 20.0})
    started = time.monotonic()
    await stage.process([record(reply(f"rep_r{i}"), i) for i in range(30)])
    # a burst of 20 goes at once, the other 10 at 20/s
    assert len(channel.sent) == 30
    assert time.monotonic() - started >= 0.45


async def test_a_sender_that_raises_fails_only_its_reply_and_never_sends_it_again(redis: Redis) -> None:
    channel = Channel()

    async def send(message: OutboundMessage) -> DeliveryReceipt:
        if message.reply_id == "rep_bad":
            raise UnicodeEncodeError("ascii", "Ü", 0, 1, "a header that cannot be encoded")
        return await channel.send(message)

    ns = f"t{uuid.uuid4().hex}"
    stage = SendStage(redis, {"email": send}, namespace=ns, ttl_seconds=600, policy=minimal_policy,
                      cards=CardStore(ns, 600))
    outputs = await stage.process([record(reply("rep_bad"), 1), record(reply("rep_ok"), 2)])
    receipts = {r.reply_id: r for o in outputs if o.topic is DELIVERY
                for r in [decode(o.value, DeliveryReceipt)]}
    assert receipts["rep_ok"].status == "sent" and channel.sent == ["rep_ok"]
    bad = receipts["rep_bad"]
    assert bad.status == "uncertain" and "UnicodeEncodeError" in (bad.reason or "")
    again = await stage.process([record(reply("rep_bad"), 99)])
    assert not [o for o in again if o.topic is DELIVERY]  # settled: another record of it is a duplicate
