"""Sticky routing: a customer's follow-up returns to the team and agent who know the case.

The same complaint sent by email and then on X ten minutes later is one case: any
channel continues the customer's most recent open conversation within the policy's
window (a resolved one until it closes), and a reply in the conversation's own thread
continues it at any age. Only transfers between queues are counted; past a queue's
`max_transfers` the case is escalated instead of being passed on once more.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Literal, Protocol

import msgspec

from processors.policy.model import Policy, Queue, QueueChoice, format_duration

__all__ = ["Conversation", "Outcome", "StickyDecision", "decide"]

Outcome = Literal["new", "continue", "transfer", "escalate"]


class Conversation(Protocol):
    """What sticky routing reads of one of the customer's open or recent conversations."""

    # status: "closed" is never continued, "resolved" is reopened until the policy's
    # lifecycle closes it (`close_after`), any other ("open", "waiting_on_customer") is live.
    # The brain's summaries are read as they are: no copy per conversation per message

    @property
    def conversation_id(self) -> str:
        """The conversation's id."""

    @property
    def queue(self) -> str:
        """The queue it is in."""

    @property
    def agent(self) -> str | None:
        """The agent who has it, if any."""

    @property
    def status(self) -> str:
        """Where it stands."""

    @property
    def last_at(self) -> datetime:
        """When it last moved."""

    @property
    def transfers(self) -> int:
        """How often it moved between queues."""


class StickyDecision(msgspec.Struct, frozen=True):
    """New conversation, or which one it continues, in which queue, with which agent, and why."""

    outcome: Outcome
    conversation_id: str | None
    queue: str
    agent: str | None
    transfers: int
    escalation: str | None
    reasons: tuple[str, ...]


def _age(record: Conversation, at: datetime) -> str:
    seconds = max(0, int((at - record.last_at).total_seconds()))
    if seconds < 60:
        return "just now"
    return _minutes_ago(seconds // 60)


@lru_cache(maxsize=4096)
def _minutes_ago(minutes: int) -> str:
    return f"{format_duration(timedelta(minutes=minutes))} ago"


def _new(fresh: QueueChoice, why: str) -> StickyDecision:
    return StickyDecision("new", None, fresh.queue, None, 0, None, (why, *fresh.reasons))


def _candidate(
    conversations: Sequence[Conversation], thread: str | None, at: datetime, policy: Policy,
) -> tuple[Conversation | None, str]:
    """The conversation this message most likely continues, and why it was picked."""
    # one pass: a live conversation of the message's own thread wins; else the latest live
    # one within its window (the first of equals, as max() picks)
    record: Conversation | None = None
    for c in conversations:
        if c.status == "closed":
            continue
        if c.conversation_id == thread:
            return c, f"continues {c.conversation_id}: a reply in its own thread"
        if (record is None or c.last_at > record.last_at) and at - c.last_at <= _window(
                c, policy):
            record = c
    if record is None:
        return None, (f"new conversation: no open conversation of this customer within "
                      f"{format_duration(policy.sticky_window)}")
    return record, (f"continues {record.conversation_id}: same customer "
                    f"{_age(record, at)}, within {format_duration(_window(record, policy))}")


def _window(record: Conversation, policy: Policy) -> timedelta:
    # a resolved conversation is not over until it closes: the customer's next message reopens it
    if record.status == "resolved":
        return max(policy.sticky_window, policy.lifecycle.close_after)
    return policy.sticky_window


def _escalate(record: Conversation, queue: Queue, transfers: int, policy: Policy) -> StickyDecision:
    chain = queue.escalation
    steps = policy.escalations.get(chain, ()) if chain else ()
    reassign = next((s.target for s in steps if s.action == "reassign" and s.target), None)
    target = reassign or queue.name
    how = f"escalation chain {chain}" if chain else "no escalation chain"
    return StickyDecision("escalate", record.conversation_id, target, None, transfers, chain, (
        f"escalate {record.conversation_id}: {transfers} transfers, more than the "
        f"{queue.max_transfers} queue {queue.name} allows; {how}, to queue {target}",))


def decide(
    *, received_at: datetime, thread_conversation: str | None,
    conversations: Sequence[Conversation], fresh: QueueChoice, policy: Policy,
) -> StickyDecision:
    """Continue, transfer or escalate one of the customer's conversations, or start anew."""
    # fresh: where the message would go on its own (policy_model.choose_queue);
    # thread_conversation: the conversation of the message's own channel thread, if known
    record, why = _candidate(conversations, thread_conversation, received_at, policy)
    if record is None:
        return _new(fresh, why)
    by_thread = record.conversation_id == thread_conversation
    if fresh.keyword and fresh.queue != record.queue and not by_thread:
        return _new(fresh, f"new conversation: keyword {fresh.keyword!r} is for queue {fresh.queue}, "
                           f"not {record.queue} of {record.conversation_id}")
    queue = policy.queues.get(record.queue)
    if queue is None:
        return StickyDecision("transfer", record.conversation_id, fresh.queue, None,
                              record.transfers + 1, None,
                              (why, f"queue {record.queue} no longer exists", *fresh.reasons))
    reopened = " (reopened)" if record.status == "resolved" else ""
    if queue.sticky:
        outcome: Outcome = "continue"
        target, agent = queue.name, record.agent
        reasons = [why + reopened, f"queue={queue.name}: sticky, back to the team that knows the case"
                   + (f", agent {agent}" if agent else "")]
    else:
        target, agent = fresh.queue, None
        outcome = "continue" if target == queue.name else "transfer"
        reasons = [why + reopened, f"queue {queue.name} is not sticky: routed afresh", *fresh.reasons]
    transfers = record.transfers + (outcome == "transfer")
    if transfers > queue.max_transfers:
        return _escalate(record, queue, transfers, policy)
    return StickyDecision(outcome, record.conversation_id, target, agent, transfers,
                          None, tuple(reasons))
