"""Replies the visitor did not see go on by mail, batched, with a recap and a Reply-To that threads back."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from prometheus_client import REGISTRY

from schemas import Identity, OutboundMessage
from schemas.tokens import check_continuation, continuation_key, make_token
from tests.integration.chat.conftest import Chat
from tests.processes import free_port
from tests.waiting import until

pytestmark = pytest.mark.integration
CONVERSATION = "con_0123456789abcdef0123"
SMTP_PORT = free_port()


class Inbox:
    """An SMTP server's handler that keeps every message."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))  # type: ignore[arg-type]
        return "250 OK"


@pytest.fixture(scope="module")
def inbox() -> Iterator[Inbox]:
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=SMTP_PORT)
    controller.start()
    yield handler
    controller.stop()


WITH_SMTP = {"email_after_seconds": 0.5, "email_poll_seconds": 0.05, "smtp": {
    "host": "127.0.0.1", "port": SMTP_PORT, "tls": "none", "from_address": "support@example.com",
    "from_name": "Example Support", "message_id_domain": "support.example.com", "max_attempts": 2}}


def mails_to(inbox: Inbox, address: str) -> list[EmailMessage]:
    return [m for m in inbox.messages if m["To"] == address]


def outcomes(outcome: str) -> float:
    return REGISTRY.get_sample_value("sb_chat_continuations_total", {"outcome": outcome}) or 0.0


@pytest.mark.parametrize("chat_config", [WITH_SMTP], indirect=True)
async def test_unseen_replies_are_mailed_once_batched_with_a_recap_that_threads_back(
        chat: Chat, inbox: Inbox) -> None:
    visitor, welcome = await chat.visit()
    session, address = welcome["session"], f"{welcome['session'][2:10].lower()}@example.org"
    await visitor.send(type="email", address=address)
    await visitor.say("m1", "Is my parcel lost?")
    await visitor.ws.close()  # the visitor leaves before anyone answers
    await chat.reply(session, "m1", "rep_1", "Not lost: it is in customs.", CONVERSATION)
    await chat.reply(session, "m1", "rep_2", "It should clear tomorrow.", CONVERSATION)
    [mail] = await until(lambda: mails_to(inbox, address), "the continuation mail never came", timeout=30)
    key = chat.section.token_key.get_secret_value().encode()
    # the Message-ID threads by the conversation's token; Reply-To and [ref:] carry one for this address
    assert make_token(CONVERSATION, key) in mail["Message-ID"]
    base, _, tag = mail["Reply-To"].addresses[0].addr_spec.partition("@")[0].partition("+")
    assert base == "support"
    now, ckey = mail["Date"].datetime, continuation_key(key)  # the sender's clock stamped both
    found = check_continuation(tag, address, now, ckey)
    assert found is not None and (found.conversation_id, found.verdict) == (CONVERSATION, "verified")
    elsewhere = check_continuation(tag, "someone@example.org", now, ckey)
    assert elsewhere is not None and elsewhere.verdict == "other_address"
    # it lasts the configured days, not one more
    late = check_continuation(tag, address, now + timedelta(days=31), ckey)
    assert late is not None and late.verdict == "expired"
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert text.index("maria: Not lost: it is in customs.") < text.index("maria: It should clear tomorrow.")
    assert text.index("It should clear tomorrow.") < text.index("You: Is my parcel lost?")
    assert f"[ref:{tag}]" in text

    # a later reply starts a new batch holding only itself
    await chat.reply(session, "m1", "rep_3", "Cleared!", CONVERSATION)
    await until(lambda: len(mails_to(inbox, address)) == 2, "the second batch never came", timeout=30)
    later = mails_to(inbox, address)[1].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "maria: Cleared!" in later and "customs" in later.split("-- Earlier in the chat --")[1]
    assert later.index("maria: Cleared!") < later.index("-- Earlier")


@pytest.mark.parametrize("chat_config", [WITH_SMTP], indirect=True)
async def test_replies_the_visitor_saw_or_with_no_address_stay_in_the_chat(chat: Chat, inbox: Inbox) -> None:
    present, welcome = await chat.visit()
    await present.send(type="email", address="present@example.org")
    await present.say("m1", "Hello")
    seen = outcomes("seen")
    await chat.reply(welcome["session"], "m1", "rep_1", "Hi, here now.", CONVERSATION)
    [_, shown] = await present.messages(2)
    await present.send(type="ack", seq=shown["seq"])
    await until(lambda: outcomes("seen") > seen, "the batch was never looked at", timeout=30)

    anonymous, other = await chat.visit()
    await anonymous.say("m1", "No address from me")
    await anonymous.ws.close()
    waiting = outcomes("no_address")
    await chat.reply(other["session"], "m1", "rep_1", "Answer for the chat only.", CONVERSATION)
    await until(lambda: outcomes("no_address") > waiting, "the batch was never looked at", timeout=30)
    assert not mails_to(inbox, "present@example.org")
    back, _ = await chat.visit(session=other["session"], token=other["token"], last_seq=1)
    assert (await back.next("message"))["text"] == "Answer for the chat only."


async def test_the_visitors_answer_by_mail_joins_the_chat_as_theirs_and_verifies_the_address(
        chat: Chat) -> None:
    visitor, welcome = await chat.visit()
    session = welcome["session"]
    await visitor.send(type="email", address="typed@example.org")
    await visitor.say("m1", "Is my parcel lost?")
    await visitor.ws.close()
    await chat.reply(session, "m1", "rep_1", "Not lost: it is in customs.", CONVERSATION)
    # what intake sends once the answer's continuation token is verified (processors.intake.continuation)
    copy = OutboundMessage(
        reply_id="tra_1", conversation_id=CONVERSATION, channel="chat",
        recipient=Identity(kind="chat", value=session), kind="transcript", text="Great, thanks!",
        created_at=datetime(2026, 3, 2, 11, 0, tzinfo=UTC),
        author="Typed@Example.org", in_reply_to=f"{session}:m1")
    receipt = await chat.sender.send(copy)
    again = await chat.sender.send(copy)  # a resend is the same message
    assert receipt.status == again.status == "sent"
    assert receipt.provider_id == again.provider_id == f"{session}#3"

    back, hello = await chat.visit(session=session, token=welcome["token"], last_seq=1)
    assert (hello["email"], hello["email_verified"]) == ("typed@example.org", True)
    [reply, answer] = await back.messages(2)
    assert (reply["author"], reply["text"]) == ("agent", "Not lost: it is in customs.")
    assert (answer["seq"], answer["author"], answer["kind"], answer["text"]) == (
        3, "visitor", "transcript", "Great, thanks!")
