"""Replies the visitor did not see go on by mail, batched, with a recap and a Reply-To that threads back."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from prometheus_client import REGISTRY

from schemas.tokens import make_token
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
    token = make_token(CONVERSATION, chat.section.token_key.get_secret_value().encode())
    assert mail["Reply-To"].addresses[0].addr_spec == f"support+{token}@example.com"
    assert token in mail["Message-ID"]
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert text.index("maria: Not lost: it is in customs.") < text.index("maria: It should clear tomorrow.")
    assert text.index("It should clear tomorrow.") < text.index("You: Is my parcel lost?")
    assert f"[ref:{token}]" in text

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
