"""Time to first reply: business time from a conversation's opening to its first agent reply.

Observed by the send stage once a reply reaches the customer, in the queue's (or the
tier's) calendar, per channel, queue and agent: what a social team is measured on. A
reply is the first when the conversation had no agent yet (the card's `agent` is set by
the first sent reply).
"""

from __future__ import annotations

from prometheus_client import Histogram

from processors.policy.calendar import business_time_between
from processors.policy.model import Policy
from schemas.conversation import ConversationCard
from schemas.outbound import DeliveryReceipt

__all__ = ["FIRST_REPLY", "first_reply_seconds", "observe"]

FIRST_REPLY = Histogram(
    "sb_first_reply_business_seconds", "Business time from a conversation's opening to its first agent reply",
    ["channel", "queue", "agent"], buckets=(60, 300, 900, 1800, 3600, 7200, 14_400, 28_800, 86_400))


def first_reply_seconds(card: ConversationCard | None, receipt: DeliveryReceipt,
                        policy: Policy) -> float | None:
    """Business seconds to this reply when it is a conversation's first sent agent reply; else None."""
    if card is None or card.agent is not None or receipt.status != "sent" or receipt.kind != "agent_reply":
        return None
    if card.queue not in policy.queues:
        return None  # the queue left the policy since: no calendar to measure in
    calendar = policy.calendar_for(card.queue, card.tier)
    return business_time_between(card.opened_at, receipt.at, calendar).total_seconds()


def observe(card: ConversationCard | None, receipt: DeliveryReceipt, policy: Policy,
            agent: str | None) -> None:
    """Record the time to first reply, when this receipt is one."""
    seconds = first_reply_seconds(card, receipt, policy)
    if seconds is not None and card is not None:
        FIRST_REPLY.labels(receipt.channel, card.queue, agent or "unknown").observe(seconds)
