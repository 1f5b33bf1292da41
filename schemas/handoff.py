"""What an agents' tool is handed (`Handoff`) and what became of it (`sb.handoff.v1`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import msgspec

from schemas.conversation import ConversationCard
from schemas.outbound import DeliveryReceipt
from schemas.routed import RoutedConversation

__all__ = ["Handoff", "HandoffReceipt", "HandoffStatus"]

HandoffStatus = Literal["delivered", "failed"]


class HandoffReceipt(msgspec.Struct, frozen=True, kw_only=True):
    """One delivery of a routed message (or a receipt/notice) to one destination.

    Topic `sb.handoff.v1`, keyed by `conversation_id`. `delivery_id` is what the
    receiver dedupes on; `intended` differs from `destination` when a fallback took over.
    """

    delivery_id: str
    conversation_id: str
    event_id: str
    destination: str
    intended: str
    status: HandoffStatus
    attempts: int
    at: datetime
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Handoff:
    """One item for an agents' tool: what happened, the conversation's card, the body.

    `event` is "conversation.routed" (a routed message: `routed` is set),
    "reply.receipt" (a send outcome: `receipt` is set) or "conversation.event" (a
    lifecycle or SLA notice: `text` says it). `delivery_id` is stable across retries and
    restarts, for the receiver's own dedup. `thread` is the reference `deliver` returned
    for this conversation before ("" the first time).
    """

    delivery_id: str
    destination: str
    event: str
    card: ConversationCard
    thread: str = ""
    routed: RoutedConversation | None = None
    receipt: DeliveryReceipt | None = None
    text: str | None = None
