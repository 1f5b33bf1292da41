"""What the contract suite needs of each connector: samples, and its emulator or receiver.

A registered channel or tool without an entry here fails the suite, naming what to add:
a new connector inherits the checks by registering, and brings its samples along.
"""

from __future__ import annotations

import email
import email.policy
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiosmtpd.controller import Controller
from redis import Redis

from connectors.registry import CHANNELS
from router.http.server import build_app
from router.settings import Settings
from schemas.conversation import ConversationCard
from schemas.handoff import Handoff
from schemas.identity import Identity
from schemas.inbound import InboundMessage
from schemas.outbound import OutboundMessage
from schemas.routed import RoutedConversation
from tests.emulators.slack import SlackEmulator
from tests.emulators.twilio import OUR_NUMBER, TwilioEmulator
from tests.emulators.x import ADA as X_ADA
from tests.emulators.x import XEmulator
from tests.paths import FIXTURES
from tests.processes import free_port
from tests.receivers.webhook import WebhookReceiver

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
ADA = Identity(kind="email", value="ada@example.org")
# who a channel's sender writes to, where an email address is not how it reaches people

# native inputs each channel's parser must take (the ugly ones are in each channel's own tests)
CHANNEL_SAMPLES: dict[str, list[bytes]] = {
    "api": [b'{"sender": "ada@example.org", "text": "My order never arrived"}',
            b'{"sender": "+14155550100", "text": "Call me", "thread_id": "t-1"}'],
    "email": [(FIXTURES / "email" / name).read_bytes()
              for name in ("apple_mail_reply.eml", "flowed.eml", "encoded_names.eml")],
    "echo": [b"ada@example.org: my parcel never arrived"],
    "chat": [b'{"session": "s_Q2hhdFNhbXBsZVNlc3Npb2", "id": "m1", "text": "Is my parcel on its way?"}',
             b'{"session": "s_Q2hhdFNhbXBsZVNlc3Npb2", "id": "m-2", "text": "I typed it here",'
             b' "email": "ada@example.org"}'],
    "phone": [(FIXTURES / "phone" / f"{name}.form").read_bytes().strip()
              for name in ("transcription_completed", "transcription_failed", "voice_request_unattested")],
    "x": [(FIXTURES / "x" / "activity" / name).read_bytes()
          for name in ("mention.json", "dm.json", "partial_errors.json", "dm_encrypted.json")],
}
# what a chat reply cites: the visitor's message, `<session>:<id>`
CHAT_CITE = "s_Q2hhdFNhbXBsZVNlc3Npb2:m1"
# a request each pushed channel's route must accept, with the token the stub edge knows
ROUTE_SAMPLES: dict[str, tuple[str, bytes]] = {
    "api": ("application/json", CHANNEL_SAMPLES["api"][0]),
    "echo": ("text/plain", CHANNEL_SAMPLES["echo"][0]),
}
# each tool's destination as the policy writes it
DESTINATION_SAMPLES: dict[str, dict[str, str]] = {
    "webhook": {"url": "https://helpdesk.example.com/hook", "secret_env": "SB_CONTRACT_SECRET"},
    "slack": {"channel": "C0SUPPORT"},
    "mailbox": {"address": "billing@support.example.com"},
}


class Inbox:
    """An SMTP server's handler that keeps every message."""

    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


@dataclass
class Emulated:
    """A connector's settings section pointed at a local emulator, and what reached it."""

    section: dict[str, Any]
    received: Callable[[], int]
    secrets: dict[str, str] = field(default_factory=dict)
    # what a destination must say to reach the emulator (a webhook's url)
    destination: dict[str, str] = field(default_factory=dict)


@asynccontextmanager
async def smtp_server() -> AsyncIterator[Emulated]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield Emulated({"smtp": {"host": "127.0.0.1", "port": port, "tls": "none",
                                 "from_address": "support@example.com",
                                 "message_id_domain": "support.example.com", "max_attempts": 1},
                        "token_key": "contract-key"}, lambda: len(inbox.messages))
    finally:
        controller.stop()


@asynccontextmanager
async def webhook_receiver() -> AsyncIterator[Emulated]:
    async with WebhookReceiver(b"contract-secret") as receiver:
        yield Emulated({}, lambda: len(receiver.deliveries), {"SB_CONTRACT_SECRET": "contract-secret"},
                       {"url": receiver.url})


@asynccontextmanager
async def slack_emulator() -> AsyncIterator[Emulated]:
    emulator = SlackEmulator(channels={"C0SUPPORT": "support"})
    await emulator.start()
    try:
        yield Emulated({"bot_token": emulator.token, "signing_secret": "contract-signing",
                        "base_url": emulator.base_url}, lambda: len(emulator.posts))
    finally:
        await emulator.stop()


@asynccontextmanager
async def chat_log() -> AsyncIterator[Emulated]:
    """The chat sender's side is Redis itself (the local stack's), under a namespace of its own."""
    namespace = f"contract-{uuid.uuid4().hex[:12]}"
    redis = Redis.from_url(Settings().redis_dsn)
    session = CHAT_CITE.partition(":")[0]
    try:
        yield Emulated({"namespace": namespace, "token_key": "contract-key"},
                       lambda: int(redis.llen(f"{namespace}:chat:{session}:log")))
    finally:
        redis.delete(*(f"{namespace}:chat:{session}:{part}" for part in ("log", "ids", "meta")))
        redis.close()


@asynccontextmanager
async def email_probe_target() -> AsyncIterator[Emulated]:
    """The SMTP server, and the address the probe mails (the mailbox the channel would read)."""
    async with smtp_server() as emulated:
        yield Emulated({**emulated.section, "probe_to": "support@example.com"}, emulated.received)


@asynccontextmanager
async def api_receiver() -> AsyncIterator[Emulated]:
    """Our own `POST /v1/messages`, answering 202 to a well-formed body with a bearer token."""
    posts: list[dict[str, Any]] = []

    async def take(request: web.Request) -> web.Response:
        body = await request.json()
        signed = request.headers.get("Authorization") == "Bearer contract-token"
        if not signed or "[sb-probe:" not in body["text"]:
            return web.json_response({"error": "refused"}, status=401)
        posts.append(body)
        return web.json_response({"event_id": "ev_contract"}, status=202)

    app = web.Application()
    app.router.add_post("/v1/messages", take)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Emulated({}, lambda: len(posts), destination={"api_url": f"http://127.0.0.1:{port}"})
    finally:
        await runner.cleanup()


def own_routes(channel: str, section: dict[str, Any]) -> Callable[[], Any]:
    """A pushed channel's probe enters through the channel's own routes, served with a stub edge."""

    @asynccontextmanager
    async def serve() -> AsyncIterator[Emulated]:
        from tests.contract.checks import StubEdge  # here: checks imports these samples

        spec, edge = CHANNELS[channel], StubEdge()
        assert spec.routes is not None
        routes = list(spec.routes(spec.settings.model_validate(section), edge))
        server = TestServer(build_app(Settings(sections={}), {}, routes))
        await server.start_server()
        try:
            yield Emulated(section, lambda: sum("[sb-probe:" in m.text for m in edge.accepted),
                           destination={"api_url": str(server.make_url("")).rstrip("/")})
        finally:
            await server.close()

    return serve


@asynccontextmanager
async def x_probe_account() -> AsyncIterator[Emulated]:
    """The local X, with a second account of ours whose mentions of the support account are counted."""
    emulator = await XEmulator().start()
    token, secret = emulator.user("1500000000000000001", "acme_probe")
    section = {"account_id": emulator.account, "handle": emulator.handle,
               "consumer_key": emulator.consumer_key, "consumer_secret": emulator.consumer_secret,
               "access_token": emulator.access_token, "access_token_secret": emulator.access_token_secret,
               "base_url": emulator.base_url, "probe": {"access_token": token, "access_token_secret": secret}}
    try:
        yield Emulated(section, lambda: sum(p["author_id"] == "1500000000000000001" and "entities" in p
                                            for p in emulator.posts.values()))
    finally:
        await emulator.stop()


# where each channel's synthetic probe enters in the suite
PROBE_EMULATORS: dict[str, Callable[[], Any]] = {
    "email": email_probe_target, "api": api_receiver, "x": x_probe_account,
    "chat": own_routes("chat", {"namespace": f"contract-{uuid.uuid4().hex[:12]}", "token_key": "contract"}),
    "phone": own_routes("phone", {"auth_token": "contract-auth-token", "from_number": OUR_NUMBER,
                                  "public_base_url": "https://support.example.com"}),
}


@asynccontextmanager
async def twilio_emulator() -> AsyncIterator[Emulated]:
    emulator = await TwilioEmulator().start()
    try:
        yield Emulated({"account_sid": emulator.account_sid, "auth_token": emulator.auth_token,
                        "api_base_url": emulator.base_url, "from_number": OUR_NUMBER},
                       lambda: len(emulator.messages))
    finally:
        await emulator.stop()


@asynccontextmanager
async def x_emulator() -> AsyncIterator[Emulated]:
    emulator = await XEmulator().start()
    try:
        yield Emulated({"account_id": emulator.account, "consumer_key": emulator.consumer_key,
                        "consumer_secret": emulator.consumer_secret, "access_token": emulator.access_token,
                        "access_token_secret": emulator.access_token_secret,
                        "base_url": emulator.base_url,
                        # the account's pacer and budget are shared in Redis: this run's own
                        "namespace": f"contract-{uuid.uuid4().hex[:12]}"}, lambda: len(emulator.sent))
    finally:
        await emulator.stop()


# where each sender or tool delivers in the suite
SENDER_EMULATORS: dict[str, Callable[[], Any]] = {"email": smtp_server, "phone": twilio_emulator,
                                                  "x": x_emulator, "chat": chat_log}
# how a reply to Ada differs on a channel that does not reach her by email
OUTBOUND_CHANGES: dict[str, dict[str, Any]] = {
    "phone": {"recipient": Identity(kind="phone", value="+4915123456789")},
    "x": {"recipient": Identity(kind="xid", value=X_ADA), "in_reply_to": None, "references": ()},
    "chat": {"in_reply_to": CHAT_CITE, "references": ()}}
TOOL_EMULATORS: dict[str, Callable[[], Any]] = {
    "webhook": webhook_receiver, "slack": slack_emulator, "mailbox": smtp_server}


def outbound(channel: str) -> OutboundMessage:
    """An agent's reply to Ada on `channel`."""
    message = OutboundMessage(reply_id="rep_contract", conversation_id="con_contract", channel=channel,
                              recipient=ADA, kind="agent_reply", text="A new parcel left today.",
                              created_at=T0, subject="Re: Order 1234", in_reply_to="<m-1@example.org>",
                              references=("<m-1@example.org>",), customer_id="cus_ada", queue="general")
    return msgspec.structs.replace(message, **OUTBOUND_CHANGES.get(channel, {}))


def handoff(destination: str) -> Handoff:
    """A routed conversation for one destination."""
    message = InboundMessage(event_id="ev_contract", channel="email", native_id="m-1@example.org",
                             thread_key="m-1@example.org", sender=ADA, received_at=T0,
                             text="My order never arrived", subject="Order 1234")
    routed = RoutedConversation(event_id="ev_contract", conversation_id="con_contract",
                                customer_id="cus_ada",
                                queue="general", priority=1, tier="standard", urgency="normal",
                                first_response_due=T0 + timedelta(hours=8), routed_at=T0, message=message,
                                decisions=())
    card = ConversationCard(conversation_id="con_contract", customer_id="cus_ada", channel="email",
                            recipient=ADA, queue="general", tier="standard", urgency="normal", priority=1,
                            status="open", opened_at=T0, updated_at=T0, subject="Order 1234")
    return Handoff(delivery_id="dlv_contract", destination=destination, event="conversation.routed",
                   card=card, thread="", routed=routed)
