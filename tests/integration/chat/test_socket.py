"""The chat socket over real connections: ordering, idempotent resend, gap replay, limits, bad frames."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from connectors.chat.sessions import identity_hash
from schemas import Identity
from schemas.inbound import ChatExtras
from tests.integration.chat.conftest import ORIGIN, SITE_SECRET, SOCKET, Chat, Visitor

pytestmark = pytest.mark.integration


async def test_a_new_visitor_gets_a_session_and_their_message_is_routed_once(chat: Chat) -> None:
    visitor, welcome = await chat.visit()
    session = welcome["session"]
    assert session.startswith("s_") and welcome["token"] and not welcome["resumed"]
    # the waiting state: the example policy's promise for a new customer, in its words
    status = await visitor.next("status")
    assert status["tier"] == "standard" and status["expected_text"] and status["offer_email"]
    accepted = await visitor.say("m1", "Where is my parcel?")
    shown = await visitor.next("message")
    assert accepted == {"type": "accepted", "id": "m1", "seq": 1}
    assert (shown["seq"], shown["id"], shown["author"], shown["text"]) == (
        1, "m1", "visitor", "Where is my parcel?")
    [message] = await chat.inbound(1)
    assert (message.channel, message.sender, message.thread_key) == (
        "chat", Identity(kind="chat", value=session), f"chat:{session}")
    assert message.extras == ChatExtras(session=session, seq=1, origin=ORIGIN)
    assert message.reply_ref is not None and message.reply_ref.in_reply_to == f"{session}:m1"


async def test_a_resent_message_is_one_message(chat: Chat) -> None:
    visitor, welcome = await chat.visit()
    first = await visitor.say("m1", "Hello?")
    again = await visitor.say("m1", "Hello?")
    assert first["seq"] == again["seq"] == 1
    await visitor.say("m2", "Anyone there?")
    shown = await visitor.messages(2)
    assert [(m["seq"], m["id"]) for m in shown] == [(1, "m1"), (2, "m2")]
    # both sends were handed over; they are one event, which intake takes once
    routed = await chat.inbound(3)
    assert len({m.event_id for m in routed}) == 2
    assert await chat.redis.llen(f"{chat.section.namespace}:chat:{welcome['session']}:log") == 2


async def test_replies_from_any_worker_arrive_in_order_exactly_once(chat: Chat) -> None:
    visitor, welcome = await chat.visit()
    session = welcome["session"]
    await visitor.say("m1", "My order never came")
    for i in range(20):
        await chat.reply(session, "m1", f"rep_{i}", f"reply {i}")
    shown = await visitor.messages(21)
    assert [m["seq"] for m in shown] == list(range(1, 22))
    assert [m["text"] for m in shown[1:]] == [f"reply {i}" for i in range(20)]
    assert {m["author"] for m in shown[1:]} == {"agent"}
    # a reply the send stage retries is still one message
    assert await chat.reply(session, "m1", "rep_3", "reply 3") == f"{session}#5"


async def test_reconnecting_replays_the_gap_and_a_reload_the_whole_history(chat: Chat) -> None:
    visitor, welcome = await chat.visit()
    session, token = welcome["session"], welcome["token"]
    await visitor.say("m1", "Hi")
    await chat.reply(session, "m1", "rep_a", "Hello! Looking into it.")
    assert [m["seq"] for m in await visitor.messages(2)] == [1, 2]
    await visitor.ws.close()
    # while the visitor is away, two more replies
    await chat.reply(session, "m1", "rep_b", "Found it.")
    await chat.reply(session, "m1", "rep_c", "It ships today.")

    back, again = await chat.visit(session=session, token=token, last_seq=2)
    assert again["resumed"] and again["session"] == session and again["last_seq"] == 4
    assert [(m["seq"], m["text"]) for m in await back.messages(2)] == [
        (3, "Found it."), (4, "It ships today.")]
    await back.say("m2", "Thanks!")
    assert [m["seq"] for m in await back.messages(1)] == [5]
    await back.ws.close()

    reloaded, _ = await chat.visit(session=session, token=token, last_seq=0)
    assert [m["seq"] for m in await reloaded.messages(5)] == [1, 2, 3, 4, 5]


async def test_a_session_without_its_token_starts_afresh_and_sees_nothing(chat: Chat) -> None:
    visitor, welcome = await chat.visit()
    await visitor.say("m1", "My address is 1 Private Lane")
    thief, theirs = await chat.visit(session=welcome["session"], token="forged", last_seq=0)
    assert thief.seen[0]["code"] == "bad_session"
    assert theirs["session"] != welcome["session"] and theirs["last_seq"] == 0 and not theirs["resumed"]


async def test_bad_frames_get_an_error_frame_and_the_socket_stays(chat: Chat) -> None:
    ws = await chat.client.ws_connect(SOCKET, origin=ORIGIN)
    visitor = Visitor(ws)
    await visitor.send(type="message", id="m0", text="before hello")
    assert (await visitor.next("error"))["code"] == "no_hello"
    await visitor.send(type="hello")
    await visitor.next("welcome")
    cases: list[tuple[Any, str]] = [
        ("{not json", "bad_json"), (json.dumps({"type": "shout"}), "invalid_frame"),
        (json.dumps({"type": "message", "id": "m1"}), "invalid_frame"),
        (json.dumps({"type": "message", "id": "has space", "text": "x"}), "invalid_frame"),
        (json.dumps({"type": "message", "id": "m1", "text": "   "}), "empty"),
        (json.dumps({"type": "message", "id": "m1", "text": "x" * 4_001}), "too_long"),
        (json.dumps({"type": "ack", "seq": -1}), "invalid_frame"),
        (json.dumps({"type": "email", "address": "not-an-address"}), "invalid_email"),
        (json.dumps({"type": "hello"}), "invalid_frame"),
        ("[" * 5_000 + "]" * 5_000, "bad_json"),
    ]
    for raw, code in cases:
        await ws.send_str(raw)
        assert (await visitor.next("error"))["code"] == code, raw[:40]
    await ws.send_bytes(b"\x00\x01")
    assert (await visitor.next("error"))["code"] == "binary"
    assert (await visitor.say("m1", "still here"))["seq"] == 1


async def test_a_frame_over_ws_max_size_closes_with_1009(chat: Chat) -> None:
    visitor, _ = await chat.visit()
    await visitor.ws.send_str(json.dumps({"type": "message", "id": "m1",
                                          "text": "x" * (chat.section.ws_max_size + 10)}))
    async with asyncio.timeout(10):
        msg = await visitor.ws.receive()
        while msg.type == aiohttp.WSMsgType.TEXT:
            msg = await visitor.ws.receive()
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    assert visitor.ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG


async def test_a_page_from_another_origin_is_refused_before_the_upgrade(chat: Chat) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await chat.client.ws_connect(SOCKET, origin="https://evil.example.net")
    assert refused.value.status == 403
    # with an allow-list, a socket that names no page at all is refused too
    with pytest.raises(aiohttp.WSServerHandshakeError) as nameless:
        await chat.client.ws_connect(SOCKET)
    assert nameless.value.status == 403
    response = await chat.client.get(SOCKET, headers={"Origin": ORIGIN})
    assert response.status == 426 and (await response.json())["error"]["code"] == "upgrade_required"
    refused = await chat.client.get(SOCKET)
    assert (await refused.json())["error"]["code"] == "origin_required"


@pytest.mark.parametrize("chat_config", [{"messages_per_minute": 3}], indirect=True)
async def test_messages_per_session_per_minute_are_limited(chat: Chat) -> None:
    visitor, _ = await chat.visit()
    for i in range(3):
        await visitor.say(f"m{i}", f"message {i}")
    await visitor.send(type="message", id="m3", text="one too many")
    refused = await visitor.next("error")
    assert (refused["code"], refused["id"]) == ("rate_limited", "m3") and 0 < refused["retry_after"] <= 60


@pytest.mark.parametrize("chat_config", [{"sessions_per_ip_per_hour": 2}], indirect=True)
async def test_new_sessions_per_address_are_limited(chat: Chat) -> None:
    await chat.visit()
    _, second = await chat.visit()
    ws = await chat.client.ws_connect(SOCKET, origin=ORIGIN)
    await ws.send_str(json.dumps({"type": "hello"}))
    refused = json.loads((await ws.receive()).data)
    assert refused["code"] == "too_many_sessions"
    assert (await ws.receive()).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    # a visitor who already has a session still comes back
    _, back = await chat.visit(session=second["session"], token=second["token"])
    assert back["resumed"]


async def test_an_email_the_site_signs_is_the_sender_and_a_typed_one_only_an_attribute(chat: Chat) -> None:
    signed, welcome = await chat.visit(user_email="Ada@Example.org",
                                       user_hash=identity_hash("ada@example.org", SITE_SECRET.encode()))
    assert welcome["email"] == "ada@example.org" and welcome["email_verified"]
    await signed.say("m1", "It's Ada, logged in")
    typed, other = await chat.visit()
    await typed.send(type="email", address="ada@example.org")
    assert (await typed.next("email")) == {"type": "email", "address": "ada@example.org", "verified": False}
    await typed.say("m1", "I am totally Ada")
    forged, _ = await chat.visit(user_email="ada@example.org", user_hash="0" * 64)
    assert forged.seen[0]["code"] == "bad_identity"
    first, second = sorted(await chat.inbound(2), key=lambda m: m.sender.kind == "chat")
    assert first.sender == Identity(kind="email", value="ada@example.org")
    assert isinstance(first.extras, ChatExtras) and first.extras.email_verified
    assert second.sender == Identity(kind="chat", value=other["session"])
    assert isinstance(second.extras, ChatExtras)
    assert (second.extras.email, second.extras.email_verified) == ("ada@example.org", False)
