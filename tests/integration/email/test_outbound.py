"""EmailOutbound against an in-process aiosmtpd, and its Sent copy in the real Dovecot."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from pydantic import SecretStr

from connectors.email.outbound import EmailOutbound
from connectors.email.settings import EmailSettings, ImapAccount, SmtpSettings
from schemas.errors import AuthError
from schemas.identity import Identity
from schemas.outbound import OutboundKind, OutboundMessage
from schemas.tokens import make_token, verify_token
from tests.integration.email.conftest import (
    TOKEN_KEY,
    Certificate,
    Mailbox,
    Recorder,
    SmtpServer,
    smtp_settings,
)

pytestmark = pytest.mark.integration

StartServer = Callable[..., Awaitable[SmtpServer]]
CONVERSATION = "con_0123456789abcdef0123"


def reply(kind: OutboundKind = "agent_reply", **overrides: Any) -> OutboundMessage:
    values: dict[str, Any] = {
        "reply_id": f"rep_{uuid.uuid4().hex}", "conversation_id": CONVERSATION, "channel": "email",
        "recipient": Identity(kind="email", value="ada@example.org"), "kind": kind,
        "text": "Your parcel left the warehouse.\nIt arrives on Tuesday.",
        "created_at": datetime(2026, 11, 23, 9, 30, tzinfo=UTC), "subject": "RE: Re: Order 42",
        "in_reply_to": "<parent@example.org>", "references": ("root@example.org", "<mid@example.org>"),
    }
    values.update(overrides)
    return OutboundMessage(**values)


@pytest.fixture
async def outbounds() -> AsyncIterator[Callable[..., Awaitable[EmailOutbound]]]:
    """Start EmailOutbound senders that are all stopped at the end of the test."""
    made: list[EmailOutbound] = []

    async def start(smtp: SmtpSettings, *accounts: ImapAccount) -> EmailOutbound:
        sender = EmailOutbound(EmailSettings(accounts=accounts, smtp=smtp,
                                             token_key=SecretStr(TOKEN_KEY)))
        await sender.start()
        made.append(sender)
        return sender

    yield start
    for sender in made:
        await sender.stop()


def parsed(raw: bytes) -> EmailMessage:
    # as a mail client reads it: lines end in \n once off the wire
    message = message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


async def test_agent_reply_is_threaded_and_carries_the_token(
        smtp_servers: StartServer, outbounds: Callable[..., Awaitable[EmailOutbound]]) -> None:
    handler = Recorder()
    server = await smtp_servers(handler)
    sender = await outbounds(smtp_settings(server.port))
    message = reply()
    receipt = await sender.send(message)

    assert receipt.status == "sent" and receipt.reason is None
    assert (receipt.reply_id, receipt.conversation_id, receipt.channel) == (
        message.reply_id, CONVERSATION, "email")
    [(mail_from, rcpt_tos, raw)] = handler.envelopes
    assert (mail_from, rcpt_tos) == ("support@example.com", ["ada@example.org"])
    sent = parsed(raw)
    token = make_token(CONVERSATION, TOKEN_KEY.encode())
    assert sent["From"] == "Example Support <support@example.com>"
    assert sent["To"] == "ada@example.org"
    assert sent["Subject"] == "Re: Order 42"
    assert sent["In-Reply-To"] == "<parent@example.org>"
    assert sent["References"].split() == [
        "<root@example.org>", "<mid@example.org>", "<parent@example.org>"]
    assert sent["Message-ID"] == f"<{receipt.provider_id}>"
    found = re.fullmatch(r"<sb\.(con_[0-9a-f]{20}\.[0-9a-f]{10})\.([\w-]+)@mail\.example\.com>",
                         sent["Message-ID"])
    assert found and found.group(2) == receipt.reply_id  # a bounce can name the reply
    assert found and verify_token(found.group(1), TOKEN_KEY.encode()) == CONVERSATION
    assert sent["Reply-To"] == f"Example Support <support+{token}@example.com>"
    assert sent["Auto-Submitted"] is None and sent["X-Auto-Response-Suppress"] is None
    assert sent["Date"] is not None
    assert sent.get_content_type() == "multipart/alternative"
    text = sent.get_body(("plain",))
    html = sent.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content().startswith("Your parcel left the warehouse.\nIt arrives on Tuesday.")
    assert f"[ref:{token}]" in text.get_content()
    assert "Your parcel left the warehouse.<br>" in html.get_content()
    assert f"[ref:{token}]" in html.get_content()


@pytest.mark.parametrize("kind", ["acknowledgement", "status_update", "follow_up"])
async def test_automatic_replies_say_so(
        kind: OutboundKind, smtp_servers: StartServer,
        outbounds: Callable[..., Awaitable[EmailOutbound]]) -> None:
    handler = Recorder()
    server = await smtp_servers(handler)
    sender = await outbounds(smtp_settings(server.port))
    assert (await sender.send(reply(kind))).status == "sent"
    sent = parsed(handler.envelopes[0][2])
    assert sent["Auto-Submitted"] == "auto-replied"
    assert sent["X-Auto-Response-Suppress"] == "All"


async def test_a_resend_keeps_the_message_id_and_the_connection(
        smtp_servers: StartServer, outbounds: Callable[..., Awaitable[EmailOutbound]]) -> None:
    handler = Recorder()
    server = await smtp_servers(handler)
    sender = await outbounds(smtp_settings(server.port))
    message = reply()
    first, again = await sender.send(message), await sender.send(message)
    other = await sender.send(reply())
    assert first.provider_id == again.provider_id != other.provider_id
    assert len(handler.envelopes) == 3
    assert handler.ehlos == 1  # one connection carried all three


async def test_a_dropped_connection_is_renewed_without_losing_an_attempt(
        smtp_servers: StartServer, outbounds: Callable[..., Awaitable[EmailOutbound]]) -> None:
    handler = Recorder()
    server = await smtp_servers(handler)
    sender = await outbounds(smtp_settings(server.port, max_attempts=1))
    assert (await sender.send(reply())).status == "sent"
    await server.stop()  # closes our idle connection, as servers do after a while
    await server.start()
    receipt = await sender.send(reply())
    assert receipt.status == "sent", receipt.reason
    assert len(handler.envelopes) == 2 and handler.ehlos == 2


async def test_4xx_is_retried_until_accepted(
        smtp_servers: StartServer, outbounds: Callable[..., Awaitable[EmailOutbound]]) -> None:
    handler = Recorder(rcpt_replies=["451 4.7.1 try later"] * 2, data_replies=["452 4.3.1 full"])
    server = await smtp_servers(handler)
    sender = await outbounds(smtp_settings(server.port, max_attempts=5))
    receipt = await sender.send(reply())
    assert receipt.status == "sent", receipt.reason
    assert handler.rcpt_calls == 4 and handler.data_calls == 2
    assert len(handler.envelopes) == 1


async def test_4xx_until_the_last_attempt_fails_with_the_reason(
        smtp_servers: StartServer, outbounds: Callable[..., Awaitable[EmailOutbound]]) -> None:
    handler = Recorder(rcpt_replies=["451 4.7.1 try later"] * 10)
    server = await smtp_servers(handler)
    sender = await outbounds(smtp_settings(server.port, max_attempts=3))
    receipt = await sender.send(reply())
    assert receipt.status == "failed" and receipt.provider_id is None
    assert receipt.reason is not None
    assert "3 attempts" in receipt.reason and "451" in receipt.reason and "try later" in receipt.reason
    assert handler.rcpt_calls == 3 and handler.envelopes == []


async def test_5xx_fails_at_once_with_the_servers_words(
        smtp_servers: StartServer, outbounds: Callable[..., Awaitable[EmailOutbound]]) -> None:
    handler = Recorder(rcpt_replies=["550 5.1.1 no such user"])
    server = await smtp_servers(handler)
    sender = await outbounds(smtp_settings(server.port, max_attempts=5))
    receipt = await sender.send(reply())
    assert receipt.status == "failed"
    assert receipt.reason is not None and "550" in receipt.reason and "no such user" in receipt.reason
    assert handler.rcpt_calls == 1
    # the connection is still good for the next reply
    assert (await sender.send(reply())).status == "sent"
    assert handler.ehlos == 1


async def test_a_recipient_that_is_no_email_address_fails_without_sending(
        smtp_servers: StartServer, outbounds: Callable[..., Awaitable[EmailOutbound]]) -> None:
    handler = Recorder()
    server = await smtp_servers(handler)
    sender = await outbounds(smtp_settings(server.port))
    receipt = await sender.send(reply(recipient=Identity(kind="phone", value="+14155550100")))
    assert receipt.status == "failed" and "not an email address" in (receipt.reason or "")
    assert handler.rcpt_calls == 0


async def test_refused_login_is_an_auth_error(smtp_servers: StartServer) -> None:
    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult

        return AuthResult(success=False, handled=False)

    server = await smtp_servers(Recorder(), authenticator=authenticator, auth_require_tls=False)
    smtp = smtp_settings(server.port, username="bot", password=SecretStr("wrong-secret"))
    sender = EmailOutbound(EmailSettings(smtp=smtp, token_key=SecretStr(TOKEN_KEY)))
    with pytest.raises(AuthError) as refused:
        await sender.start()
    assert "bot" in str(refused.value) and "wrong-secret" not in str(refused.value)
    await sender.stop()


async def test_sent_replies_are_filed_in_a_sent_folder_created_on_demand(
        smtp_servers: StartServer, outbounds: Callable[..., Awaitable[EmailOutbound]],
        folder: Mailbox, account: Callable[..., ImapAccount]) -> None:
    sent_folder = f"{folder.name}-sent"
    assert not await folder.exists(sent_folder)
    handler = Recorder()
    server = await smtp_servers(handler)
    archive = account("INBOX")
    sender = await outbounds(
        smtp_settings(server.port, append_sent=True, sent_folder=sent_folder), archive)
    try:
        first, second = await sender.send(reply()), await sender.send(reply())
        assert first.status == second.status == "sent"
        filed = await folder.messages(sent_folder)
        assert [parsed(m)["Message-ID"] for m in filed] == [
            f"<{first.provider_id}>", f"<{second.provider_id}>"]
        assert filed[0].replace(b"\r\n", b"\n") == handler.envelopes[0][2].replace(b"\r\n", b"\n")
        assert all("\\Seen" in f for f in (await folder.flags(sent_folder)).values())
    finally:
        await folder.delete(sent_folder)


async def test_a_failing_sent_copy_does_not_fail_the_send(
        smtp_servers: StartServer, outbounds: Callable[..., Awaitable[EmailOutbound]],
        account: Callable[..., ImapAccount], caplog: pytest.LogCaptureFixture) -> None:
    handler = Recorder()
    server = await smtp_servers(handler)
    refused = account("INBOX", password=SecretStr("not-the-password"))
    sender = await outbounds(smtp_settings(server.port, append_sent=True), refused)
    with caplog.at_level(logging.ERROR, logger="connectors.email.outbound"):
        receipt = await sender.send(reply())
    assert receipt.status == "sent" and len(handler.envelopes) == 1
    assert any("ALERT" in r.getMessage() and "Sent" in r.getMessage() for r in caplog.records)
    # a refused login is not tried again on every reply
    caplog.clear()
    assert (await sender.send(reply())).status == "sent"
    assert not caplog.records


async def test_starttls_and_login_with_a_private_ca(
        smtp_servers: StartServer, outbounds: Callable[..., Awaitable[EmailOutbound]],
        certificate: Certificate) -> None:
    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult

        good = (data.login, data.password) == (b"bot", b"right-secret")
        return AuthResult(success=good)

    handler = Recorder()
    server = await smtp_servers(handler, tls_context=certificate.server_context(),
                                require_starttls=True, authenticator=authenticator)
    sender = await outbounds(smtp_settings(
        server.port, tls="starttls", tls_ca_file=certificate.cert, username="bot",
        password=SecretStr("right-secret")))
    assert (await sender.send(reply())).status == "sent"
    assert len(handler.envelopes) == 1


async def test_implicit_tls(
        smtp_servers: StartServer, outbounds: Callable[..., Awaitable[EmailOutbound]],
        certificate: Certificate) -> None:
    handler = Recorder()
    server = await smtp_servers(handler, ssl_context=certificate.server_context())
    sender = await outbounds(smtp_settings(server.port, tls="implicit", tls_ca_file=certificate.cert))
    assert (await sender.send(reply())).status == "sent"
    assert len(handler.envelopes) == 1


@dataclass
class Gate(Recorder):
    """A Recorder that holds every DATA until `together` transactions are in DATA at once."""

    together: int = 1
    inflight: int = 0
    peak: int = 0
    _open: asyncio.Event | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self._open = self._open or asyncio.Event()  # made in the server's own loop
        self.inflight += 1
        self.peak = max(self.peak, self.inflight)
        if self.inflight >= self.together:
            self._open.set()
        try:
            await asyncio.wait_for(self._open.wait(), 20)
        except TimeoutError:
            return "451 4.3.0 the others never came"
        finally:
            self.inflight -= 1
        return await super().handle_DATA(server, session, envelope)


async def test_replies_travel_together_on_at_most_the_pools_connections(
        smtp_servers: StartServer, outbounds: Callable[..., Awaitable[EmailOutbound]]) -> None:
    # a serial sender would hold the first DATA alone until the gate gives up
    handler = Gate(together=3)
    server = await smtp_servers(handler)
    sender = await outbounds(smtp_settings(server.port, connections=3, max_attempts=1))
    replies = [reply() for _ in range(7)]
    receipts = await asyncio.gather(*(sender.send(r) for r in replies))
    assert [r.status for r in receipts] == ["sent"] * 7, [r.reason for r in receipts]
    assert handler.peak == 3  # three at once, never a fourth
    assert len(handler.envelopes) == 7  # each once
    assert handler.ehlos == 3  # the connections are kept and reused


async def test_a_lone_reply_after_a_burst_reuses_a_warm_connection(
        smtp_servers: StartServer, outbounds: Callable[..., Awaitable[EmailOutbound]]) -> None:
    handler = Recorder()
    server = await smtp_servers(handler)
    sender = await outbounds(smtp_settings(server.port, connections=4))
    for _ in range(3):
        assert (await sender.send(reply())).status == "sent"
    assert handler.ehlos == 1  # one at a time needs one connection, not four
    await sender.stop()
    await sender.stop()  # safe twice, and nothing is left open
    assert (await sender.send(reply())).status == "sent"  # a stopped sender reconnects when used
