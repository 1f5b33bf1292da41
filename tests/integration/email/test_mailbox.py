"""Team mailbox: a routed conversation mailed to the team, the agent's answer made a reply.

Real aiosmtpd server, real Redis, the real mail parser and intake stage.
"""

from __future__ import annotations

import email
import email.policy
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
from redis.asyncio import Redis

from connectors.base import Handoff
from connectors.email.mailbox import MailboxTool
from connectors.email.parse import parse_email
from connectors.email.settings import EmailSettings
from processors.intake.stage import Intake
from processors.stage import Record
from processors.stores.cards import CardStore, card_fields
from processors.stores.claims import ClaimStore
from processors.stores.history import HistoryStore
from processors.stores.identities import IdentityStore
from router.settings import Settings
from schemas import DeadLetter, Identity, OutboundMessage, decode, encode
from schemas.conversation import ConversationCard
from schemas.errors import PermanentError, TransientError
from schemas.topics import DEADLETTER, IDENTIFIED, OUTBOUND
from tests.integration.email.conftest import Recorder, SmtpServer, smtp_settings

pytestmark = pytest.mark.integration
KEY = "mailbox-test-key"
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.fixture
async def redis(stack: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(stack.redis_dsn)
    yield client
    await client.aclose()


def card(conversation_id: str) -> ConversationCard:
    return ConversationCard(
        conversation_id=conversation_id, customer_id="cus_ada", channel="email",
        recipient=Identity(kind="email", value="ada@example.org"), queue="billing", tier="premium",
        urgency="high", priority=7, status="open", opened_at=NOW, updated_at=NOW,
        subject="Refund for order 1234", customer_name="Ada", in_reply_to="m1@example.org",
        references=("m0@example.org", "m1@example.org"))


def tool(port: int) -> MailboxTool:
    settings = EmailSettings(smtp=smtp_settings(port), token_key=KEY)
    return MailboxTool(settings, {"billing-mailbox": "billing@support.example.com"})


def handoff(conversation_id: str, thread: str = "", text: str | None = None) -> Handoff:
    return Handoff(delivery_id=f"dlv_{uuid.uuid4().hex}", destination="billing-mailbox",
                   event="conversation.event" if text else "conversation.routed",
                   card=card(conversation_id), thread=thread, text=text or "Refund please")


def agent_answer(forwarded: EmailMessage, text: str) -> bytes:
    """What a mail client sends when a team member presses Reply and writes above the quote."""
    answer = EmailMessage()
    answer["From"] = "Ana Agent <ana@support.example.com>"
    answer["To"] = forwarded["Reply-To"]
    answer["Subject"] = "Re: " + str(forwarded["Subject"])
    answer["Message-ID"] = f"<{uuid.uuid4().hex}@support.example.com>"
    answer["In-Reply-To"] = forwarded["Message-ID"]
    answer["Date"] = "Mon, 23 Nov 2026 10:05:00 +0000"
    quoted = "\n".join("> " + line for line in str(forwarded.get_content()).splitlines())
    answer.set_content(f"{text}\n\nOn Mon, Switchboard wrote:\n{quoted}\n")
    return answer.as_bytes()


async def test_forward_then_agent_answer_becomes_the_customer_reply(
        redis: Redis, smtp_servers: Callable[..., Awaitable[SmtpServer]]) -> None:
    recorder = Recorder()
    server = await smtp_servers(recorder)
    mailbox = tool(server.port)
    await mailbox.start()
    conversation = f"con_{uuid.uuid4().hex[:20]}"
    first = await mailbox.deliver(handoff(conversation))
    again = await mailbox.deliver(handoff(conversation, thread=first, text="Customer wrote again"))
    assert again == first  # the thread's first mail stays the reference
    assert [rcpt for _, rcpt, _ in recorder.envelopes] == [["billing@support.example.com"]] * 2
    mails = [email.message_from_bytes(raw, policy=email.policy.default) for _, _, raw in recorder.envelopes]
    assert mails[0]["Message-ID"] == f"<{first}>"
    assert mails[1]["In-Reply-To"] == f"<{first}>"
    assert "[billing] Refund for order 1234 - Ada [ref:" in str(mails[0]["Subject"])
    assert "Refund please" in str(mails[0].get_content())

    ns = f"t{uuid.uuid4().hex}"
    cards = CardStore(ns, 600)
    pipe = redis.pipeline(transaction=False)
    cards.queue_write(pipe, {conversation: card_fields(card(conversation))})
    await pipe.execute()
    history = HistoryStore(ns, cap=10)
    intake = Intake(redis, ClaimStore(namespace=ns, ttl_seconds=600), IdentityStore(ns, history),
                    KEY.encode(), ("support.example.com",), cards=cards, clock=lambda: NOW)
    answer = parse_email(agent_answer(mails[0], "We have refunded you today."),
                         account="support@example.com")
    outputs = await intake.process([Record("sb.inbound.v1", 0, 1, encode(answer))])
    assert [o.topic for o in outputs] == [OUTBOUND]
    reply = decode(outputs[0].value, OutboundMessage)
    assert reply.kind == "agent_reply" and reply.conversation_id == conversation
    assert reply.recipient == Identity(kind="email", value="ada@example.org")
    assert reply.in_reply_to == "m1@example.org" and reply.author == "ana@support.example.com"
    assert reply.created_at == NOW
    assert reply.text.startswith("We have refunded you today.")
    assert "Switchboard wrote" not in reply.text  # the quoted forward stays behind

    # read again after a restart: the same reply id, so the send stage sends it once
    replayed = await intake.process([Record("sb.inbound.v1", 0, 2, encode(answer))])
    assert replayed == []


async def test_a_customer_token_or_an_outsider_is_not_an_agent(
        redis: Redis, smtp_servers: Callable[..., Awaitable[SmtpServer]]) -> None:
    recorder = Recorder()
    server = await smtp_servers(recorder)
    mailbox = tool(server.port)
    conversation = f"con_{uuid.uuid4().hex[:20]}"
    await mailbox.deliver(handoff(conversation))
    forwarded = email.message_from_bytes(recorder.envelopes[0][2], policy=email.policy.default)
    ns = f"t{uuid.uuid4().hex}"
    cards = CardStore(ns, 600)
    intake = Intake(redis, ClaimStore(namespace=ns, ttl_seconds=600),
                    IdentityStore(ns, HistoryStore(ns, cap=10)), KEY.encode(), ("support.example.com",),
                    cards=cards, clock=lambda: NOW)
    raw = agent_answer(forwarded, "I am not an agent")
    outsider = parse_email(raw.replace(b"ana@support.example.com", b"mallory@evil.example"),
                           account="support@example.com")
    unknown = parse_email(agent_answer(forwarded, "Conversation gone"),
                          account="support@example.com")
    outputs = await intake.process([Record("sb.inbound.v1", 0, 1, encode(outsider)),
                                    Record("sb.inbound.v1", 0, 2, encode(unknown))])
    # the outsider is just a customer writing in; the card-less answer is set aside with its reason
    assert [o.topic for o in outputs] == [IDENTIFIED, DEADLETTER]
    assert "unknown conversation" in decode(outputs[1].value, DeadLetter).reason


async def test_smtp_answers_map_to_retry_or_give_up(
        smtp_servers: Callable[..., Awaitable[SmtpServer]]) -> None:
    recorder = Recorder(rcpt_replies=["451 try later", "550 no such mailbox"])
    server = await smtp_servers(recorder)
    mailbox = tool(server.port)
    conversation = f"con_{uuid.uuid4().hex[:20]}"
    with pytest.raises(TransientError):
        await mailbox.deliver(handoff(conversation))
    with pytest.raises(PermanentError, match="550"):
        await mailbox.deliver(handoff(conversation))
    with pytest.raises(PermanentError, match="no mailbox address"):
        await mailbox.deliver(Handoff(delivery_id="d", destination="nowhere", event="conversation.event",
                                      card=card(conversation), text="x"))
