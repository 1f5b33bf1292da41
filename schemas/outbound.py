"""What goes back to customers (`sb.outbound.v1`) and what became of it (`sb.delivery.v1`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from schemas.identity import Identity

__all__ = ["DeliveryReceipt", "DeliveryStatus", "GuardFlag", "OutboundKind", "OutboundMessage"]

# "transcript": the customer's own words that joined the conversation from another channel,
# for the record of the conversation's channel (a chat log); only a sender that keeps one takes it
OutboundKind = Literal["agent_reply", "acknowledgement", "status_update", "follow_up", "transcript"]
# "deferred": not sent yet, on purpose; the send stage tries again at `retry_at`, once
DeliveryStatus = Literal["sent", "failed", "uncertain", "held", "deferred"]


class OutboundMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One message to a customer on the channel they used.

    Topic `sb.outbound.v1`, keyed by `conversation_id`. `reply_id` is the idempotency key:
    it is claimed before the send so no retry ever sends it twice.
    """

    reply_id: str
    conversation_id: str
    channel: str
    recipient: Identity
    kind: OutboundKind
    text: str
    created_at: datetime
    subject: str | None = None
    author: str | None = None
    # the channel's own reference to answer in-thread (e.g. a Message-ID, a tweet id)
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    html: str | None = None
    # who the conversation belongs to and where it is worked, so receipts and lifecycle
    # events find their way back (None for messages made before these existed)
    customer_id: str | None = None
    queue: str | None = None
    # the policy wants this answer out of public view (its rule and reason), or None; a
    # channel with public threads then answers privately, saying so in `public_note`
    privately: str | None = None
    public_note: str | None = None


class GuardFlag(msgspec.Struct, frozen=True, kw_only=True):
    """A reply-guard rule that matched an agent's reply: which rule, its action, the words."""

    rule: str
    action: Literal["warn", "hold"]
    matched: tuple[str, ...]
    reason: str


class DeliveryReceipt(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of one send. Topic `sb.delivery.v1`, keyed by `conversation_id`."""

    reply_id: str
    conversation_id: str
    channel: str
    status: DeliveryStatus
    at: datetime
    reason: str | None = None
    provider_id: str | None = None
    kind: OutboundKind | None = None
    customer_id: str | None = None
    # reply-guard flags: on "sent" they are warnings, on "held" the reasons it was not sent
    flags: tuple[GuardFlag, ...] = ()
    # "deferred": when the send stage tries again (the channel's limit resets then)
    retry_at: datetime | None = None
    # something the channel wants the agents to know beyond this reply (a spent budget)
    notice: str | None = None
