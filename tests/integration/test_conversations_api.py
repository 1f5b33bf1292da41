"""The conversations API on the real app, with real Redis and Kafka: replies, resolve, notes, reads."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import SecretStr
from redis.asyncio import Redis

from processors.policy.load import load_policy
from processors.stores.cards import CardStore, card_fields, status_fields
from processors.stores.history import Append, ConversationSummary, HistoryStore, RecentWrite
from processors.stores.tags import Tags, on_cluster
from router.http import openapi
from router.http.app import edge_app
from router.http.conversations import ConversationView
from router.http.integrations import IntegrationConfig, digest_hex
from router.kafka import ensure_topics, new_producer
from router.settings import Settings
from router.vocabulary import VOCABULARY
from schemas import HistoryEntry, Identity, IdentityLink, decode
from schemas.conversation import ConversationCard, ConversationEvent, Status
from schemas.errors import TransientError
from schemas.ids import agent_reply_id, lifecycle_event_id
from schemas.outbound import OutboundMessage
from schemas.routed import CallbackTask
from schemas.topics import CONVERSATION, OUTBOUND
from tests.kafka_tools import read_all, unique_prefix
from tests.paths import EXAMPLE_POLICY
from tests.processes import free_port

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ADA = Identity(kind="email", value="ada@example.com")
CUSTOMER = "cus_ada"
CONVERSATION_ID = "con_0123456789abcdef0123"
OTHER_CONVERSATION = "con_fedcba9876543210fedc"
HELPDESK, VIEWER, CRM, DEV = "sbi_helpdesk", "sbi_viewer", "sbi_crm", "dev-token"
MAX_BODY = 64 * 1024


def integration(name: str, token: str, *scopes: str) -> IntegrationConfig:
    return IntegrationConfig(name=name, token_sha256=digest_hex(token), scopes=scopes)


class Kafka:
    """The app's publisher: a real producer, failures mapped the way HttpService maps them."""

    def __init__(self, producer: AIOKafkaProducer, timeout: float = 10) -> None:
        self.producer = producer
        self.timeout = timeout

    async def __call__(self, topic: str, key: bytes, value: bytes) -> None:
        try:
            await asyncio.wait_for(self.producer.send_and_wait(topic, value, key=key), self.timeout)
        except (KafkaError, TimeoutError) as e:
            raise TransientError(f"Kafka did not take the message: {e!r}") from e


@dataclass
class Api:
    client: TestClient[web.Request, web.Application]
    settings: Settings
    redis: Redis
    kafka: Kafka

    @property
    def namespace(self) -> str:
        return f"{self.settings.topic_prefix}sb"


def app_for(settings: Settings, redis: Redis, publish: Kafka) -> web.Application:
    """The edge's application, as `switchboard run` serves it."""

    async def publish_link(link: IdentityLink) -> None:
        await publish("links", link.customer_id.encode(), msgspec.json.encode(link))

    policy = load_policy(EXAMPLE_POLICY, VOCABULARY)
    return edge_app(settings, {}, publish=publish, publish_link=publish_link, redis=lambda: redis,
                    policy=lambda: policy)


@pytest.fixture
async def api(stack: Settings, store: Redis) -> AsyncIterator[Api]:
    """The edge's app on the local Redis, then on a real Cluster (`store`, tests/redis_cluster.py)."""
    prefix = unique_prefix()
    redis = store
    settings = stack.model_copy(update={
        "redis_cluster": on_cluster(redis),
        "topic_prefix": prefix, "app_id": f"{prefix}sb", "max_body_bytes": MAX_BODY, "history_cap": 5,
        "api_tokens": (SecretStr(DEV),),
        "integrations": (integration("helpdesk", HELPDESK, "conversations:read", "conversations:write"),
                         integration("viewer", VIEWER, "conversations:read"),
                         integration("crm", CRM, "customers:read")),
    })
    await ensure_topics(settings)
    producer = new_producer(settings)
    await producer.start()
    kafka = Kafka(producer)
    try:
        async with TestClient(TestServer(app_for(settings, redis, kafka))) as client:
            yield Api(client, settings, redis, kafka)
    finally:
        await producer.stop()


def card(conversation_id: str = CONVERSATION_ID, **changes: Any) -> ConversationCard:
    fields: dict[str, Any] = {
        "conversation_id": conversation_id, "customer_id": CUSTOMER, "channel": "email", "recipient": ADA,
        "queue": "billing", "tier": "premium", "urgency": "high", "priority": 2, "status": "open",
        "opened_at": T0, "updated_at": T0, "subject": "Order 1234 never arrived",
        "in_reply_to": "<m-2@example.com>", "references": ("<m-1@example.com>", "<m-2@example.com>"),
        "first_response_due": T0 + timedelta(hours=1), "destinations": {"slack": ""}, "messages": 2,
    }
    return ConversationCard(**(fields | changes))


async def put_card(api: Api, made: ConversationCard, status: Status | None = None,
                   threads: dict[str, str] | None = None) -> None:
    fields = card_fields(made) | (status_fields(status) if status else {})
    fields |= {f"dest:{k}": v for k, v in (threads or {}).items()}
    pipe = api.redis.pipeline(transaction=False)
    cards = CardStore(api.namespace, 600, Tags(api.settings.kafka_partitions))  # as the API tags
    cards.queue_write(pipe, {made.conversation_id: fields})
    await pipe.execute()


async def call(api: Api, method: str, path: str, status: int, token: str | None = HELPDESK,
               **kwargs: Any) -> Any:
    headers = {**({"Authorization": f"Bearer {token}"} if token else {}), **kwargs.pop("headers", {})}
    response = await api.client.request(method, path, headers=headers, **kwargs)
    body = await response.json()
    assert response.status == status, body
    return body


async def on_topic(api: Api, spec: Any, model: type[Any]) -> list[tuple[bytes, Any]]:
    records = await read_all(api.settings, api.settings.topic(spec))
    return [(r.key, decode(r.value, model)) for r in sorted(records, key=lambda r: r.timestamp)]


REPLIES = f"/v1/conversations/{CONVERSATION_ID}/replies"


async def test_a_reply_goes_out_on_the_customers_channel_in_their_thread(api: Api) -> None:
    await put_card(api, card())
    body = await call(api, "POST", REPLIES, 202, json={"text": "Your parcel left today.", "author": "maria"})
    assert body["conversation_id"] == CONVERSATION_ID and body["status"] == "queued"
    assert body["reply_id"].startswith("rep_") and body["event_id"] is None
    [(key, sent)] = await on_topic(api, OUTBOUND, OutboundMessage)
    assert key == CONVERSATION_ID.encode()
    assert (sent.reply_id, sent.kind, sent.channel, sent.recipient) == (
        body["reply_id"], "agent_reply", "email", ADA)
    assert (sent.in_reply_to, sent.references) == (
        "<m-2@example.com>", ("<m-1@example.com>", "<m-2@example.com>"))
    assert (sent.customer_id, sent.queue, sent.author) == (CUSTOMER, "billing", "maria")
    assert (sent.text, sent.subject) == ("Your parcel left today.", "Re: Order 1234 never arrived")
    # the agent_reply event is the send stage's, once the channel took the reply
    assert await on_topic(api, CONVERSATION, ConversationEvent) == []


async def test_an_idempotency_key_gives_the_same_reply_id_per_integration(api: Api) -> None:
    await put_card(api, card())
    once: dict[str, Any] = {"json": {"text": "On its way"},
                            "headers": {"Idempotency-Key": "ticket-77/reply-1"}}
    first = await call(api, "POST", REPLIES, 202, **once)
    again = await call(api, "POST", REPLIES, 202, **once)
    assert first["reply_id"] == again["reply_id"] == agent_reply_id("api", "helpdesk:ticket-77/reply-1")
    other_key = await call(api, "POST", REPLIES, 202, json={"text": "On its way"},
                           headers={"Idempotency-Key": "ticket-77/reply-2"})
    other_integration = await call(api, "POST", REPLIES, 202, token=DEV, **once)
    no_key = [await call(api, "POST", REPLIES, 202, json={"text": "hi"}) for _ in range(2)]
    ids = [first["reply_id"], other_key["reply_id"], other_integration["reply_id"],
           *(b["reply_id"] for b in no_key)]
    assert len(set(ids)) == len(ids)
    sent = [m.reply_id for _, m in await on_topic(api, OUTBOUND, OutboundMessage)]
    # both copies are on the topic: the send stage's claim sends the reply once
    assert sorted(sent) == sorted([first["reply_id"], *ids])
    # the author is a person, or nobody: an integration never becomes the conversation's agent
    assert {m.author for _, m in await on_topic(api, OUTBOUND, OutboundMessage)} == {None}


async def test_then_sets_the_conversations_state_with_an_event_fixed_by_the_reply(api: Api) -> None:
    await put_card(api, card())
    body = await call(api, "POST", REPLIES, 202, json={"text": "Can you send a photo?", "author": "maria",
                                                        "then": "waiting_on_customer"},
                      headers={"Idempotency-Key": "k-1"})
    assert body["event_id"] == lifecycle_event_id(body["reply_id"], "waiting_on_customer")
    [(key, event)] = await on_topic(api, CONVERSATION, ConversationEvent)
    assert key == CUSTOMER.encode()
    assert (event.event_id, event.kind, event.conversation_id, event.customer_id) == (
        body["event_id"], "waiting_on_customer", CONVERSATION_ID, CUSTOMER)
    assert (event.reply_id, event.author, event.queue, event.source) == (
        body["reply_id"], "maria", "billing", "api:helpdesk")
    [(_, reply)] = await on_topic(api, OUTBOUND, OutboundMessage)
    assert reply.reply_id == body["reply_id"]


async def test_resolve_and_notes_are_conversation_events_never_messages(api: Api) -> None:
    await put_card(api, card(), status="waiting_on_customer")
    resolve = f"/v1/conversations/{CONVERSATION_ID}/resolve"
    keyed: dict[str, Any] = {"headers": {"Idempotency-Key": "resolve-1"}}
    first = await call(api, "POST", resolve, 202, json={"note": "refund issued", "author": "maria"}, **keyed)
    again = await call(api, "POST", resolve, 202, json={"note": "refund issued", "author": "maria"}, **keyed)
    assert first == again and first["kind"] == "resolved" and first["status"] == "queued"
    bare = await call(api, "POST", resolve, 202, data=b"")  # no body at all is a plain resolve
    note = await call(api, "POST", f"/v1/conversations/{CONVERSATION_ID}/notes", 202,
                      json={"text": "customer prefers a call"}, **keyed)
    assert note["kind"] == "note" and note["event_id"] not in (first["event_id"], bare["event_id"])
    events = [e for _, e in await on_topic(api, CONVERSATION, ConversationEvent)]
    assert [(e.event_id, e.kind, e.text, e.author) for e in events] == [
        (first["event_id"], "resolved", "refund issued", "maria"),
        (first["event_id"], "resolved", "refund issued", "maria"),
        (bare["event_id"], "resolved", None, None),
        (note["event_id"], "note", "customer prefers a call", None)]
    assert all((e.customer_id, e.reply_id, e.source) == (CUSTOMER, None, "api:helpdesk") for e in events)
    assert await on_topic(api, OUTBOUND, OutboundMessage) == []


async def test_a_call_back_is_marked_made_only_where_the_policy_asked_for_one(api: Api) -> None:
    await put_card(api, card())  # a written conversation: nothing to call
    path = f"/v1/conversations/{CONVERSATION_ID}/callback"
    assert error(await call(api, "POST", path, 409, json={})) == ("no_callback", "id")
    due = T0 + timedelta(hours=2)
    phone = Identity(kind="phone", value="+4915123456789")
    await put_card(api, card(channel="phone", recipient=phone,
                             callback=CallbackTask(number=phone.value, due=due)))
    missed = await call(api, "POST", path, 202,
                        json={"reached": False, "author": "maria", "note": "voicemail"})
    keyed: dict[str, Any] = {"headers": {"Idempotency-Key": "call-1"}}
    reached = await call(api, "POST", path, 202, json={"author": "maria", "note": "fixed on the phone"},
                         **keyed)
    again = await call(api, "POST", path, 202, json={"author": "maria", "note": "fixed on the phone"},
                       **keyed)
    assert (missed["kind"], reached["kind"]) == ("note", "called_back") and reached == again
    events = [e for _, e in await on_topic(api, CONVERSATION, ConversationEvent)]
    assert [(e.kind, e.text, e.author) for e in events] == [
        ("note", "called back, no answer: voicemail", "maria"),
        ("called_back", "fixed on the phone", "maria"), ("called_back", "fixed on the phone", "maria")]
    assert events[1].event_id == events[2].event_id  # the brain applies it once
    assert await on_topic(api, OUTBOUND, OutboundMessage) == []
    assert error(await call(api, "POST", path, 422, json={"reached": "yes"}))[0] == "invalid"


async def test_a_conversation_reads_with_its_customers_history(api: Api) -> None:
    await put_card(api, card(), status="waiting_on_customer", threads={"slack": "1712.0001"})
    history = HistoryStore(api.namespace, cap=api.settings.history_cap,
                           tags=Tags(api.settings.kafka_partitions))

    def line(minutes: int, summary: str, conversation: str = CONVERSATION_ID) -> HistoryEntry:
        return HistoryEntry(at=T0 + timedelta(minutes=minutes), channel="email", conversation_id=conversation,
                            direction="in", summary=summary)

    pipe = api.redis.pipeline(transaction=False)
    history.queue_append(pipe, [Append(CUSTOMER, [line(1, "first"), line(2, "older case", OTHER_CONVERSATION),
                                                  line(3, "second")], ADA),
                                Append(CUSTOMER, [line(4, "note on the customer")])])
    history.queue_write_recent(pipe, [RecentWrite(CUSTOMER, [
        ConversationSummary(conversation_id=OTHER_CONVERSATION, queue="returns", status="closed", last_at=T0),
        ConversationSummary(conversation_id=CONVERSATION_ID, queue="billing", status="waiting_on_customer",
                            last_at=T0 + timedelta(minutes=3))])])
    await pipe.execute()
    for token in (VIEWER, HELPDESK, DEV):
        await call(api, "GET", f"/v1/conversations/{CONVERSATION_ID}", 200, token=token)
    response = await api.client.get(f"/v1/conversations/{CONVERSATION_ID}?limit=3",
                                    headers={"Authorization": f"Bearer {VIEWER}"})
    view = msgspec.json.decode(await response.read(), type=ConversationView)  # the documented shape
    assert view.card == card(status="waiting_on_customer", destinations={"slack": "1712.0001"})
    assert [(h.summary, h.this_conversation, h.identity) for h in view.history] == [
        ("note on the customer", True, None), ("second", True, "email:ada@example.com"),
        ("older case", False, "email:ada@example.com")]
    assert [c.conversation_id for c in view.conversations] == [CONVERSATION_ID, OTHER_CONVERSATION]
    assert (await call(api, "GET", f"/v1/conversations/{CONVERSATION_ID}?limit=6", 400, token=VIEWER)
            )["error"]["field"] == "limit"


def error(body: Any) -> tuple[str, str | None]:
    return body["error"]["code"], body["error"]["field"]


CLOSED = "con_closed0000000000000"
UNKNOWN = "con_nobody0000000000000"


@pytest.mark.parametrize(("method", "path", "token", "kwargs", "status", "code", "field"), [
    ("POST", REPLIES, None, {"json": {"text": "hi"}}, 401, "unauthorized", None),
    ("POST", REPLIES, "sbi_guess", {"json": {"text": "hi"}}, 401, "unauthorized", None),
    ("GET", f"/v1/conversations/{CONVERSATION_ID}", CRM, {}, 403, "forbidden", None),
    ("POST", REPLIES, VIEWER, {"json": {"text": "hi"}}, 403, "forbidden", None),
    ("POST", f"/v1/conversations/{CONVERSATION_ID}/notes", VIEWER, {"json": {"text": "hi"}}, 403, "forbidden",
     None),
    ("POST", "/v1/conversations/not-a-conversation/replies", HELPDESK, {"json": {"text": "hi"}}, 400,
     "bad_conversation_id", "id"),
    ("POST", f"/v1/conversations/{UNKNOWN}/replies", HELPDESK, {"json": {"text": "hi"}}, 404, "not_found",
     "id"),
    ("GET", f"/v1/conversations/{UNKNOWN}", HELPDESK, {}, 404, "not_found", "id"),
    ("POST", f"/v1/conversations/{UNKNOWN}/resolve", HELPDESK, {}, 404, "not_found", "id"),
    ("POST", f"/v1/conversations/{CLOSED}/replies", HELPDESK, {"json": {"text": "hi"}}, 409, "closed", "id"),
    ("POST", f"/v1/conversations/{CLOSED}/resolve", HELPDESK, {"json": {}}, 409, "closed", "id"),
    ("POST", REPLIES, HELPDESK, {"data": b'{"text": "' + b"x" * MAX_BODY + b'"}',
                                 "headers": {"Content-Type": "application/json"}}, 413, "too_large", None),
    ("POST", REPLIES, HELPDESK, {"data": b"hello", "headers": {"Content-Type": "text/plain"}}, 415,
     "unsupported_media_type", None),
    ("POST", REPLIES, HELPDESK, {"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400,
     "bad_json", None),
    ("POST", REPLIES, HELPDESK, {"json": {"author": "maria"}}, 422, "invalid", "text"),
    ("POST", REPLIES, HELPDESK, {"json": {"text": "   \n"}}, 422, "invalid", "text"),
    ("POST", REPLIES, HELPDESK, {"json": {"text": "x" * 10_001}}, 422, "invalid", "text"),
    ("POST", REPLIES, HELPDESK, {"json": {"text": "hi", "then": "closed"}}, 422, "invalid", "then"),
    ("POST", REPLIES, HELPDESK, {"json": {"text": "hi", "to": "someone@else"}}, 422, "invalid", "to"),
    ("POST", REPLIES, HELPDESK, {"json": ["hi"]}, 422, "invalid", None),
    ("POST", REPLIES, HELPDESK, {"json": {"text": "hi"}, "headers": {"Idempotency-Key": "has space"}}, 400,
     "bad_idempotency_key", "Idempotency-Key"),
    ("POST", f"/v1/conversations/{CONVERSATION_ID}/notes", HELPDESK, {"json": {"text": ""}}, 422, "invalid",
     "text"),
    ("POST", f"/v1/conversations/{CONVERSATION_ID}/resolve", HELPDESK, {"json": {"note": "n" * 2001}}, 422,
     "invalid", "note"),
])
async def test_every_refusal_is_a_clear_json_error(api: Api, method: str, path: str, token: str | None,
                                                   kwargs: dict[str, Any], status: int, code: str,
                                                   field: str | None) -> None:
    await put_card(api, card())
    await put_card(api, card(CLOSED), status="closed")
    body = await call(api, method, path, status, token=token, **kwargs)
    assert error(body) == (code, field) and body["error"]["message"]
    if status == 403:
        assert body["error"]["scope"] in body["error"]["message"]
    # nothing refused reaches Kafka
    assert await on_topic(api, OUTBOUND, OutboundMessage) == []
    assert await on_topic(api, CONVERSATION, ConversationEvent) == []


async def test_a_note_on_a_closed_conversation_is_still_history(api: Api) -> None:
    await put_card(api, card(CLOSED), status="closed")
    await call(api, "POST", f"/v1/conversations/{CLOSED}/notes", 202, json={"text": "asked again by phone"})
    [(_, event)] = await on_topic(api, CONVERSATION, ConversationEvent)
    assert (event.kind, event.conversation_id) == ("note", CLOSED)


async def test_kafka_or_redis_away_is_503_with_retry_after(api: Api, stack: Settings) -> None:
    await put_card(api, card())
    # a stopped producer never answers: the publish times out, as with a broker gone away
    await api.kafka.producer.stop()
    api.kafka.timeout = 1
    response = await api.client.post(REPLIES, json={"text": "hi"},
                                     headers={"Authorization": f"Bearer {HELPDESK}"})
    assert response.status == 503 and response.headers["Retry-After"] == "1"
    assert error(await response.json()) == ("unavailable", None)
    nowhere = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    try:
        async with TestClient(TestServer(app_for(api.settings, nowhere, api.kafka))) as client:
            response = await client.get(f"/v1/conversations/{CONVERSATION_ID}",
                                        headers={"Authorization": f"Bearer {HELPDESK}"})
            assert response.status == 503 and error(await response.json()) == ("unavailable", None)
    finally:
        await nowhere.aclose()


async def test_scopes_guard_the_messages_and_customers_routes_too(api: Api) -> None:
    message = {"sender": "ada@example.com", "text": "where is my parcel?"}
    denied = await call(api, "POST", "/v1/messages", 403, token=HELPDESK, json=message)
    assert denied["error"]["code"] == "forbidden" and denied["error"]["scope"] == "messages:write"
    assert (await call(api, "POST", "/v1/messages", 401, token="sbi_guess", json=message)
            )["error"]["code"] == "unauthorized"
    assert (await call(api, "POST", "/v1/messages", 202, token=DEV, json=message))["event_id"]
    # crm may read customers, not change them; the helpdesk may do neither
    assert error(await call(api, "GET", "/v1/customers/cus_nobody", 404, token=CRM)) == ("not_found", "id")
    tier = await call(api, "PUT", "/v1/customers/cus_nobody/tier", 403, token=CRM, json={"tier": "premium"})
    assert (tier["error"]["code"], tier["error"]["scope"]) == ("forbidden", "customers:write")
    assert (await call(api, "GET", "/v1/customers/cus_nobody", 403, token=HELPDESK)
            )["error"]["scope"] == "customers:read"
    anonymous = await call(api, "GET", "/v1/customers/cus_nobody", 401, token=None)
    assert error(anonymous) == ("unauthorized", None)


async def test_the_openapi_document_is_served_without_a_token(api: Api) -> None:
    response = await api.client.get("/v1/openapi.json")
    assert response.status == 200 and response.content_type == "application/json"
    assert await response.text() == openapi.render()
    assert json.loads(openapi.render())["paths"]["/v1/conversations/{id}/replies"]


async def test_a_transfer_is_an_event_naming_the_new_queue_and_refuses_what_cannot_move(api: Api) -> None:
    await put_card(api, card())  # in billing
    path = f"/v1/conversations/{CONVERSATION_ID}/transfer"
    keyed: dict[str, Any] = {"headers": {"Idempotency-Key": "move-1"}}
    body = {"queue": "general", "author": "maria", "note": "a login fault, not a charge"}
    first = await call(api, "POST", path, 202, json=body, **keyed)
    again = await call(api, "POST", path, 202, json=body, **keyed)
    assert first == again and first["kind"] == "transferred"
    assert first["event_id"] == lifecycle_event_id("api:helpdesk:move-1", "transferred")
    assert error(await call(api, "POST", path, 422, json={"queue": "nowhere"})) == ("unknown_queue", "queue")
    assert error(await call(api, "POST", path, 409, json={"queue": "billing"})) == ("same_queue", "queue")
    assert error(await call(api, "POST", path, 422, json={"queue": "general", "x": 1}))[0] == "invalid"
    await call(api, "POST", path, 403, token=VIEWER, json={"queue": "general"})
    await put_card(api, card(), status="closed")
    assert error(await call(api, "POST", path, 409, json={"queue": "general"})) == ("closed", "id")
    events = [e for _, e in await on_topic(api, CONVERSATION, ConversationEvent)]
    assert [(e.event_id, e.kind, e.queue, e.author, e.text, e.source) for e in events] == [
        (first["event_id"], "transferred", "general", "maria", "a login fault, not a charge",
         "api:helpdesk")] * 2
