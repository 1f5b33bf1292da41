"""The Slack tool against a local Slack, and agents' thread replies through the real app to Kafka."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from pydantic import SecretStr
from redis.asyncio import Redis

from connectors.base import Handoff
from connectors.slack.errors import SlackRejected, SlackUnavailable
from connectors.slack.routes import CLOSED, PATH
from connectors.slack.settings import SlackDestination, SlackSettings
from connectors.slack.tool import SlackTool
from processors.dispatch.stage import DispatchStage
from processors.policy.load import load_policy
from processors.policy.model import Destination, Queue
from processors.stage import Record
from processors.stores.cards import CardStore, card_fields, status_fields, thread_fields
from processors.stores.tags import Tags
from router.http.app import edge_app
from router.kafka import ensure_topics, new_producer
from router.settings import Settings
from router.vocabulary import VOCABULARY
from schemas import Decision, Identity, InboundMessage, RoutedConversation, decode, encode
from schemas.conversation import ConversationCard, ConversationEvent, Status
from schemas.errors import AuthError, PermanentError, TransientError
from schemas.ids import agent_reply_id
from schemas.outbound import DeliveryReceipt, OutboundMessage
from schemas.routed import CallbackTask
from schemas.topics import CONVERSATION, DELIVERY, OUTBOUND, ROUTED
from tests.emulators import slack
from tests.emulators.slack import SlackEmulator
from tests.kafka_tools import read_all, unique_prefix
from tests.processes import free_port
from tests.waiting import POLL_SECONDS

pytestmark = pytest.mark.integration

SECRET = "slack-signing-secret-for-tests"
SUPPORT, SOCIAL = "C0SUPPORT", "C0SOCIAL"
DESTINATION = "slack-support"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ADA = Identity(kind="email", value="ada@example.com")
MINIMAL = Path(__file__).resolve().parents[1] / "fixtures" / "policy" / "valid_minimal.yaml"


def settings_for(emulator: SlackEmulator, token: str | None = None) -> SlackSettings:
    return SlackSettings(bot_token=SecretStr(token or emulator.token), signing_secret=SecretStr(SECRET),
                         base_url=emulator.base_url, timeout_seconds=5)


@pytest.fixture
async def emulator() -> AsyncIterator[SlackEmulator]:
    running = await SlackEmulator(channels={SUPPORT: "support", SOCIAL: "social"}).start()
    yield running
    await running.stop()


@pytest.fixture
async def tool(emulator: SlackEmulator) -> AsyncIterator[SlackTool]:
    started = SlackTool(settings_for(emulator), {DESTINATION: SUPPORT, "slack-gone": "C0ARCHIVED"})
    await started.start()
    yield started
    await started.stop()


def card(conversation_id: str, **changes: Any) -> ConversationCard:
    fields: dict[str, Any] = {
        "conversation_id": conversation_id, "customer_id": "cus_ada", "channel": "email", "recipient": ADA,
        "queue": "billing", "tier": "premium", "urgency": "high", "priority": 2, "status": "open",
        "opened_at": T0, "updated_at": T0, "subject": "Order 1234 never arrived",
        "in_reply_to": "<m-2@example.com>", "references": ("<m-1@example.com>", "<m-2@example.com>"),
        "customer_name": "Ada Lovelace",
    }
    return ConversationCard(**(fields | changes))


def routed(conversation_id: str, text: str) -> RoutedConversation:
    message = InboundMessage(event_id="ev_1", channel="email", native_id="m-2@example.com", thread_key="m-1",
                             sender=ADA, received_at=T0, text=text, subject="Order 1234 never arrived")
    return RoutedConversation(
        event_id="ev_1", conversation_id=conversation_id, customer_id="cus_ada", queue="billing", priority=2,
        tier="premium", urgency="high", first_response_due=T0 + timedelta(hours=1), routed_at=T0,
        message=message, customer_name="Ada Lovelace",
        decisions=(Decision(stage="classify", outcome="high",
                            reasons=("urgency=high: keyword 'never arrived'",)),))


def handoff(conversation_id: str, thread: str = "", destination: str = DESTINATION, **items: Any) -> Handoff:
    if not items:
        items = {"routed": routed(conversation_id, "Where is my parcel? <order 1234>")}
    event = ("conversation.routed" if "routed" in items else
             "reply.receipt" if "receipt" in items else "conversation.event")
    return Handoff(delivery_id=f"dlv_{conversation_id}_{thread}", destination=destination, event=event,
                   card=card(conversation_id), thread=thread, **items)


# --- the tool ---------------------------------------------------------------------------

async def test_a_conversation_opens_a_thread_and_everything_after_lands_in_it(
        emulator: SlackEmulator, tool: SlackTool) -> None:
    ts = await tool.deliver(handoff("con_thread"))
    [first] = emulator.posts
    assert (first.channel, first.ts, first.thread_ts) == (SUPPORT, ts, None)
    assert [b["type"] for b in first.blocks] == ["header", "section", "section", "context", "context"]
    assert "start with `note:` for an internal note" in first.blocks[-1]["elements"][0]["text"]
    assert first.blocks[0]["text"]["text"] == "Ada Lovelace · premium · high urgency · P2"
    assert "Where is my parcel? &lt;order 1234&gt;" in first.blocks[2]["text"]["text"]
    assert first.text and first.text.startswith("Ada Lovelace (premium, high, P2) on email in billing")
    assert (first.args["unfurl_links"], first.args["unfurl_media"]) == (False, False)

    follow_up = handoff("con_thread", thread=ts, routed=routed("con_thread", "Any news?"))
    receipt = handoff("con_thread", thread=ts, receipt=DeliveryReceipt(
        reply_id="rep_1", conversation_id="con_thread", channel="email", status="sent", at=T0))
    notice = handoff("con_thread", thread=ts, text="SLA warning: first response due in 10 minutes")
    assert [await tool.deliver(h) for h in (follow_up, receipt, notice)] == [ts, ts, ts]
    later = emulator.posts[1:]
    assert [(p.channel, p.thread_ts) for p in later] == [(SUPPORT, ts)] * 3
    assert "*Ada Lovelace wrote again*" in later[0].blocks[0]["text"]["text"]
    assert later[1].blocks[0]["text"]["text"].startswith(":white_check_mark: Reply sent")
    assert later[2].text == ":information_source: SLA warning: first response due in 10 minutes"
    assert len({p.ts for p in emulator.posts}) == 4


async def test_slack_failures_are_mapped_into_the_error_tree(emulator: SlackEmulator,
                                                             tool: SlackTool) -> None:
    emulator.rate_limit(retry_after=7)
    with pytest.raises(SlackUnavailable) as limited:
        await tool.deliver(handoff("con_errors"))
    assert (limited.value.status, limited.value.retry_after, limited.value.retriable) == (429, 7.0, True)
    emulator.fail(status=503)
    with pytest.raises(SlackUnavailable) as down:
        await tool.deliver(handoff("con_errors"))
    assert down.value.status == 503 and "http_503" in down.value.reason
    with pytest.raises(SlackRejected) as gone:
        await tool.deliver(handoff("con_errors", destination="slack-gone"))
    assert gone.value.error == "channel_not_found" and not gone.value.retriable
    with pytest.raises(PermanentError, match="no Slack channel for destination 'nowhere'"):
        await tool.deliver(handoff("con_errors", destination="nowhere"))
    # after all that, Slack is fine again and the post goes through
    assert await tool.deliver(handoff("con_errors"))
    assert emulator.calls.count("chat.postMessage") == 4
    emulator.token = "xoxb-rotated"  # the token was revoked while running
    with pytest.raises(AuthError, match="invalid_auth"):
        await tool.deliver(handoff("con_errors"))


async def test_a_refused_token_is_an_auth_error_at_start(emulator: SlackEmulator) -> None:
    refused = SlackTool(settings_for(emulator, token="xoxb-revoked"), {DESTINATION: SUPPORT})
    with pytest.raises(AuthError, match="invalid_auth"):
        await refused.start()
    with pytest.raises(SlackUnavailable, match="not started"):
        await refused.deliver(handoff("con_auth"))
    await refused.stop()


async def test_slack_away_is_transient(emulator: SlackEmulator) -> None:
    away = SlackTool(SlackSettings(bot_token=SecretStr("x"), signing_secret=SecretStr("s"),
                                   base_url=f"http://127.0.0.1:{free_port()}/api/", timeout_seconds=5),
                     {DESTINATION: SUPPORT})
    with pytest.raises(SlackUnavailable, match=r"auth\.test"):
        await away.start()
    started = SlackTool(settings_for(emulator), {DESTINATION: SUPPORT})
    await started.start()
    await emulator.stop()
    try:
        with pytest.raises(SlackUnavailable, match=r"chat\.postMessage"):
            await started.deliver(handoff("con_away"))
    finally:
        await started.stop()
        await started.stop()  # twice is fine


async def test_a_channel_named_by_name_posts_and_warns_once(emulator: SlackEmulator,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    named = SlackTool(settings_for(emulator), {DESTINATION: "#support"})
    await named.start()
    try:
        with caplog.at_level(logging.WARNING, logger="connectors.slack.tool"):
            await named.deliver(handoff("con_named_1"))
            await named.deliver(handoff("con_named_2"))
    finally:
        await named.stop()
    assert [p.channel for p in emulator.posts] == [SUPPORT, SUPPORT]
    warnings = [r for r in caplog.records if "names its channel" in r.getMessage()]
    assert len(warnings) == 1 and getattr(warnings[0], "channel_id", None) == SUPPORT


# --- agents' replies: Slack → the app → Kafka -------------------------------------------

class Kafka:
    """The app's publisher: a real producer, failures mapped the way HttpService maps them."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer

    async def __call__(self, topic: str, key: bytes, value: bytes) -> None:
        try:
            await asyncio.wait_for(self.producer.send_and_wait(topic, value, key=key), 10)
        except (KafkaError, TimeoutError) as e:
            raise TransientError(f"Kafka did not take the message: {e!r}") from e


@dataclass
class Edge:
    settings: Settings
    redis: Redis
    url: str
    session: aiohttp.ClientSession

    @property
    def cards(self) -> CardStore:
        # tagged as the app tags its keys
        return CardStore(f"{self.settings.topic_prefix}sb", 600, Tags(self.settings.kafka_partitions))

    async def send(self, payload: dict[str, Any], **options: Any) -> tuple[int, Any]:
        return await slack.send_event(self.session, self.url, SECRET, payload, **options)

    async def outbound(self) -> list[tuple[bytes, OutboundMessage]]:
        records = await read_all(self.settings, self.settings.topic(OUTBOUND))
        return [(r.key, decode(r.value, OutboundMessage)) for r in records]

    async def conversation_events(self) -> list[tuple[bytes, ConversationEvent]]:
        records = await read_all(self.settings, self.settings.topic(CONVERSATION))
        return [(r.key, decode(r.value, ConversationEvent)) for r in records]

    async def receipts(self) -> list[tuple[bytes, DeliveryReceipt]]:
        records = await read_all(self.settings, self.settings.topic(DELIVERY))
        return [(r.key, decode(r.value, DeliveryReceipt)) for r in records]


async def topic_known(settings: Settings, topic: str, timeout: float = 30) -> None:
    """Wait until the brokers describe a topic ensure_topics just created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while any(d["error_code"] for d in await admin.describe_topics([topic])):
            assert time.monotonic() < deadline, f"topic {topic} never appeared"
            await asyncio.sleep(POLL_SECONDS)
    finally:
        await admin.close()


def app_for(settings: Settings, redis_getter: Any, publish: Any) -> web.Application:
    """The edge's application, as `switchboard run` serves it, with Slack configured."""
    with_slack = settings.model_copy(update={"sections": {
        **settings.sections, "slack": {"bot_token": "xoxb-unused", "signing_secret": SECRET}}})
    destinations = {DESTINATION: Destination(DESTINATION, "slack", SlackDestination(channel=SUPPORT)),
                    "slack-social": Destination("slack-social", "slack", SlackDestination(channel=SOCIAL))}
    policy = dataclasses.replace(load_policy(MINIMAL, VOCABULARY), destinations=destinations)

    async def no_link(link: Any) -> None:
        raise AssertionError("the Slack route links no identity")

    return edge_app(with_slack, {}, publish=publish, publish_link=no_link, redis=redis_getter,
                    policy=lambda: policy)


@pytest.fixture
async def edge(stack: Settings) -> AsyncIterator[Edge]:
    prefix = unique_prefix()
    settings = stack.model_copy(update={"topic_prefix": prefix, "app_id": f"{prefix}sb"})
    await ensure_topics(settings)
    for spec in (OUTBOUND, CONVERSATION, DELIVERY):
        await topic_known(settings, settings.topic(spec))
    redis = Redis.from_url(settings.redis_dsn)
    producer = new_producer(settings)
    await producer.start()
    server = TestServer(app_for(settings, lambda: redis, Kafka(producer)))
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            yield Edge(settings, redis, str(server.make_url(PATH)), session)
    finally:
        await server.close()
        await producer.stop()
        await redis.aclose()


async def put_card(edge: Edge, made: ConversationCard, thread: str, status: Status | None = None) -> None:
    """What the dispatch stage leaves after posting the conversation's first message."""
    cards = edge.cards
    pipe = edge.redis.pipeline(transaction=False)
    fields = card_fields(made) | thread_fields({DESTINATION: thread})
    fields |= status_fields(status) if status else {}
    cards.queue_write(pipe, {made.conversation_id: fields})
    pipe.set(cards.tool_thread_key(DESTINATION, thread), made.conversation_id, ex=600)
    await pipe.execute()


async def test_a_thread_reply_becomes_the_customers_reply_on_kafka(
        edge: Edge, emulator: SlackEmulator, tool: SlackTool) -> None:
    thread = await tool.deliver(handoff("con_reply"))
    await put_card(edge, card("con_reply"), thread)
    reply = slack.thread_reply(SUPPORT, thread, "Fixed &amp; shipped: <https://track.example/1234|track it>",
                               ts="1772366500.000900")
    status, body = await edge.send(reply)
    assert status == 200, body
    expected_id = agent_reply_id("slack", f"{SUPPORT}:1772366500.000900")
    assert body == {"ok": True, "reply_id": expected_id, "conversation_id": "con_reply"}
    [(key, sent)] = await edge.outbound()
    assert key == b"con_reply"
    assert (sent.reply_id, sent.kind, sent.channel, sent.recipient) == (
        expected_id, "agent_reply", "email", ADA)
    assert (sent.in_reply_to, sent.references) == (
        "<m-2@example.com>", ("<m-1@example.com>", "<m-2@example.com>"))
    assert (sent.author, sent.customer_id, sent.queue) == (slack.AGENT, "cus_ada", "billing")
    assert sent.text == "Fixed & shipped: track it (https://track.example/1234)"
    assert sent.subject == "Re: Order 1234 never arrived"


async def test_slacks_retry_of_an_event_gives_the_same_reply_id(edge: Edge) -> None:
    await put_card(edge, card("con_retry"), "1772366000.000100")
    reply = slack.thread_reply(SUPPORT, "1772366000.000100", "On its way", ts="1772366600.000100")
    first = await edge.send(reply)
    again = await edge.send(reply, retry_num=1)
    assert first[0] == again[0] == 200
    assert first[1]["reply_id"] == again[1]["reply_id"]
    # the same reply twice on the topic: the send stage claims its id, so it is sent once
    assert [m.reply_id for _, m in await edge.outbound()] == [first[1]["reply_id"]] * 2


async def test_a_bad_or_stale_signature_is_401_and_nothing_is_published(edge: Edge) -> None:
    await put_card(edge, card("con_signed"), "1772366000.000200")
    reply = slack.thread_reply(SUPPORT, "1772366000.000200", "On its way")
    tampered = await edge.send(reply, tamper=True)
    stale = await edge.send(reply, timestamp=int(time.time()) - 600)
    assert tampered[0] == stale[0] == 401
    assert tampered[1]["error"]["code"] == "bad_signature"
    assert "does not match" in tampered[1]["error"]["message"]
    assert "more than the 300s allowed" in stale[1]["error"]["message"]
    async with edge.session.post(edge.url, data=b"{}", headers={"Content-Type": "application/json"}) as bare:
        assert bare.status == 401
    assert await edge.outbound() == []


async def test_what_is_not_a_reply_is_answered_200_and_ignored(edge: Edge) -> None:
    await put_card(edge, card("con_ignored"), "1772366000.000300")
    cases = {
        "not the thread of a conversation": slack.thread_reply(SUPPORT, "1772366000.999999", "hello?"),
        "no Slack destination": slack.thread_reply("C0ELSEWHERE", "1772366000.000300", "hi"),
        "a bot's message": slack.bot_message(SUPPORT, "Reply sent", thread_ts="1772366000.000300"),
        "outside any thread": slack.envelope(slack.message(SUPPORT, "lunch?")),
        "an internal note without text": slack.thread_reply(SUPPORT, "1772366000.000300", "note:"),
    }
    for reason, payload in cases.items():
        status, body = await edge.send(payload)
        assert status == 200 and reason in body["ignored"], (reason, body)
    assert await edge.outbound() == []
    assert await edge.conversation_events() == []
    assert await edge.receipts() == []


async def test_a_note_in_the_thread_joins_the_history_and_never_reaches_the_customer(edge: Edge) -> None:
    await put_card(edge, card("con_note"), "1772366000.000500")
    note = slack.thread_reply(SUPPORT, "1772366000.000500", "Note: warehouse says Monday &amp; not before",
                              ts="1772366700.000100")
    first = await edge.send(note)
    again = await edge.send(note, retry_num=1)  # Slack's retry: the same event id
    slashes = await edge.send(slack.thread_reply(SUPPORT, "1772366000.000500", "// asked <@U0BOB|bob>",
                                                 ts="1772366700.000200"))
    assert first[0] == again[0] == slashes[0] == 200
    assert first[1] == again[1] == {"ok": True, "note_id": first[1]["note_id"], "conversation_id": "con_note"}
    events = await edge.conversation_events()
    assert [key for key, _ in events] == [b"cus_ada"] * 3
    [one, retried, other] = [e for _, e in events]
    assert one == retried and one.event_id == first[1]["note_id"]
    assert one.at == datetime(2026, 3, 1, 12, 5, 0, 100, tzinfo=UTC)  # when it was written: its ts
    assert (one.kind, one.conversation_id, one.customer_id, one.author, one.source, one.queue) == (
        "note", "con_note", "cus_ada", slack.AGENT, "slack", "billing")
    assert one.text == "warehouse says Monday & not before"
    assert (other.text, other.event_id) == ("asked @bob", slashes[1]["note_id"])
    assert other.event_id != one.event_id
    assert await edge.outbound() == []
    assert await edge.receipts() == []


async def test_a_note_on_a_closed_conversation_is_still_kept(edge: Edge) -> None:
    await put_card(edge, card("con_note_closed"), "1772366000.000600", status="closed")
    status, body = await edge.send(slack.thread_reply(SUPPORT, "1772366000.000600", "note: customer called"))
    assert status == 200 and body["conversation_id"] == "con_note_closed" and "note_id" in body
    [(_, event)] = await edge.conversation_events()
    assert (event.kind, event.text) == ("note", "customer called")
    assert await edge.receipts() == []


async def test_called_in_the_thread_marks_the_call_back_made_once(edge: Edge) -> None:
    task = CallbackTask(number="+4915123456789", due=datetime(2026, 3, 1, 14, 0, tzinfo=UTC))
    await put_card(edge, card("con_call", callback=task), "1772366000.000700")
    called = slack.thread_reply(SUPPORT, "1772366000.000700", "Called: reached her, router swapped",
                                ts="1772366900.000100")
    first = await edge.send(called)
    again = await edge.send(called, retry_num=1)  # Slack's retry: the same event id
    assert first == again and first[0] == 200
    [(key, one), (_, retried)] = await edge.conversation_events()
    assert key == b"cus_ada" and one == retried and one.event_id == first[1]["event_id"]
    assert (one.kind, one.text, one.author, one.source) == (
        "called_back", "reached her, router swapped", slack.AGENT, "slack")
    # a conversation the policy answers in writing has no call to mark: the words are kept as a note
    await put_card(edge, card("con_written"), "1772366000.000800")
    await edge.send(slack.thread_reply(SUPPORT, "1772366000.000800", "called: left a voicemail"))
    [*_, (_, note)] = await edge.conversation_events()
    assert (note.kind, note.text) == ("note", "called (no call back was asked for): left a voicemail")
    assert await edge.outbound() == []


async def test_transfer_in_the_thread_moves_the_conversation_and_a_refused_one_is_kept_as_a_note(
        edge: Edge) -> None:
    await put_card(edge, card("con_move"), "1772366000.000900")
    move = slack.thread_reply(SUPPORT, "1772366000.000900", "transfer: general a login fault, not billing",
                              ts="1772367000.000100")
    first = await edge.send(move)
    again = await edge.send(move, retry_num=1)  # Slack's retry: the same transfer
    assert first == again and first[0] == 200 and first[1]["queue"] == "general"
    [(key, one), (_, retried)] = await edge.conversation_events()
    assert key == b"cus_ada" and one == retried and one.event_id == first[1]["event_id"]
    assert (one.kind, one.queue, one.text, one.author, one.source) == (
        "transferred", "general", "a login fault, not billing", slack.AGENT, "slack")
    # a queue the policy lacks (a typo): nothing moves, the words stay in the history with why
    status, body = await edge.send(slack.thread_reply(SUPPORT, "1772366000.000900", "transfer: genral asap",
                                                      ts="1772367000.000200"))
    assert status == 200 and "note_id" in body
    [*_, (_, kept)] = await edge.conversation_events()
    assert (kept.kind, kept.text) == (
        "note", "transfer to genral refused: the policy has no queue 'genral'; it has general. asap")
    # the queue it is in already: refused the same way
    await put_card(edge, card("con_here", queue="general"), "1772366000.001000")
    await edge.send(slack.thread_reply(SUPPORT, "1772366000.001000", "transfer: general"))
    [*_, (_, here)] = await edge.conversation_events()
    assert (here.kind, here.text) == (
        "note", "transfer to general refused: the conversation is already in queue general")
    assert await edge.outbound() == []


async def test_a_reply_to_a_closed_conversation_comes_back_as_a_failed_receipt(edge: Edge) -> None:
    await put_card(edge, card("con_closed"), "1772366000.000300", status="closed")
    reply = slack.thread_reply(SUPPORT, "1772366000.000300", "one more thing", ts="1772366800.000100")
    status, body = await edge.send(reply)
    expected_id = agent_reply_id("slack", f"{SUPPORT}:1772366800.000100")
    assert (status, body) == (200, {"ok": True, "not_sent": CLOSED, "reply_id": expected_id,
                                    "conversation_id": "con_closed"})
    [(key, receipt)] = await edge.receipts()
    assert key == b"con_closed"
    assert (receipt.reply_id, receipt.conversation_id, receipt.channel, receipt.status, receipt.kind,
            receipt.customer_id, receipt.reason) == (
        expected_id, "con_closed", "email", "failed", "agent_reply", "cus_ada", CLOSED)
    assert await edge.outbound() == []
    assert await edge.conversation_events() == []


async def test_the_agent_sees_in_the_thread_that_a_reply_to_a_closed_conversation_was_not_sent(
        edge: Edge, emulator: SlackEmulator, tool: SlackTool) -> None:
    # the dispatch stage opens the thread, the conversation closes, an agent answers anyway
    namespace = f"{edge.settings.topic_prefix}sb"
    queues = {"billing": Queue("billing", None, (DESTINATION,))}
    destinations = {DESTINATION: Destination(DESTINATION, "slack", SlackDestination(channel=SUPPORT))}
    policy = dataclasses.replace(load_policy(MINIMAL, VOCABULARY), queues=queues, default_queue="billing",
                                 destinations=destinations)
    dispatch = DispatchStage(edge.redis, lambda: {DESTINATION: tool}, lambda: policy, namespace=namespace,
                             ttl_seconds=600, cards=edge.cards, thread_ttl_seconds=600)
    first = routed("con_loop", "Where is my parcel?")
    await dispatch.process([Record(edge.settings.topic(ROUTED), 0, 0, encode(first))])
    [opened] = emulator.posts
    pipe = edge.redis.pipeline(transaction=False)
    edge.cards.queue_write(pipe, {"con_loop": status_fields("closed")})
    await pipe.execute()

    status, body = await edge.send(slack.thread_reply(SUPPORT, opened.ts, "Sorry, one more thing"))
    assert status == 200 and body["not_sent"] == CLOSED
    [record] = await read_all(edge.settings, edge.settings.topic(DELIVERY))
    await dispatch.process([Record(record.topic, record.partition, record.offset, record.value)])
    [told] = emulator.posts[1:]
    assert (told.channel, told.thread_ts) == (SUPPORT, opened.ts)
    lead = told.blocks[0]["text"]["text"]
    assert lead.startswith(":x: Reply *not sent*: the conversation is closed; the customer did not get")
    assert body["reply_id"] in told.blocks[1]["elements"][0]["text"]
    assert await edge.outbound() == []


async def test_url_verification_echoes_the_challenge(edge: Edge) -> None:
    status, body = await edge.send(slack.url_verification("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7"))
    assert (status, body) == (200, {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7"})


async def test_a_signed_body_that_is_not_an_event_is_400(edge: Edge) -> None:
    body = b"{not json"
    headers = slack.signed_headers(SECRET, body)
    async with edge.session.post(edge.url, data=body, headers=headers) as response:
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "bad_event"


async def test_redis_away_is_503_so_slack_retries(stack: Settings) -> None:
    away = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)

    async def never(topic: str, key: bytes, value: bytes) -> None:
        raise AssertionError("nothing may be published without a card")

    server = TestServer(app_for(stack, lambda: away, never))
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            status, body = await slack.send_event(
                session, str(server.make_url(PATH)), SECRET,
                slack.thread_reply(SUPPORT, "1772366000.000400", "hi"))
    finally:
        await server.close()
        await away.aclose()
    assert status == 503 and body["error"]["code"] == "unavailable"
