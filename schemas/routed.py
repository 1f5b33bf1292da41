"""Decision records and the routed conversation (topic `sb.routed.v1`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from schemas.identity import Identity
from schemas.inbound import InboundMessage

__all__ = ["Decision", "HistoryEntry", "RoutedConversation"]


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a customer's history, across every channel."""

    at: datetime
    channel: str
    conversation_id: str
    direction: Literal["in", "out", "note", "event"]
    summary: str
    queue: str | None = None
    agent: str | None = None
    outcome: str | None = None


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """What a stage decided and every reason why, in words a person can read."""

    stage: str
    outcome: str
    reasons: tuple[str, ...]


class RoutedConversation(msgspec.Struct, frozen=True, kw_only=True):
    """A message placed in a queue with its priority, due time and the reasons.

    Topic `sb.routed.v1`, keyed by `customer_id` so one customer's events stay in order.
    """

    event_id: str
    conversation_id: str
    customer_id: str
    queue: str
    priority: int
    tier: str
    urgency: str
    first_response_due: datetime | None
    routed_at: datetime
    message: InboundMessage
    decisions: tuple[Decision, ...]
    # what the agent needs so the customer never repeats themself
    sentiment: float | None = None
    agent: str | None = None
    next_response_due: datetime | None = None
    customer_name: str | None = None
    identities: tuple[Identity, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    transfers: int = 0

    @property
    def reasons(self) -> tuple[str, ...]:
        """Every reason of every stage, in order."""
        return tuple(r for d in self.decisions for r in d.reasons)
