"""Decision records and the routed conversation (topic `sb.routed.v1`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from schemas.identity import Identity
from schemas.inbound import InboundMessage

__all__ = ["REPLY_MODES", "CallbackTask", "Decision", "HistoryEntry", "ReplyMode", "RoutedConversation",
           "TransferNote"]

# how a team answers a customer: "text" writes on their channel (a mail, a DM, an SMS);
# "callback" is a person calling them back — a task for the team, done when an agent marks it
ReplyMode = Literal["text", "callback"]
REPLY_MODES: tuple[ReplyMode, ...] = ("text", "callback")


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


class CallbackTask(msgspec.Struct, frozen=True, kw_only=True):
    """A call the team owes the customer: the number to call and when, by the tier's SLA."""

    # E.164; None when the caller withheld it and the customer has no number on file
    number: str | None
    due: datetime | None


class TransferNote(msgspec.Struct, frozen=True, kw_only=True):
    """Why a conversation came to its new queue without a new message: who moved it, and their note."""

    from_queue: str
    at: datetime
    # the agent who moved it (None when the SLA chain reassigned it) and what they told the new team
    by: str | None = None
    note: str | None = None
    # what moved it: "api", "slack", "sla", ...
    source: str = "api"

    def words(self) -> str:
        """One line the new team reads first: from where, by whom, and the note."""
        by = f" by {self.by}" if self.by else (" by the SLA escalation" if self.source == "sla" else "")
        return f"Transferred from {self.from_queue}{by}" + (f": {self.note}" if self.note else "")


class RoutedConversation(msgspec.Struct, frozen=True, kw_only=True):
    """A message placed in a queue with its priority, due time and the reasons.

    Topic `sb.routed.v1`, keyed by `customer_id` so one customer's events stay in order.
    A transfer (an agent's, or the SLA chain's reassignment) is routed too, so the new
    team is handed the conversation: then `message` is None and `transfer` says why.
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
    message: InboundMessage | None
    decisions: tuple[Decision, ...]
    # what the agent needs so the customer never repeats themself
    sentiment: float | None = None
    agent: str | None = None
    next_response_due: datetime | None = None
    customer_name: str | None = None
    identities: tuple[Identity, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    transfers: int = 0
    # how the team answers, by the policy's tier (tiers.<tier>.reply_mode); a callback's task
    reply_mode: ReplyMode = "text"
    callback: CallbackTask | None = None
    transfer: TransferNote | None = None

    @property
    def said(self) -> str:
        """The customer's words, or for a transfer's handoff the line the new team reads first."""
        if self.message is not None:
            return self.message.text
        return self.transfer.words() if self.transfer is not None else ""

    @property
    def reasons(self) -> tuple[str, ...]:
        """Every reason of every stage, in order."""
        return tuple(r for d in self.decisions for r in d.reasons)
