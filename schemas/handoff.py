"""What became of handing a conversation to an agents' tool (`sb.handoff.v1`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

__all__ = ["HandoffReceipt", "HandoffStatus"]

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
