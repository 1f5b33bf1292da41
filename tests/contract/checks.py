"""The contract every connector keeps, as checks the suite runs over each registered one.

The router's side of the seam is `StubEdge` here: these checks hold a connector to its
half of the contract alone; the router's own Edge is exercised end to end in tests/e2e.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel, SecretStr

from connectors.routes import HoldState, Outlook, Refusal
from connectors.spec import ConnectorSpec, ToolSpec
from router import vocabulary
from router.http.server import build_app
from router.settings import Settings
from schemas.codec import decode, encode
from schemas.conversation import ConversationCard
from schemas.errors import ParseError
from schemas.inbound import InboundMessage
from schemas.outbound import DeliveryReceipt
from tests.contract import samples

TOKEN = "contract-token"
# inputs no parser may choke on: each is a ParseError with a reason, quickly
HOSTILE = [b"", b"\xff\xfe\x00\x01", b"{" * 100_000, b"[" * 50_000 + b"]" * 50_000,
           b"A" * 3_000_000, "\u202e\U0001f4a3".encode() * 10_000]
PARSE_SECONDS = 5.0
# a stub edge's customer: open now, answered within the hour
_NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
OUTLOOK = Outlook(tier="standard", open_now=True, opens=_NOW, expected=_NOW.replace(hour=11),
                  opens_text="Mon 02 Mar, 10:00 UTC", expected_text="Mon 02 Mar, 11:00 UTC")


class StubEdge:
    """The router's side of a route, recorded; a bearer `contract-token` may do anything."""

    def __init__(self) -> None:
        self.accepted: list[InboundMessage] = []
        self.replies: list[tuple[str, str]] = []
        self.held: dict[str, tuple[HoldState, InboundMessage]] = {}

    def caller(self, request: web.Request, scope: str) -> str:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            raise Refusal(401, "unauthorized", "a valid 'Authorization: Bearer <token>' is required")
        return "contract"

    async def accept(self, message: InboundMessage) -> None:
        self.accepted.append(message)

    def destinations(self, kind: str) -> dict[str, Any]:
        return {}

    async def outlook(self, channel: str, identity: str) -> Outlook:
        return OUTLOOK

    async def conversation_of(self, destination: str, reference: str) -> ConversationCard | None:
        return None

    async def reply(self, card: ConversationCard, *, text: str, author: str, reply_id: str) -> None:
        self.replies.append((card.conversation_id, reply_id))

    async def note(self, card: ConversationCard, *, event_id: str, text: str, author: str,
                   at: datetime, source: str) -> None:
        self.replies.append((card.conversation_id, event_id))

    async def called_back(self, card: ConversationCard, *, event_id: str, text: str | None, author: str,
                          at: datetime, source: str) -> None:
        self.replies.append((card.conversation_id, event_id))

    async def transfer(self, card: ConversationCard, *, event_id: str, queue: str, text: str | None,
                       author: str, at: datetime, source: str) -> None:
        self.replies.append((card.conversation_id, event_id))

    async def receipt(self, receipt: DeliveryReceipt) -> None:
        self.replies.append((receipt.conversation_id, receipt.reply_id))

    async def hold(self, key: str, message: InboundMessage, *, after: timedelta,
                   replace: bool = True) -> HoldState:
        before = self.held.get(key, ("new", message))[0]
        if before == "new" or (before == "held" and replace):
            self.held[key] = ("held", message)
        return before

    async def holding(self, key: str) -> InboundMessage | None:
        state, message = self.held.get(key, ("new", None))
        return message if state == "held" else None

    async def settle(self, key: str, message: InboundMessage) -> HoldState:
        before = self.held.get(key, ("new", message))[0]
        if before in ("new", "held"):
            self.held[key] = ("settled", message)
            self.accepted.append(message)
        return before


def settings_section(spec: ConnectorSpec[Any] | ToolSpec[Any, Any]) -> None:
    """A pydantic section; absent, it is off unless on by default, and then it builds from defaults."""
    assert issubclass(spec.settings, BaseModel)
    settings = Settings(sections={})
    found = settings.section(spec.section, spec.settings)
    assert (found is not None) == spec.on_by_default, "a section that is absent is off unless on by default"


def parses_its_samples(spec: ConnectorSpec[Any]) -> None:
    """Each sample becomes a message of this channel that survives the topic's codec unchanged."""
    assert spec.parse is not None
    assert spec.name in samples.CHANNEL_SAMPLES, (
        f"add native samples of {spec.name!r} to tests/contract/samples.py")
    for raw in samples.CHANNEL_SAMPLES[spec.name]:
        message = spec.parse(raw)
        assert message.channel == spec.name
        assert message.event_id.startswith("ev_") and message.thread_key and message.text is not None
        if spec.extras is not None:
            assert isinstance(message.extras, spec.extras)
        assert decode(encode(message), InboundMessage) == message


def reaches_its_own_customers(spec: ConnectorSpec[Any]) -> None:
    """Each sample's sender is an identity kind the channel's reach (router/vocabulary.py) covers."""
    assert spec.parse is not None
    reach = vocabulary.reach({spec.name})
    for raw in samples.CHANNEL_SAMPLES[spec.name]:
        sender = spec.parse(raw).sender
        assert reach.unreachable(spec.name, sender.kind) is None, (
            f"{spec.name} parses {sender.kind} senders but its sender addresses {sorted(spec.addresses)}")


def refuses_hostile_input(spec: ConnectorSpec[Any]) -> None:
    """Garbage, bombs and oversized input: a ParseError with a reason, in bounded time, never a crash."""
    assert spec.parse is not None
    for raw in HOSTILE:
        started = time.monotonic()
        try:
            message = spec.parse(raw)
        except ParseError as e:
            assert e.reason.strip(), f"{spec.name}: a refusal must say why"
        else:
            assert message.channel == spec.name  # taken: then it is a well-formed message
        assert time.monotonic() - started < PARSE_SECONDS, f"{spec.name}: {len(raw)} bytes took too long"


async def serves_its_routes(settings: Any, spec: ConnectorSpec[Any] | ToolSpec[Any, Any],
                            sample: tuple[str, bytes] | None) -> StubEdge:
    """Its routes mount; an unauthenticated request is a JSON 401, a good one is taken."""
    assert spec.routes is not None
    edge = StubEdge()
    routes = list(spec.routes(settings, edge))
    assert routes, "a connector with routes serves at least one"
    app = build_app(Settings(sections={}), {}, routes)
    async with TestClient(TestServer(app)) as client:
        for route in routes:
            response = await client.request(route.method, route.path, data=b"{}")
            if route.public:
                # served to anyone: only reads, and a plain request is answered, never a crash
                assert route.method == "GET" and response.status < 500, (route.path, response.status)
                continue
            body = await response.json()
            # a bad token is 401; a bad webhook signature 401 (Slack) or 403 (Twilio's own advice)
            assert response.status in (401, 403)
            assert body["error"]["code"] in ("unauthorized", "bad_signature")
        if sample is not None:
            content_type, raw = sample
            route = routes[0]
            response = await client.request(route.method, route.path, data=raw, headers={
                "Authorization": f"Bearer {TOKEN}", "Content-Type": content_type})
            assert response.status in (200, 202), await response.text()
            assert len(edge.accepted) == 1 and edge.accepted[0].channel == spec.section
    return edge


def destination_shape(spec: ToolSpec[Any, Any]) -> Any:
    """The policy's destination of this kind converts to its typed shape; junk is refused."""
    assert spec.kind in samples.DESTINATION_SAMPLES, (
        f"add a {spec.kind!r} destination to tests/contract/samples.py")
    raw = samples.DESTINATION_SAMPLES[spec.kind]
    destination = msgspec.convert(raw, spec.destination)
    for bad in ({}, {**raw, "surprise": "x"}, {key: "" for key in raw}):
        try:
            msgspec.convert(bad, spec.destination)
        except (msgspec.ValidationError, ValueError):
            continue
        raise AssertionError(f"{spec.kind} destination took {bad!r}")
    return destination


def secrets_of(values: dict[str, str]) -> Any:
    """A Secrets lookup over a plain mapping."""
    return lambda name: SecretStr(values[name]) if values.get(name) else None
