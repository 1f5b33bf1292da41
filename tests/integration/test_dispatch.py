"""Dispatch against real Redis and real HTTP: local webhook receivers that check signatures."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr
from redis.asyncio import Redis

from connectors.base import AgentTool, Handoff
from connectors.slack.settings import SlackDestination
from connectors.webhook import (
    WebhookEndpoint,
    WebhookRejected,
    WebhookSettings,
    WebhookTool,
    WebhookUnavailable,
)
from connectors.webhook.settings import WebhookDestination
from processors.dispatch.deliver import Retry
from processors.dispatch.plan import card_for
from processors.dispatch.stage import DispatchStage
from processors.policy.load import load_policy
from processors.policy.model import Destination, Policy, Queue
from processors.stage import Output, Record
from processors.stores.cards import CardStore, status_fields
from router.settings import Settings
from router.vocabulary import VOCABULARY
from schemas import DeadLetter, DeliveryReceipt, EmailExtras, Identity, InboundMessage, decode, encode
from schemas.errors import PermanentError
from schemas.handoff import HandoffReceipt
from schemas.ids import delivery_id
from schemas.outbound import GuardFlag
from schemas.routed import CallbackTask, RoutedConversation, TransferNote
from schemas.sla import SlaEvent
from schemas.topics import DEADLETTER, HANDOFF
from tests.receivers.webhook import WebhookReceiver
from tests.waiting import POLL_SECONDS

pytestmark = pytest.mark.integration
SECRET = b"receiver-secret"
NOW = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
MINIMAL = Path(__file__).resolve().parents[1] / "fixtures" / "policy" / "valid_minimal.yaml"
PREFIX = "t-dispatch-"  # topics carry a deployment prefix; the stage reads the suffix
FAST = Retry(base=0.02, cap=0.2, attempt_timeout=5.0)


# --- the parts ---------------------------------------------------------------------------

@pytest.fixture
async def redis(stack: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(stack.redis_dsn)
    yield client
    await client.aclose()


Start = Callable[..., Awaitable[WebhookReceiver]]


@pytest.fixture
async def receiver() -> AsyncIterator[Start]:
    """Starts local webhook receivers; all stop after the test."""
    started: list[WebhookReceiver] = []

    async def start(secret: bytes = SECRET) -> WebhookReceiver:
        r = WebhookReceiver(secret)
        await r.start()
        started.append(r)
        return r

    yield start
    for r in started:
        await r.stop()


Tools = Callable[..., Awaitable[WebhookTool]]


@pytest.fixture
async def webhooks() -> AsyncIterator[Tools]:
    """Starts webhook tools for named receivers; all stop after the test."""
    started: list[WebhookTool] = []

    async def start(secret: bytes = SECRET, timeout: float = 2.0,
                    **receivers: WebhookReceiver) -> WebhookTool:
        tool = WebhookTool(WebhookSettings(timeout_seconds=timeout), {
            name.replace("_", "-"): WebhookEndpoint(url=r.url, secret=SecretStr(secret.decode()))
            for name, r in receivers.items()})
        await tool.start()
        started.append(tool)
        return tool

    yield start
    for tool in started:
        await tool.stop()


def policy_of(queues: Mapping[str, Sequence[str]], *destinations: Destination) -> Policy:
    return dataclasses.replace(load_policy(MINIMAL, VOCABULARY), queues={
        n: Queue(n, None, tuple(d)) for n, d in queues.items()}, default_queue=next(iter(queues)),
        destinations={d.name: d for d in destinations})


def slack_x(name: str = "slack-x", fallback: str | None = None) -> Destination:
    return Destination(name, "slack", SlackDestination(channel="C0X"), fallback=fallback)


def hook(name: str, fallback: str | None = None, seconds: float = 1.0) -> Destination:
    return Destination(name, "webhook", WebhookDestination(url="http://unused", secret_env="UNUSED"),
                       fallback=fallback, deadline=timedelta(seconds=seconds))


def stage(redis: Redis, tools: Mapping[str, AgentTool[Any]], policy: Policy | Callable[[], Policy],
          ns: str, **kwargs: Any) -> DispatchStage:
    current = policy if callable(policy) else (lambda: policy)
    defaults = {"breaker_threshold": 3, "cards": CardStore(ns, 600), "thread_ttl_seconds": 600}
    return DispatchStage(redis, lambda: tools, current, namespace=ns, ttl_seconds=600, retry=FAST,
                         **{**defaults, **kwargs})


def routed(event: str, conversation: str = "con_1", queue: str = "general", transfers: int = 0,
           text: str = "Where is my parcel?") -> RoutedConversation:
    message = InboundMessage(
        event_id=event, channel="email", native_id=f"<{event}@example.com>", thread_key="t",
        sender=Identity(kind="email", value="ada@example.com"), received_at=NOW, text=text,
        subject="Parcel 1234", extras=EmailExtras(message_id=f"{event}@example.com"))
    return RoutedConversation(event_id=event, conversation_id=conversation, customer_id="cus_ada",
                              queue=queue, priority=3, tier="standard", urgency="normal",
                              first_response_due=NOW + timedelta(hours=8), routed_at=NOW, message=message,
                              decisions=(), customer_name="Ada", transfers=transfers)


def record(event: msgspec.Struct | bytes, offset: int = 0, topic: str = "sb.routed.v1") -> Record:
    return Record(PREFIX + topic, 0, offset, event if isinstance(event, bytes) else encode(event))


def receipts(outputs: Sequence[Output]) -> list[HandoffReceipt]:
    return [decode(o.value, HandoffReceipt) for o in outputs if o.topic == HANDOFF]


def namespace() -> str:
    return f"t{uuid.uuid4().hex}"


def roundtrips() -> float:
    return REGISTRY.get_sample_value("sb_redis_roundtrips_total", {"stage": "dispatch"}) or 0.0


async def eventually(check: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"still not true after {timeout}s: {what}"
        await asyncio.sleep(POLL_SECONDS)


# --- delivery ----------------------------------------------------------------------------

async def test_a_routed_message_arrives_signed_and_the_card_is_written(
        redis: Redis, receiver: Start, webhooks: Tools) -> None:
    ns, a = namespace(), await receiver()
    tool = await webhooks(helpdesk=a)
    s = stage(redis, {"helpdesk": tool}, policy_of({"general": ["helpdesk"]}, hook("helpdesk")), ns)
    before = roundtrips()
    [receipt] = receipts(await s.process([record(routed("ev_1"), 1)]))
    assert roundtrips() - before == 2
    expected = delivery_id("routed:ev_1", "helpdesk")
    assert (receipt.status, receipt.destination, receipt.intended, receipt.attempts, receipt.reason) == (
        "delivered", "helpdesk", "helpdesk", 1, None)
    assert (receipt.delivery_id, receipt.event_id, receipt.conversation_id) == (expected, "ev_1", "con_1")
    [got] = a.deliveries
    assert a.rejected == [] and (got.delivery_id, got.event) == (expected, "conversation.routed")
    assert set(got.body) == {"event", "delivery_id", "conversation", "routed", "receipt", "text"}
    assert got.body["routed"]["event_id"] == "ev_1" and got.body["receipt"] is None
    assert got.body["conversation"]["in_reply_to"] == "ev_1@example.com"
    card = await CardStore(ns, 600).get(redis, "con_1")
    assert card is not None
    assert (card.status, card.messages, card.queue, card.customer_name) == ("open", 1, "general", "Ada")
    assert card.recipient.value == "ada@example.com" and card.destinations == {"helpdesk": ""}


async def test_a_receiver_failing_twice_gets_it_once_after_retries(
        redis: Redis, receiver: Start, webhooks: Tools) -> None:
    a = await receiver()
    a.fail(2, status=500)
    tool = await webhooks(helpdesk=a)
    s = stage(redis, {"helpdesk": tool}, policy_of({"general": ["helpdesk"]}, hook("helpdesk", seconds=5)),
              namespace())
    [receipt] = receipts(await s.process([record(routed("ev_1"), 1)]))
    assert (receipt.status, receipt.attempts, receipt.destination) == ("delivered", 3, "helpdesk")
    assert len(a.requests) == 3 and a.delivery_ids == [delivery_id("routed:ev_1", "helpdesk")]


async def test_a_destination_that_stays_down_opens_its_breaker_and_the_fallback_takes_over(
        redis: Redis, receiver: Start, webhooks: Tools) -> None:
    down, backup = await receiver(), await receiver()
    down.go_down(503)
    tool = await webhooks(helpdesk=down, backup=backup)
    policy = policy_of({"general": ["helpdesk"]}, hook("helpdesk", fallback="backup", seconds=5),
                       hook("backup"))
    s = stage(redis, {"helpdesk": tool, "backup": tool}, policy, namespace())
    [first] = receipts(await s.process([record(routed("ev_1", "con_1"), 1)]))
    assert (first.status, first.intended, first.destination) == ("delivered", "helpdesk", "backup")
    assert first.reason is not None and "circuit open after 3 consecutive failures" in first.reason
    assert "HTTP 503" in first.reason and first.delivery_id == delivery_id("routed:ev_1", "backup")
    assert len(down.requests) == 3 and backup.delivery_ids == [first.delivery_id]
    # the breaker stays open: the next conversation goes straight to the fallback
    [second] = receipts(await s.process([record(routed("ev_2", "con_2"), 2)]))
    assert second.destination == "backup" and second.attempts == 1 and len(down.requests) == 3
    assert s.breakers["helpdesk"].state.value == "open"


async def test_when_every_option_fails_the_receipt_fails_with_a_dead_letter_and_the_alert(
        redis: Redis, receiver: Start, webhooks: Tools, caplog: pytest.LogCaptureFixture) -> None:
    first, second = await receiver(), await receiver()
    first.go_down(500)
    second.go_down(502)
    name = f"hook-{uuid.uuid4().hex[:8]}"  # the alert's label is the intended destination
    tool = WebhookTool(WebhookSettings(timeout_seconds=2), {
        name: WebhookEndpoint(url=first.url, secret=SecretStr(SECRET.decode())),
        "spare": WebhookEndpoint(url=second.url, secret=SecretStr(SECRET.decode()))})
    await tool.start()
    try:
        s = stage(redis, {name: tool, "spare": tool}, policy_of(
            {"general": [name]}, hook(name, fallback="spare"), hook("spare")), namespace())
        raw = record(routed("ev_1"), 7)
        with caplog.at_level(logging.ERROR, logger="processors.dispatch"):
            outputs = await s.process([raw])
    finally:
        await tool.stop()
    [receipt] = receipts(outputs)
    assert (receipt.status, receipt.intended, receipt.destination) == ("failed", name, name)
    assert receipt.reason is not None and receipt.reason.endswith("no fallback left")
    assert "HTTP 500" in receipt.reason and "spare: " in receipt.reason and "HTTP 502" in receipt.reason
    [letter] = [decode(o.value, DeadLetter) for o in outputs if o.topic == DEADLETTER]
    assert (letter.stage, letter.original, letter.source_offset) == ("dispatch", raw.value, 7)
    assert letter.reason.startswith(f"handoff to {name} failed")
    assert REGISTRY.get_sample_value("switchboard_handoff_failed_total", {"destination": name}) == 1
    assert any(r.getMessage().startswith("handoff failed") and getattr(r, "conversation_id", "") == "con_1"
               for r in caplog.records)


async def test_a_destination_without_a_tool_fails_over_with_a_clear_reason(
        redis: Redis, receiver: Start, webhooks: Tools) -> None:
    a = await receiver()
    tool = await webhooks(helpdesk=a)
    s = stage(redis, {"helpdesk": tool}, policy_of(
        {"general": ["slack-x"]}, slack_x(fallback="helpdesk"), hook("helpdesk")),
        namespace())
    [receipt] = receipts(await s.process([record(routed("ev_1"), 1)]))
    assert (receipt.status, receipt.destination) == ("delivered", "helpdesk")
    assert receipt.reason == ("slack-x: no agents' tool is configured for destination 'slack-x'; "
                              "delivered to its fallback helpdesk")


async def test_a_bad_signature_is_refused_and_never_retried(
        redis: Redis, receiver: Start, webhooks: Tools) -> None:
    a = await receiver()
    tool = await webhooks(secret=b"not-the-receivers", helpdesk=a)
    s = stage(redis, {"helpdesk": tool}, policy_of({"general": ["helpdesk"]}, hook("helpdesk")), namespace())
    [receipt] = receipts(await s.process([record(routed("ev_1"), 1)]))
    assert (receipt.status, receipt.attempts) == ("failed", 1)
    assert "HTTP 401" in (receipt.reason or "")
    assert a.deliveries == [] and a.rejected == ["signature does not match the body"]


# --- nothing twice -----------------------------------------------------------------------

async def test_the_same_records_again_deliver_nothing_twice(
        redis: Redis, receiver: Start, webhooks: Tools) -> None:
    ns, a = namespace(), await receiver()
    tool = await webhooks(helpdesk=a)
    policy = policy_of({"general": ["helpdesk"]}, hook("helpdesk"))
    held = DeliveryReceipt(reply_id="rep_1", conversation_id="con_1", channel="email", status="held",
                           at=NOW, kind="agent_reply", reason="held by the reply guard")
    batch = [record(routed("ev_1"), 1), record(routed("ev_1"), 2), record(held, 3, "sb.delivery.v1")]
    first = receipts(await stage(redis, {"helpdesk": tool}, policy, ns).process(batch))
    assert [r.event_id for r in first] == ["ev_1", "rep_1"]
    # a new worker (after a restart or a rebalance) reads the same records: nothing is
    # delivered again, and their receipts come again (the first ones may never have reached Kafka)
    again = receipts(await stage(redis, {"helpdesk": tool}, policy, ns).process(batch))
    assert [(r.event_id, r.status) for r in again] == [("ev_1", "delivered"), ("rep_1", "delivered")]
    # the same items in other records (a replay upstream) are duplicates: no receipt either
    elsewhere = [record(routed("ev_1"), 11), record(held, 13, "sb.delivery.v1")]
    assert await stage(redis, {"helpdesk": tool}, policy, ns).process(elsewhere) == []
    assert [d.event for d in a.deliveries] == ["conversation.routed", "reply.receipt"]
    card = await CardStore(ns, 600).get(redis, "con_1")
    assert card is not None and card.messages == 1


async def test_a_delivery_cut_short_by_a_crash_is_delivered_again_with_the_same_id(
        redis: Redis, receiver: Start, webhooks: Tools) -> None:
    ns, a = namespace(), await receiver()
    tool = await webhooks(helpdesk=a)
    policy = policy_of({"general": ["helpdesk"]}, hook("helpdesk", seconds=5))
    a.hold()
    crashed = asyncio.create_task(stage(redis, {"helpdesk": tool}, policy, ns).process(
        [record(routed("ev_1"), 1)]))
    await eventually(lambda: a.in_flight == 1, what="the delivery reached the receiver")
    crashed.cancel()  # the worker dies between the claim and the outcome
    with pytest.raises(asyncio.CancelledError):
        await crashed
    a.release()
    [receipt] = receipts(await stage(redis, {"helpdesk": tool}, policy, ns).process(
        [record(routed("ev_1"), 1)]))
    expected = delivery_id("routed:ev_1", "helpdesk")
    assert receipt.status == "delivered" and receipt.delivery_id == expected
    assert "delivered again with the same delivery id" in (receipt.reason or "")
    # the receiver may have seen it twice; it dedupes on the id, which never changed
    await eventually(lambda: expected in a.delivery_ids)
    assert set(a.delivery_ids) == {expected}


# --- conversations -----------------------------------------------------------------------

async def test_a_follow_up_reaches_the_same_destination_and_a_transfer_moves_it(
        redis: Redis, receiver: Start, webhooks: Tools) -> None:
    ns, a, b = namespace(), await receiver(), await receiver()
    tool = await webhooks(hook_a=a, hook_b=b)
    policy = policy_of({"general": ["hook-a"], "billing": ["hook-b"]}, hook("hook-a"), hook("hook-b"))
    current = [policy]
    s = stage(redis, {"hook-a": tool, "hook-b": tool}, lambda: current[0], ns)
    await s.process([record(routed("ev_1"), 1)])
    # the team moves to another tool; a conversation already under way stays where it is worked
    current[0] = policy_of({"general": ["hook-b"], "billing": ["hook-b"]}, hook("hook-a"), hook("hook-b"))
    [follow] = receipts(await s.process([record(routed("ev_2"), 2)]))
    assert follow.destination == "hook-a"
    assert [d.body["routed"]["event_id"] for d in a.deliveries] == ["ev_1", "ev_2"]
    [moved] = receipts(await s.process([record(routed("ev_3", queue="billing", transfers=1), 3)]))
    assert moved.destination == "hook-b" and [d.body["routed"]["event_id"] for d in b.deliveries] == ["ev_3"]
    card = await CardStore(ns, 600).get(redis, "con_1")
    assert card is not None
    assert (card.queue, card.transfers, card.messages, card.destinations) == ("billing", 1, 3, {"hook-b": ""})


async def test_a_receipt_and_an_sla_notice_reach_the_conversations_destination(
        redis: Redis, receiver: Start, webhooks: Tools) -> None:
    a = await receiver()
    tool = await webhooks(helpdesk=a)
    s = stage(redis, {"helpdesk": tool}, policy_of({"general": ["helpdesk"]}, hook("helpdesk")), namespace())
    await s.process([record(routed("ev_1"), 1)])
    flag = GuardFlag(rule="telling-feelings", action="hold", matched=("calm down",),
                     reason="never tell a customer how to feel")
    held = DeliveryReceipt(reply_id="rep_1", conversation_id="con_1", channel="email", status="held",
                           at=NOW, kind="agent_reply", reason="held by the reply guard", flags=(flag,))
    breach = SlaEvent(event_id="sla_1", kind="breach", conversation_id="con_1", customer_id="cus_ada",
                      target="first_response", due_at=NOW, at=NOW, reasons=("tier=standard",))
    out = receipts(await s.process([record(held, 2, "sb.delivery.v1"), record(breach, 3, "sb.sla.v1")]))
    assert [(r.event_id, r.destination, r.status) for r in out] == [
        ("rep_1", "helpdesk", "delivered"), ("sla_1", "helpdesk", "delivered")]
    _, told, notice = a.deliveries
    assert told.event == "reply.receipt" and told.body["receipt"]["status"] == "held"
    assert told.body["receipt"]["flags"][0]["rule"] == "telling-feelings"
    assert told.body["text"] == "Reply rep_1 was held: held by the reply guard [hold: telling-feelings]"
    assert notice.event == "conversation.event"
    assert notice.body["text"] == "SLA breached: first response was due 2026-03-03 09:00 UTC - tier=standard"


class Threads(AgentTool[None]):
    """Stands in for a tool with threads (Slack): a new thread per conversation, replies in it."""

    def __init__(self) -> None:
        super().__init__(None)
        self.seen: list[Handoff] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def deliver(self, handoff: Handoff) -> str:
        self.seen.append(handoff)
        return handoff.thread or f"ts-{len(self.seen)}"


async def test_a_follow_up_in_one_batch_lands_in_the_thread_its_first_message_opened(redis: Redis) -> None:
    ns, slack = namespace(), Threads()
    s = stage(redis, {"slack": slack}, policy_of({"general": ["slack"]}, slack_x("slack")), ns)
    await s.process([record(routed("ev_1"), 1), record(routed("ev_2"), 2)])
    assert [(h.routed.event_id if h.routed else "", h.thread) for h in slack.seen] == [
        ("ev_1", ""), ("ev_2", "ts-1")]
    cards = CardStore(ns, 600)
    card = await cards.get(redis, "con_1")
    assert card is not None and card.destinations == {"slack": "ts-1"} and card.messages == 2
    assert await cards.conversation_of(redis, "slack", "ts-1") == "con_1"


async def test_conversations_are_delivered_concurrently_and_each_in_order(
        redis: Redis, receiver: Start, webhooks: Tools) -> None:
    a = await receiver()
    a.meet(4)  # the first four requests wait until all four are in flight at once
    tool = await webhooks(helpdesk=a)
    s = stage(redis, {"helpdesk": tool}, policy_of({"general": ["helpdesk"]}, hook("helpdesk", seconds=10)),
              namespace())
    batch = [record(routed(f"ev_{c}_{n}", f"con_{c}"), 10 * c + n) for n in range(3) for c in range(4)]
    before = roundtrips()
    out = receipts(await s.process(batch))
    assert roundtrips() - before == 2
    assert len(out) == 12 and {r.status for r in out} == {"delivered"}
    assert a.max_in_flight == 4
    for c in range(4):
        order = [d.body["routed"]["event_id"] for d in a.deliveries if d.body["conversation"]
                 ["conversation_id"] == f"con_{c}"]
        assert order == [f"ev_{c}_0", f"ev_{c}_1", f"ev_{c}_2"]


async def test_bad_records_are_dead_lettered_and_the_rest_flows(
        redis: Redis, receiver: Start, webhooks: Tools) -> None:
    a = await receiver()
    tool = await webhooks(helpdesk=a)
    s = stage(redis, {"helpdesk": tool}, policy_of({"general": ["helpdesk"]}, hook("helpdesk")), namespace())
    out = await s.process([record(b"{oops", 1), record(routed("ev_1"), 2, "sb.inbound.v1"),
                           record(routed("ev_2"), 3)])
    letters = [decode(o.value, DeadLetter) for o in out if o.topic == DEADLETTER]
    assert [letter.source_offset for letter in letters] == [1, 2]
    assert "dispatch does not read topic" in letters[1].reason
    assert [r.event_id for r in receipts(out)] == ["ev_2"]


# --- the webhook tool at the edge --------------------------------------------------------

def handoff(destination: str = "helpdesk") -> Handoff:
    return Handoff(delivery_id="dlv_x", destination=destination, event="conversation.routed",
                   card=card_for(routed("ev_1"), None, NOW), routed=routed("ev_1"))


async def test_the_webhook_tool_maps_answers_to_transient_or_permanent(
        receiver: Start, webhooks: Tools) -> None:
    a = await receiver()
    tool = await webhooks(timeout=0.3, helpdesk=a)
    a.fail(1, status=429, retry_after="2")
    with pytest.raises(WebhookUnavailable) as busy:
        await tool.deliver(handoff())
    assert busy.value.status == 429 and busy.value.retry_after == 2.0
    a.fail(1, status=404)
    with pytest.raises(WebhookRejected) as gone:
        await tool.deliver(handoff())
    assert gone.value.status == 404 and not gone.value.retriable
    a.fail(1, status=408)
    with pytest.raises(WebhookUnavailable):
        await tool.deliver(handoff())
    a.hold()
    with pytest.raises(WebhookUnavailable, match=r"no answer within 0\.3s"):
        await tool.deliver(handoff())
    a.release()
    assert await tool.deliver(handoff()) == ""
    with pytest.raises(PermanentError, match="no webhook endpoint"):
        await tool.deliver(handoff("elsewhere"))


async def test_the_webhook_tool_reports_a_refused_connection_as_transient(receiver: Start,
                                                                        webhooks: Tools) -> None:
    a = await receiver()
    tool = await webhooks(helpdesk=a)
    await a.stop()
    with pytest.raises(WebhookUnavailable, match="webhook helpdesk"):
        await tool.deliver(handoff())


# --- the plan in Redis: the script against Python, and the layout before it --------------

def followed(event: str, conversation: str = "con_1", queue: str = "general") -> RoutedConversation:
    """A follow-up saying less than the first message: no subject, no name, a callback owed."""
    first = routed(event, conversation, queue)
    assert first.message is not None
    return msgspec.structs.replace(first, customer_name=None, callback=CallbackTask(number=None, due=None),
                                   message=msgspec.structs.replace(first.message, subject=None))


async def test_the_script_writes_the_card_python_plans_in_two_round_trips(
        redis: Redis, receiver: Start, webhooks: Tools, caplog: pytest.LogCaptureFixture) -> None:
    ns, a, b = namespace(), await receiver(), await receiver()
    tool = await webhooks(hook_a=a, hook_b=b)
    policy = policy_of({"general": ["hook-a"], "billing": ["hook-b", "hook-a"]},
                       hook("hook-a"), hook("hook-b"))
    s = stage(redis, {"hook-a": tool, "hook-b": tool}, policy, ns)
    cards = CardStore(ns, 600)
    await s.process([record(routed("ev_1"), 1)])
    # the brain moved the status on; its field is the card's status from then on
    pipe = redis.pipeline(transaction=False)
    cards.queue_write(pipe, {"con_1": status_fields("waiting_on_customer")})
    await pipe.execute()
    held = DeliveryReceipt(reply_id="rep_1", conversation_id="con_1", channel="email", status="held",
                           at=NOW, kind="agent_reply", reason="held by the reply guard")
    before = roundtrips()
    with caplog.at_level(logging.INFO, logger="processors.dispatch"):
        out = receipts(await s.process([
            record(followed("ev_2"), 2), record(held, 3, "sb.delivery.v1"),
            # moved to billing by a new message: the old threads are dropped, two destinations
            record(routed("ev_3", queue="billing", transfers=1), 4), record(routed("ev_4", "con_2"), 5)]))
    assert roundtrips() - before == 2
    assert not [r for r in caplog.records if "planned" in r.getMessage()]
    assert [(r.event_id, r.destination) for r in out] == [
        ("ev_2", "hook-a"), ("rep_1", "hook-a"), ("ev_3", "hook-b"), ("ev_3", "hook-a"), ("ev_4", "hook-a")]
    card = await cards.get(redis, "con_1")
    assert card is not None
    first = msgspec.structs.replace(card_for(routed("ev_1"), None, NOW), status="waiting_on_customer")
    second = card_for(followed("ev_2"), first, NOW)
    expected = card_for(routed("ev_3", queue="billing", transfers=1), second, NOW)
    # what the tools were told is what Redis holds, field by field
    told = [d.body["conversation"] for d in b.deliveries]
    assert told[-1]["messages"] == 3 and told[-1]["subject"] == "Parcel 1234"
    assert msgspec.structs.replace(card, updated_at=NOW) == msgspec.structs.replace(
        expected, destinations={"hook-b": "", "hook-a": ""})
    assert (card.status, card.customer_name, card.callback) == ("waiting_on_customer", "Ada",
                                                                CallbackTask(number=None, due=None))


async def test_a_transfers_handoff_and_a_continuations_answer_are_planned_in_the_script_too(
        redis: Redis, receiver: Start, webhooks: Tools, caplog: pytest.LogCaptureFixture) -> None:
    ns, a, b = namespace(), await receiver(), await receiver()
    tool = await webhooks(hook_a=a, hook_b=b)
    policy = policy_of({"general": ["hook-a"], "billing": ["hook-b"]}, hook("hook-a"), hook("hook-b"))
    s = stage(redis, {"hook-a": tool, "hook-b": tool}, policy, ns)
    await s.process([record(routed("ev_1"), 1), record(routed("ev_9", "con_9"), 2)])
    moved = msgspec.structs.replace(routed("ho_1", queue="billing", transfers=1), message=None,
                                    transfer=TransferNote(from_queue="general", at=NOW, by="maria"))
    answer = routed("ev_10", "con_9")
    assert answer.message is not None
    answer = msgspec.structs.replace(answer, message=msgspec.structs.replace(
        answer.message, channel="chat", tags=("continuation",)))
    before = roundtrips()
    with caplog.at_level(logging.INFO, logger="processors.dispatch"):
        out = receipts(await s.process([record(moved, 3), record(routed("ev_2", queue="billing"), 4),
                                        record(answer, 5)]))
    assert roundtrips() - before == 2
    assert not [r for r in caplog.records if "planned" in r.getMessage()]
    assert [(r.event_id, r.destination) for r in out] == [("ho_1", "hook-b"), ("ev_2", "hook-b"),
                                                         ("ev_10", "hook-a")]
    cards = CardStore(ns, 600)
    card, kept = await cards.get(redis, "con_1"), await cards.get(redis, "con_9")
    assert card is not None
    assert (card.queue, card.messages, card.destinations) == ("billing", 2, {"hook-b": ""})
    assert kept is not None and (kept.channel, kept.messages) == ("email", 2)
    # the script's cards are Python's, field by field
    first = card_for(routed("ev_1"), None, NOW)
    expected = card_for(routed("ev_2", queue="billing"), card_for(moved, first, NOW), NOW)
    assert msgspec.structs.replace(card, updated_at=NOW) == msgspec.structs.replace(
        expected, destinations={"hook-b": ""})
    expected = card_for(answer, card_for(routed("ev_9", "con_9"), None, NOW), NOW)
    assert msgspec.structs.replace(kept, updated_at=NOW) == msgspec.structs.replace(
        expected, destinations={"hook-a": ""})
    # replayed, the same records find their plans saved: nothing is delivered again
    again = receipts(await stage(redis, {"hook-a": tool, "hook-b": tool}, policy, ns).process(
        [record(moved, 3), record(routed("ev_2", queue="billing"), 4), record(answer, 5)]))
    assert [r.event_id for r in again] == ["ho_1", "ev_2", "ev_10"]
    assert len(b.deliveries) == 2 and len(a.deliveries) == 3


async def test_a_card_the_script_cannot_plan_from_is_planned_in_python_before_delivery(
        redis: Redis, caplog: pytest.LogCaptureFixture) -> None:
    ns, slack = namespace(), Threads()
    s = stage(redis, {"slack": slack}, policy_of({"general": ["slack"]}, slack_x("slack")), ns)
    # a card keeping its thread references in its JSON, as none written since the `dest:` fields do
    old = msgspec.structs.replace(card_for(routed("ev_1"), None, NOW), destinations={"slack": "ts-9"})
    pipe = redis.pipeline(transaction=False)
    CardStore(ns, 600).queue_write(pipe, {"con_1": {"card": encode(old)}})
    await pipe.execute()
    before = roundtrips()
    with caplog.at_level(logging.INFO, logger="processors.dispatch"):
        [receipt] = receipts(await s.process([record(routed("ev_2"), 2)]))
    assert roundtrips() - before == 3
    assert any(r.getMessage() == "dispatch planned part of a batch again" for r in caplog.records)
    assert (receipt.destination, receipt.status) == ("slack", "delivered")
    assert [h.thread for h in slack.seen] == ["ts-9"]
    card = await CardStore(ns, 600).get(redis, "con_1")
    assert card is not None and card.messages == 2
    # its plan was saved before the delivery: the record again delivers nothing
    again = receipts(await stage(redis, {"slack": slack}, policy_of({"general": ["slack"]}, slack_x("slack")),
                                 ns).process([record(routed("ev_2"), 2)]))
    assert [r.status for r in again] == ["delivered"] and len(slack.seen) == 1
