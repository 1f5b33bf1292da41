"""The chat channel on the edge's real application: real Redis, real Kafka, real sockets.

Each test gets its own topics and Redis namespace; the visitor side is aiohttp's own
WebSocket client, so frames go over a real connection exactly as a browser's would.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from connectors.chat import ChatOutbound, ChatSettings
from router.kafka import ensure_topics, new_producer
from router.settings import Settings
from schemas import Identity, InboundMessage, decode
from schemas.outbound import OutboundMessage
from schemas.topics import INBOUND
from tests.integration.test_conversations_api import Kafka, app_for
from tests.kafka_tools import read_all, unique_prefix
from tests.waiting import POLL_SECONDS

SOCKET = "/v1/chat/socket"
ORIGIN = "https://shop.example.com"
SITE_SECRET = "site-identity-secret"
FRAME_SECONDS = 30.0


class Visitor:
    """One widget's socket, driven by hand: send frames, read the next of a kind."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        # every frame received, in order; `next` hands out those not yet taken
        self.seen: list[dict[str, Any]] = []
        self._taken: set[int] = set()

    async def send(self, **frame: Any) -> None:
        await self.ws.send_str(json.dumps(frame))

    async def next(self, kind: str | None = None) -> dict[str, Any]:
        """The first frame not yet taken (of `kind`, if given), failing after FRAME_SECONDS."""
        async with asyncio.timeout(FRAME_SECONDS):
            while True:
                for i, frame in enumerate(self.seen):
                    if i not in self._taken and kind in (None, frame["type"]):
                        self._taken.add(i)
                        return frame
                msg = await self.ws.receive()
                assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
                self.seen.append(json.loads(msg.data))

    async def messages(self, count: int) -> list[dict[str, Any]]:
        """The next `count` message frames."""
        return [await self.next("message") for _ in range(count)]

    async def say(self, message_id: str, text: str) -> dict[str, Any]:
        """Send a message and return its `accepted` frame."""
        await self.send(type="message", id=message_id, text=text)
        return await self.next("accepted")


@dataclass
class Chat:
    """The edge app serving the chat, its settings, a sender like any worker's, and Kafka."""

    client: TestClient[web.Request, web.Application]
    settings: Settings
    section: ChatSettings
    sender: ChatOutbound
    redis: Redis

    async def visit(self, *, origin: str = ORIGIN, **hello: Any) -> tuple[Visitor, dict[str, Any]]:
        """Open a socket, say hello, and return it with the welcome frame."""
        ws = await self.client.ws_connect(SOCKET, origin=origin)
        visitor = Visitor(ws)
        await visitor.send(type="hello", **hello)
        return visitor, await visitor.next("welcome")

    async def reply(self, session: str, message_id: str, reply_id: str, text: str,
                    conversation_id: str = "con_0123456789abcdef0123") -> str:
        """An agent's reply to the visitor's message, through the chat sender; its provider id."""
        receipt = await self.sender.send(OutboundMessage(
            reply_id=reply_id, conversation_id=conversation_id, channel="chat",
            recipient=Identity(kind="chat", value=session), kind="agent_reply", text=text,
            created_at=datetime(2026, 3, 2, 10, 0, tzinfo=UTC), author="maria",
            in_reply_to=f"{session}:{message_id}"))
        assert receipt.status == "sent", receipt.reason
        return receipt.provider_id or ""

    async def inbound(self, count: int, timeout: float = 30) -> list[InboundMessage]:
        """Wait until `count` messages are on the inbound topic; return them all."""
        deadline = time.monotonic() + timeout
        while True:
            found = [decode(r.value, InboundMessage)
                     for r in await read_all(self.settings, self.settings.topic(INBOUND))]
            if len(found) >= count:
                return found
            assert time.monotonic() < deadline, f"{len(found)} of {count} messages on the inbound topic"
            await asyncio.sleep(POLL_SECONDS)


@pytest.fixture
def chat_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The chat section; a test parametrizes it (indirectly) to change a limit."""
    return {"allowed_origins": [ORIGIN], "identity_secret": SITE_SECRET, "log_ttl_seconds": 600,
            "messages_per_minute": 1000, "sessions_per_ip_per_hour": 1000, **getattr(request, "param", {})}


@pytest.fixture
async def chat(stack: Settings, chat_config: dict[str, Any]) -> AsyncIterator[Chat]:
    prefix = unique_prefix()
    settings = stack.model_copy(update={"topic_prefix": prefix, "app_id": f"{prefix}sb",
                                        "sections": {"chat": chat_config}})
    section = settings.section("chat", ChatSettings)
    assert section is not None and section.namespace == f"{prefix}sb"
    await ensure_topics(settings)
    redis = Redis.from_url(settings.redis_dsn)
    producer = new_producer(settings)
    await producer.start()
    sender = ChatOutbound(section)
    await sender.start()
    try:
        async with TestClient(TestServer(app_for(settings, redis, Kafka(producer, timeout=30)))) as client:
            yield Chat(client, settings, section, sender, redis)
    finally:
        await sender.stop()
        await producer.stop()
        await redis.aclose()  # the chat's keys expire on their own (log_ttl_seconds)
