"""The web chat end to end in a real browser: widget → socket → routed → agent reply → page.

Debian's chromium opens the test page `switchboard run` serves, with the widget embedded
by its one tag; a `worker` runs the send stage alone, so every reply is sent by another
process than the one holding the socket, and still reaches it. The visitor who leaves gets the reply by mail
through the stack's own SMTP relay (devtools/relay.py) into Dovecot, answers it by SMTP,
and the answer joins the chat's conversation. Screenshots land in tests/artefacts/.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import smtplib
import time
import uuid
from collections.abc import Callable
from email.message import EmailMessage

import pytest
from playwright.async_api import Page

from router.settings import Settings
from schemas import RoutedConversation
from tests.browser import ARTEFACTS, open_page
from tests.e2e.mail_stack import MailStack, mail_stack  # noqa: F401 - the fixture
from tests.e2e.test_email import routed
from tests.processes import Switchboard
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
    chat: dict[str, object] = {"email_after_seconds": 600}
    # the edge holding the socket does not send: every reply comes from the other process
    edge = launch("run", SB_CHAT=json.dumps(chat), SB_STAGES="intake,brain,dispatch")
    chat["allowed_origins"] = [edge.url]
    launch("worker", SB_CHAT=json.dumps(chat), SB_STAGES="send")
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


def answer(mail: MailStack, sender: str, to: str, ours: email.message.EmailMessage, text: str) -> None:
    """Answer our mail by SMTP through the relay, as the visitor's mail client would."""
    # like a mail client: a long message id stays on its line, never folded or encoded
    reply = EmailMessage(policy=email.policy.SMTP.clone(max_line_length=998))
    reply["From"], reply["To"], reply["Subject"] = sender, to, f"Re: {ours['Subject']}"
    reply["In-Reply-To"] = reply["References"] = str(ours["Message-ID"])
    quoted = "\n".join("> " + line for line in ours.get_body(("plain",)).get_content().splitlines())  # type: ignore[union-attr]
    reply.set_content(f"{text}\n\nOn Monday, Example Support wrote:\n{quoted}\n")
    with smtplib.SMTP("127.0.0.1", mail.settings.smtp_port, timeout=10) as smtp:
        smtp.send_message(reply)


async def routed_email(deployment: Settings, sender: str, timeout: float = 120) -> RoutedConversation:
    """The routed conversation of the first mail from `sender` (the topic is read partition by partition)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in await routed(deployment, 1, timeout=timeout)
                 if r.message.channel == "email" and r.message.sender.value == sender]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no mail from {sender} routed"
        await asyncio.sleep(POLL_SECONDS)


async def test_the_visitor_leaves_the_reply_comes_by_mail_and_their_answer_joins_the_chat(
        deployment: Settings, launch: Launch, mail_stack: MailStack) -> None:  # noqa: F811 - the fixture
    visitor = f"visitor-{uuid.uuid4().hex[:8]}@example.org"
    stranger = f"stranger-{uuid.uuid4().hex[:8]}@example.org"
    chat = {"email_after_seconds": 1, "email_poll_seconds": 0.2,
            "smtp": json.loads(mail_stack.channel()["SB_EMAIL"])["smtp"]}
    edge = launch("run", SB_CHAT=json.dumps(chat), SB_REPLY_TOKEN_KEY="e2e-chat-continuation-key",
                  **mail_stack.channel())
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
        await page.goto("about:blank")  # the visitor leaves; the page's storage stays

        [first] = await routed(deployment, 1, timeout=120)
        status, _ = await edge.reply(first.conversation_id, "Order 77 ships Monday.")
        assert status == 202
        deadline = time.monotonic() + 120
        while not (mails := await asyncio.to_thread(mail_stack.inbox, visitor)):
            assert time.monotonic() < deadline, "the continuation mail never reached Dovecot"
            await asyncio.sleep(POLL_SECONDS)
        [raw] = mails
        ours = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(ours, EmailMessage)
        text = ours.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "maria: Order 77 ships Monday." in text and "You: Can you check order 77?" in text
        reply_to = ours["Reply-To"].addresses[0].addr_spec
        assert reply_to.startswith("support+" + first.conversation_id)

        # someone the mail was forwarded to answers it: nothing joins, nothing links
        answer(mail_stack, stranger, reply_to, ours, "Who is this?")
        other = await routed_email(deployment, stranger)
        assert other.conversation_id != first.conversation_id
        assert next(d for d in other.decisions if d.stage == "thread").outcome == "refused_join", (
            other.decisions, other.message.cites, ours["Message-ID"])
        identified = next(d for d in other.decisions if d.stage == "identify")
        assert any("mailed to another address" in r for r in identified.reasons), identified

        # the visitor answers from the address they gave: it joins the chat's conversation
        answer(mail_stack, visitor, reply_to, ours, "Great, thanks!")
        joined = await routed_email(deployment, visitor)
        assert joined.conversation_id == first.conversation_id
        assert next(d for d in joined.decisions if d.stage == "thread").outcome == "token"
        assert next(d for d in joined.decisions if d.stage == "identify").outcome == "linked"
        # the session is the address's customer now: the chat's history came with it
        status, customer = await asyncio.to_thread(edge.get, f"/v1/customers/{joined.customer_id}")
        assert status == 200 and f"chat:{first.message.sender.value}" in customer["identities"], customer
        assert f"email:{visitor}" in customer["identities"]
        deadline = time.monotonic() + 60
        while True:  # the agents' view: dispatch writes the card once it has the answer
            status, view = await asyncio.to_thread(edge.get, f"/v1/conversations/{first.conversation_id}")
            if status == 200 and view["card"]["customer_id"] == joined.customer_id:
                break
            assert time.monotonic() < deadline, view
            await asyncio.sleep(POLL_SECONDS)
        mine = [line for line in view["history"] if line["this_conversation"]]
        assert {line["channel"] for line in mine} >= {"chat", "email"}, mine
        # the conversation still lives in the chat: the next reply goes there (and on by mail)
        assert (view["card"]["channel"], view["card"]["recipient"]["kind"]) == ("chat", "chat"), view["card"]

        # the visitor comes back to the chat: their mail is in it, and the address is verified
        await page.goto(f"{edge.url}/chat/demo.html")
        await page.wait_for_selector(".sb-chat[data-state=open]")
        rows = await showing(page, "Great, thanks!")
        contiguous(rows)
        words = ["Can you check order 77?", "Order 77 ships Monday.", "Great, thanks!"]
        assert [(a, t) for _, a, t in rows if t in words] == list(zip(
            ["visitor", "agent", "visitor"], words, strict=True)), rows
        assert "Who is this?" not in [t for _, _, t in rows]
        status, _ = await edge.reply(first.conversation_id, "Glad to help!")
        assert status == 202
        final = await showing(page, "Glad to help!")
        contiguous(final)
        assert [t for _, _, t in final if t in [*words, "Glad to help!"]] == [*words, "Glad to help!"]
        await page.screenshot(path=str(ARTEFACTS / "chat-4-answer-by-mail.png"))
