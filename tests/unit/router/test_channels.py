"""A channel without a sender is answered through those its spec names, when they reach the customer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, get_args

import msgspec
import pytest

from connectors.base import Outbound
from router.channels import Channels
from router.vocabulary import reach
from schemas import DeliveryReceipt, Identity, OutboundMessage
from schemas.identity import IdentityKind

AT = datetime(2026, 12, 4, 6, 0, tzinfo=UTC)


class Recording(Outbound[None]):
    """A sender that keeps what it was given: the seam the send stage calls."""

    def __init__(self) -> None:
        super().__init__(None)
        self.sent: list[OutboundMessage] = []

    async def start(self) -> None:
        """Nothing to connect."""

    async def stop(self) -> None:
        """Nothing to close."""

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        self.sent.append(message)
        return DeliveryReceipt(reply_id=message.reply_id, conversation_id=message.conversation_id,
                               channel=message.channel, status="sent", at=AT)


def reply(recipient: Identity) -> OutboundMessage:
    return OutboundMessage(reply_id="rep_1", conversation_id="con_1", channel="api", recipient=recipient,
                           kind="agent_reply", text="It arrives tomorrow.", created_at=AT)


def channels(email: Recording) -> Channels:
    senders: dict[str, Outbound[Any]] = {"email": email}
    return Channels(sources={}, senders=senders, reply_via={"api": ("email",)})


async def test_an_api_customer_with_an_email_address_is_answered_by_email() -> None:
    email = Recording()
    send = channels(email).send_functions()["api"]
    receipt = await send(reply(Identity(kind="email", value="a@example.com")))
    assert [m.channel for m in email.sent] == ["email"]
    assert (receipt.status, receipt.channel) == ("sent", "email")


async def test_a_customer_no_channel_can_reach_gets_a_failed_receipt_with_the_reason() -> None:
    email = Recording()
    send = channels(email).send_functions()["api"]
    receipt = await send(reply(Identity(kind="phone", value="+14155550100")))
    assert email.sent == []
    assert (receipt.status, receipt.channel) == ("failed", "api")
    assert receipt.reason == "api replies go by email, which cannot reach a phone identity"


def test_a_channel_with_its_own_sender_keeps_it() -> None:
    email = Recording()
    found = Channels(sources={}, senders={"email": email}, reply_via={}).send_functions()
    assert set(found) == {"email"}


async def test_a_transcript_reaches_only_a_channel_that_keeps_one() -> None:
    email, chat = Recording(), Recording()
    senders: dict[str, Outbound[Any]] = {"email": email, "chat": chat}
    send = Channels(sources={}, senders=senders, reply_via={"api": ("email",)}).send_functions()
    copy = msgspec.structs.replace(reply(Identity(kind="email", value="a@example.com")), kind="transcript")
    for name in ("email", "api"):
        receipt = await send[name](msgspec.structs.replace(copy, channel=name))
        assert (receipt.status, receipt.kind) == ("sent", "transcript")
        assert receipt.reason == f"not recorded: {name} keeps no transcript"
    assert email.sent == []  # nobody is mailed their own words
    await send["chat"](msgspec.structs.replace(copy, channel="chat"))
    assert [m.kind for m in chat.sent] == ["transcript"]
    await send["email"](reply(Identity(kind="email", value="a@example.com")))
    assert [m.kind for m in email.sent] == ["agent_reply"]


@pytest.mark.parametrize("kind", get_args(IdentityKind))
async def test_the_acknowledgements_reach_is_exactly_what_the_senders_deliver(kind: IdentityKind) -> None:
    # an acknowledgement is planned for a customer exactly when a reply to them would go out
    email = Recording()
    send = channels(email).send_functions()["api"]
    receipt = await send(reply(Identity(kind=kind, value="x")))
    planned = reach({"api", "email"}).unreachable("api", kind) is None
    assert planned == (receipt.status == "sent"), (kind, receipt.reason)
