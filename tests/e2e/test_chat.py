"""The web chat end to end in a real browser: widget → socket → routed → agent reply → page.

Debian's chromium opens the test page `switchboard run` serves, with the widget embedded
by its one tag; a `worker` shares the stages, so a reply may be sent by either process
and still reaches the socket the edge holds. Screenshots land in tests/artefacts/.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import imaplib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from playwright.async_api import Page

from router.settings import Settings
from tests.browser import ARTEFACTS, open_page
from tests.e2e.test_email import email_env, routed
from tests.integration.email.conftest import Mailbox, deliver_lmtp, make_mail
from tests.processes import Switchboard, free_port
from tests.waiting import POLL_SECONDS

pytestmark = pytest.mark.e2e
Launch = Callable[..., Switchboard]


async def shown(page: Page) -> list[tuple[int, str, str]]:
    """(number, author, text) of every message on screen, in screen order."""
    rows = await page.eval_on_selector_all(
        ".sb-log li", "items => items.map(i => [Number(i.dataset.seq), i.className, "
        "i.querySelector('.sb-text').textContent])")
    return [(seq, cls.split("sb-")[-1].strip(), text) for seq, cls, text in rows]


async def showing(page: Page, text: str, timeout: float = 60) -> list[tuple[int, str, str]]:
    """Wait until a message with `text` is on screen; the whole screen then."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = await shown(page)
        if any(t == text for _, _, t in rows):
            return rows
        assert asyncio.get_running_loop().time() < deadline, f"{text!r} never shown; screen: {rows}"
        await asyncio.sleep(0.1)


def contiguous(rows: list[tuple[int, str, str]]) -> None:
    """Numbers 1..n, each once, in order: no duplicates, no holes."""
    assert [seq for seq, _, _ in rows] == list(range(1, len(rows) + 1)), rows


async def test_a_visitor_chats_replies_arrive_reload_keeps_history_and_a_drop_loses_nothing(
        deployment: Settings, launch: Launch) -> None:
    chat = {"email_after_seconds": 600}
    edge = launch("run", SB_CHAT=json.dumps(chat))
    chat["allowed_origins"] = [edge.url]  # type: ignore[assignment]
    launch("worker", SB_CHAT=json.dumps(chat))
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    async with open_page() as page:
        await page.goto(f"{edge.url}/chat/demo.html")
        await page.wait_for_selector(".sb-chat[data-state=open]")
        await page.fill(".sb-send textarea", "My parcel never arrived")
        await page.click(".sb-send button")
        await showing(page, "My parcel never arrived")
        [first] = await routed(deployment, 1, timeout=120)
        assert first.message.channel == "chat" and first.message.sender.kind == "chat"

        status, body = await edge.reply(first.conversation_id, "Sorry! A new parcel left today.")
        assert status == 202, body
        rows = await showing(page, "Sorry! A new parcel left today.")
        contiguous(rows)
        await page.screenshot(path=str(ARTEFACTS / "chat-1-reply.png"))

        await page.reload()
        await page.wait_for_selector(".sb-chat[data-state=open]")
        again = await showing(page, "Sorry! A new parcel left today.")
        assert again == rows, "a reload shows the same history"

        # the connection drops mid-conversation: a reply and a message cross the gap
        await page.evaluate("window.SwitchboardChat.drop()")
        status, _ = await asyncio.to_thread(
            edge.post, f"/v1/conversations/{first.conversation_id}/replies",
            json.dumps({"text": "Tracking: SB123", "author": "maria"}).encode())
        assert status == 202
        await page.fill(".sb-send textarea", "Thanks, and the tracking number?")
        await page.click(".sb-send button")
        await showing(page, "Tracking: SB123")
        final = await showing(page, "Thanks, and the tracking number?")
        contiguous(final)
        assert [t for _, _, t in final].count("Tracking: SB123") == 1
        await page.screenshot(path=str(ARTEFACTS / "chat-2-after-drop.png"))
        second = await routed(deployment, 2, timeout=120)
        assert {r.conversation_id for r in second} == {first.conversation_id}


class Relay:
    """A real SMTP server on loopback that hands every mail to Dovecot over LMTP."""

    def __init__(self, lmtp_port: int) -> None:
        self.lmtp_port = lmtp_port

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.to_thread(deliver_lmtp, self.lmtp_port, envelope.content)
        return "250 OK"


@pytest.fixture
def relay(stack: Settings) -> Iterator[int]:
    port = free_port()
    controller = Controller(Relay(stack.lmtp_port), hostname="127.0.0.1", port=port)
    controller.start()
    yield port
    controller.stop()


def delivered_to(address: str) -> Callable[[imaplib.IMAP4], list[bytes]]:
    """An IMAP look into Dovecot's INBOX for the mails sent to `address`."""
    def work(conn: imaplib.IMAP4) -> list[bytes]:
        conn.select("INBOX", readonly=True)
        _, found = conn.search(None, "HEADER", "To", address)
        mails = []
        for number in found[0].split():
            _, data = conn.fetch(number, "(RFC822)")
            mails.append(bytes(data[0][1]))  # type: ignore[index]
        return mails
    return work


async def test_the_visitor_leaves_the_reply_comes_by_mail_through_dovecot_and_their_answer_names_it(
        stack: Settings, deployment: Settings, launch: Launch, relay: int, mailbox: Mailbox) -> None:
    visitor = f"visitor-{uuid.uuid4().hex[:8]}@example.org"
    chat = {"email_after_seconds": 1, "email_poll_seconds": 0.2, "smtp": {
        "host": "127.0.0.1", "port": relay, "tls": "none", "from_address": "support@example.com",
        "from_name": "Example Support", "message_id_domain": "support.example.com"}}
    edge = launch("run", SB_CHAT=json.dumps(chat), **email_env(stack, mailbox, relay))
    async with open_page() as page:
        await page.goto(f"{edge.url}/chat/demo.html")
        await page.wait_for_selector(".sb-chat[data-state=open]")
        await page.fill(".sb-email input", visitor)
        await page.click(".sb-email button")
        await page.wait_for_function(
            "document.querySelector('.sb-status').textContent.includes('will email')")
        await page.fill(".sb-send textarea", "Can you check order 77?")
        await page.click(".sb-send button")
        await showing(page, "Can you check order 77?")
        await page.screenshot(path=str(ARTEFACTS / "chat-3-before-leaving.png"))
    # the visitor has left; the agent answers
    [first] = await routed(deployment, 1, timeout=120)
    status, _ = await edge.reply(first.conversation_id, "Order 77 ships Monday.")
    assert status == 202
    deadline = time.monotonic() + 120
    while not (mails := await mailbox.call(delivered_to(visitor))):
        assert time.monotonic() < deadline, "the continuation mail never reached Dovecot"
        await asyncio.sleep(POLL_SECONDS)
    [raw] = mails
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "maria: Order 77 ships Monday." in text and "You: Can you check order 77?" in text
    assert first.conversation_id in mail["Reply-To"]

    answer = make_mail("Re: Your chat with Example Support", sender=visitor, body="Great, thanks!")
    answer = answer.replace(b"Subject:", b"In-Reply-To: " + mail["Message-ID"].encode() + b"\r\nSubject:", 1)
    await mailbox.append(answer)
    # the topic is read partition after partition: the answer is found by its channel, not its place
    [second] = [r for r in await routed(deployment, 2, timeout=120) if r.message.channel == "email"]
    # the answer finds the chat's conversation by its token; the thread rule joins it only
    # once the address is linked to the visitor's customer (an agent's call: decision 0013)
    threaded = next(d for d in second.decisions if d.stage == "thread")
    assert threaded.outcome == "refused_join" and first.conversation_id in threaded.reasons[0]
