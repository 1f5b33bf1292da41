"""What goes back to customers (`sb.outbound.v1`) and what became of it (`sb.delivery.v1`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from schemas.identity import Identity

__all__ = ["DeliveryReceipt", "DeliveryStatus", "OutboundKind", "OutboundMessage"]

OutboundKind = Literal["agent_reply", "acknowledgement", "status_update", "follow_up"]
DeliveryStatus = Literal["sent", "failed", "uncertain", "held"]


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


class DeliveryReceipt(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of one send. Topic `sb.delivery.v1`, keyed by `conversation_id`."""

    reply_id: str
    conversation_id: str
    channel: str
    status: DeliveryStatus
    at: datetime
    reason: str | None = None
    provider_id: str | None = None
