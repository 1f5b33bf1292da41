"""The X Activity API webhook on the router's HTTP server, fed by the local X: CRC, signatures, events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client import REGISTRY

from connectors.twitter.parse import ENCRYPTED_TEXT
from connectors.twitter.settings import XSettings
from connectors.twitter.webhook import PATH, routes
from router.http.server import build_app
from router.settings import Settings
from tests.contract.checks import StubEdge
from tests.emulators.x import ADA, XEmulator

pytestmark = pytest.mark.integration


@dataclass
class Hook:
    x: XEmulator
    edge: StubEdge
    url: str


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    x = XEmulator()
    edge = StubEdge()
    settings = XSettings(account_id=x.account, consumer_secret=x.consumer_secret)
    server = TestServer(build_app(Settings(sections={}), {}, list(routes(settings, edge))))
    await server.start_server()
    try:
        yield Hook(x, edge, str(server.make_url(PATH)))
    finally:
        await server.close()


def counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("sb_x_webhook_total", {"outcome": outcome}) or 0.0


async def test_x_crc_check_passes(hook: Hook) -> None:
    assert await hook.x.crc(hook.url)


async def test_a_crc_without_a_token_is_refused_and_counted(hook: Hook) -> None:
    before = counted("bad_crc")
    async with aiohttp.ClientSession() as session, session.get(hook.url) as response:
        assert response.status == 401 and (await response.json())["error"]["code"] == "bad_signature"
    assert counted("bad_crc") == before + 1


async def test_a_mention_is_accepted_once_per_post(hook: Hook) -> None:
    envelope = hook.x.envelope("post.mention.create", hook.x.mention("where is my parcel?"))
    status, answer = await hook.x.deliver(hook.url, envelope)
    again, answer_again = await hook.x.deliver(hook.url, envelope)  # X's redelivery
    assert (status, again) == (200, 200) and answer["event_id"] == answer_again["event_id"]
    message = hook.edge.accepted[0]
    assert str(message.sender) == f"xid:{ADA}" and message.tags == ("public",)
    assert message.text.endswith("where is my parcel?")


@pytest.mark.parametrize("signature", ["sha256=" + "A" * 43 + "=", "sha1=nope", ""])
async def test_a_bad_signature_is_refused_before_parsing_and_counted(hook: Hook, signature: str) -> None:
    before = counted("bad_signature")
    envelope = hook.x.envelope("post.mention.create", hook.x.mention("hello"))
    body = json.dumps(envelope).encode()
    headers = {"x-twitter-webhooks-signature": signature} if signature else {}
    async with aiohttp.ClientSession() as session, session.post(hook.url, data=body, headers=headers) as r:
        assert r.status == 401 and (await r.json())["error"]["code"] == "bad_signature"
    assert counted("bad_signature") == before + 1 and hook.edge.accepted == []


async def test_our_own_post_is_answered_but_not_routed(hook: Hook) -> None:
    ours = hook.x.mention("we're looking", author=hook.x.account)
    status, answer = await hook.x.deliver(hook.url, hook.x.envelope("post.reply.create", ours))
    assert status == 200 and answer["ignored"] == "our own post" and hook.edge.accepted == []


async def test_a_signed_but_unreadable_event_is_a_400(hook: Hook) -> None:
    status, answer = await hook.x.deliver(hook.url, {"data": {"event_type": "dm.received", "payload": {}}})
    assert status == 400 and answer["error"]["code"] == "bad_event"


async def test_an_encrypted_dm_is_routed_as_unreadable(hook: Hook) -> None:
    event = {"id": hook.x.new_id(), "conversation_id": f"{ADA}-{hook.x.account}", "sender_id": ADA,
             "encoded_event": "AAAAAQ9nS2h0dHBz"}
    status, _ = await hook.x.deliver(hook.url, hook.x.envelope("chat.received", event))
    assert status == 200 and hook.edge.accepted[0].text == ENCRYPTED_TEXT


async def test_an_oversized_body_is_refused_even_when_signed(hook: Hook) -> None:
    body = b'{"data": {"event_type": "dm.received", "payload": {"text": "' + b"x" * 300_000 + b'"}}}'
    headers = {"x-twitter-webhooks-signature": hook.x.signature(body)}
    async with aiohttp.ClientSession() as session, session.post(hook.url, data=body, headers=headers) as r:
        assert r.status == 401 and "larger than any X event" in (await r.json())["error"]["message"]
    assert hook.edge.accepted == []
