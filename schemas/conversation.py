"""A conversation's life after routing (`sb.conversation.v1`) and its card for agents' tools."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from schemas.identity import Identity
from schemas.routed import CallbackTask

__all__ = ["ConversationCard", "ConversationEvent", "LifecycleKind", "Status"]

Status = Literal["open", "waiting_on_customer", "resolved", "closed"]
LifecycleKind = Literal[
    "agent_reply",          # a public reply reached the customer (sent by the send stage)
    "note",                 # an internal note: history only, never to the customer
    "waiting_on_customer",  # the team needs the customer: the SLA clock pauses
    "resolved",             # the team considers it solved: the clock stops, a follow-up is planned
    "reopened",             # the customer wrote again after resolve
    "closed",               # confirmed by the customer, or quiet for the configured period
    "follow_up_sent",       # the "is it really solved?" message went out
    "outcome",              # the customer's answer to the follow-up (`text` holds it)
    "transferred",          # moved to another queue (`queue` is the new one)
    "called_back",          # an agent called the customer back and reached them: the answer is given
]


class ConversationEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Something that happened to a conversation outside the customer's own messages.

    Topic `sb.conversation.v1`, keyed by `customer_id` (the brain's key): one customer's
    messages and their conversations' events keep one order. `event_id` is deterministic
    from its cause (a reply id, a resolve request id) so a replay is recognised.
    """

    event_id: str
    conversation_id: str
    customer_id: str
    kind: LifecycleKind
    at: datetime
    author: str | None = None
    text: str | None = None
    queue: str | None = None
    # where it came from: "api", "slack", "mailbox", "send", "lifecycle"
    source: str = "api"
    reply_id: str | None = None


class ConversationCard(msgspec.Struct, frozen=True, kw_only=True):
    """What agents' tools and the replies API need to answer a conversation, kept in Redis.

    Written by the dispatch stage from each routed message; read to build replies
    (channel, recipient, the thread to answer in) and to deliver follow-ups to the same
    destination (and Slack thread) as the first message.
    """

    conversation_id: str
    customer_id: str
    channel: str
    recipient: Identity
    queue: str
    tier: str
    urgency: str
    priority: int
    status: Status
    opened_at: datetime
    updated_at: datetime
    subject: str | None = None
    agent: str | None = None
    customer_name: str | None = None
    # the customer's latest message on the channel (e.g. its Message-ID), to answer in-thread
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    first_response_due: datetime | None = None
    # destination name → that tool's thread reference (e.g. a Slack thread ts, "" if none)
    destinations: dict[str, str] = {}
    transfers: int = 0
    messages: int = 0
    # the call the team owes the customer, when the policy answers this one by calling back
    callback: CallbackTask | None = None
