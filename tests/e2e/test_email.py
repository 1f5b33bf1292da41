"""The email channel end to end: Dovecot → switchboard run → Kafka → SMTP, real everything."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import signal
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from router.settings import Settings
from schemas import DeliveryReceipt, Identity, OutboundMessage, RoutedConversation, decode, encode
from schemas.topics import DELIVERY, INBOUND, OUTBOUND, ROUTED
from tests.integration.email.conftest import PASSWORD, USER, Mailbox, make_mail
from tests.kafka_tools import publish, read_all, wait_drained
from tests.processes import Switchboard
from tests.receivers.smtp import Inbox
from tests.waiting import POLL_SECONDS

pytestmark = pytest.mark.e2e
Launch = Callable[..., Switchboard]


def email_env(stack: Settings, mailbox: Mailbox, smtp_port: int) -> dict[str, str]:
    config = {
        "accounts": [{"name": "support", "host": "127.0.0.1", "port": stack.imap_port,
                      "username": USER, "password": PASSWORD, "mailbox": mailbox.name,
                      "tls": "none", "timeout": 10}],
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "tls": "none",
                 "from_address": "support@example.com", "from_name": "Example Support",
                 "message_id_domain": "support.example.com", "max_attempts": 3},
        "token_key": "e2e-reply-token-key",
    }
    return {"SB_EMAIL": json.dumps(config), "SB_REPLY_TOKEN_KEY": "e2e-reply-token-key"}


async def routed(settings: Settings, count: int, timeout: float = 60) -> list[RoutedConversation]:
    """Wait until `count` routed conversations exist, and return them all."""
    deadline = time.monotonic() + timeout
    while True:
        found = [decode(r.value, RoutedConversation)
                 for r in await read_all(settings, settings.topic(ROUTED))]
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"{len(found)} of {count} routed"
        await asyncio.sleep(POLL_SECONDS)


async def until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(POLL_SECONDS)


async def test_mail_in_reply_out_in_thread_and_the_answer_joins(
    stack: Settings, deployment: Settings, launch: Launch, mailbox: Mailbox,
    smtp: tuple[Inbox, int],
) -> None:
    inbox, smtp_port = smtp
    launch("run", **email_env(stack, mailbox, smtp_port))
    await mailbox.append(make_mail("Order 1234 never arrived", message_id="<first@example.org>",
                                   body="It has been two weeks.\n\n-- \nAda"))
    [first] = await routed(deployment, 1)
    assert first.message.channel == "email"
    assert first.message.text.strip() == "It has been two weeks."
    assert first.message.raw_ref and first.message.raw_ref.startswith("imap://")

    reply = OutboundMessage(
        reply_id=f"rep_{uuid.uuid4().hex[:12]}", conversation_id=first.conversation_id,
        channel="email", recipient=Identity(kind="email", value="ada@example.org"),
        kind="agent_reply", text="Sorry! A new parcel left today.", created_at=datetime.now(UTC),
        subject="Order 1234 never arrived", in_reply_to="first@example.org",
        references=("first@example.org",), author="maria")
    await publish(deployment, deployment.topic(OUTBOUND),
                  [(reply.conversation_id.encode(), encode(reply))] * 2)  # a duplicate, too
    # the team's copy goes through the same SMTP server (the example's support mailbox)
    def to_customer() -> list[email.message.EmailMessage]:
        return [m for m in inbox.messages if m["To"] == "ada@example.org"]

    await until(lambda: len(to_customer()) >= 2, "the ack and the reply never reached SMTP")
    [ack] = [m for m in to_customer() if m["Auto-Submitted"] == "auto-replied"]
    [sent] = [m for m in to_customer() if m["Auto-Submitted"] is None]
    assert ack["In-Reply-To"] == "<first@example.org>"
    assert "will answer by" in ack.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert sent["In-Reply-To"] == "<first@example.org>"
    assert "<first@example.org>" in sent["References"]
    assert sent["Subject"] == "Re: Order 1234 never arrived"
    assert sent["Message-ID"].endswith("@support.example.com>")
    assert first.conversation_id in sent["Message-ID"]
    await wait_drained(deployment)
    assert len(to_customer()) == 2, "the duplicate reply was sent again"
    receipts = [decode(r.value, DeliveryReceipt) for r in
                await read_all(deployment, deployment.topic(DELIVERY))]
    assert sorted(r.status for r in receipts) == ["sent", "sent"]
    assert reply.reply_id in {r.reply_id for r in receipts}

    # the customer answers; Outlook-style, the subject changed
    answer = make_mail("RE: your parcel", body="Thanks, it arrived!")
    answer = answer.replace(b"Subject:", b"In-Reply-To: " + sent["Message-ID"].encode() + b"\r\nSubject:", 1)
    await mailbox.append(answer)
    second = (await routed(deployment, 2))[1]
    assert second.conversation_id == first.conversation_id
    threaded = next(d for d in second.decisions if d.stage == "thread")
    assert threaded.outcome == "token" and "In-Reply-To matches our reply" in threaded.reasons[0]
    acknowledged = next(d for d in second.decisions if d.stage == "acknowledge")
    assert acknowledged.outcome == "skip"  # one acknowledgement per conversation


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["graceful", "killed"])
async def test_connector_stopped_mid_backlog_routes_every_mail_once(
    stack: Settings, deployment: Settings, launch: Launch, mailbox: Mailbox,
    smtp: tuple[Inbox, int], sig: signal.Signals,
) -> None:
    total = 300
    mails = [make_mail(f"Question {i}", sender=f"c{i}@example.org") for i in range(total)]
    await mailbox.append(*mails)
    env = email_env(stack, mailbox, smtp[1])
    first = launch("run", **env)
    while len(await read_all(deployment, deployment.topic(INBOUND))) < 30:
        assert first.proc is not None and first.proc.poll() is None, first.tail_log()
    first.stop(sig)
    launch("run", **env)
    found = await routed(deployment, total, timeout=120)
    await wait_drained(deployment)
    found = [decode(r.value, RoutedConversation) for r in
             await read_all(deployment, deployment.topic(ROUTED))]
    natives = {r.message.native_id for r in found}
    assert len(natives) == total, "a mail was lost"
    assert len({r.event_id for r in found}) == total
    assert len({r.conversation_id for r in found}) == total, "a mail became two conversations"
    if sig is signal.SIGTERM:
        assert len(found) == total, "a mail was routed twice"
