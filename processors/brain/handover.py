"""The handoff of a transfer: the conversation, routed to its new queue without a new message.

An agent's transfer or the SLA chain's reassignment moves a conversation (`lifecycle`).
The new team must hear of it then, with everything the old one knew, not when the
customer next writes: so the brain routes the conversation again, as dispatch routes any
conversation that changed queues (to the new queue's tools, dropping the old team's
threads). Pure: the case file after the move in, a `RoutedConversation` out.
"""

from __future__ import annotations

from datetime import datetime

from processors.brain import sla
from processors.brain.casefile import CaseFile
from processors.brain.lifecycle import Change
from processors.brain.priority import priority
from processors.policy.model import Policy
from schemas.codec import isoformat
from schemas.conversation import ConversationEvent
from schemas.ids import handoff_event_id
from schemas.routed import Decision, RoutedConversation, TransferNote

__all__ = ["handover"]


def handover(event: ConversationEvent, change: Change, customer: CaseFile, *, from_queue: str,
             policy: Policy, now: datetime, history_limit: int) -> RoutedConversation:
    """The routed record that hands a transferred conversation to its new queue's team."""
    entry, summary = change.entry, change.summary
    clock = entry.clock
    rank = priority(clock.tier, clock.urgency, policy)
    due = sla.due_at(clock, policy)
    note = TransferNote(from_queue=from_queue, at=event.at, by=event.author, note=event.text,
                        source=event.source)
    owed = (f"{clock.target.replace('_', ' ')} due {isoformat(due)}" if clock.target and due
            else "no response owed now")
    reasons = (note.words(), change.reason, *rank.reasons, f"the clock moves along: {owed}")
    return RoutedConversation(
        # from the transfer's own id: a replayed batch hands over the same record, dispatch keeps one
        event_id=handoff_event_id(event.event_id), conversation_id=summary.conversation_id,
        customer_id=entry.customer_id, queue=summary.queue, priority=rank.number, tier=clock.tier,
        urgency=clock.urgency, first_response_due=due if clock.target == "first_response" else None,
        next_response_due=due if clock.target == "next_response" else None, routed_at=now,
        message=None, decisions=(Decision(stage="transfer", outcome=summary.queue, reasons=reasons),),
        customer_name=entry.name or customer.profile.name, identities=customer.profile.identities,
        history=tuple(customer.history[:history_limit]), transfers=summary.transfers,
        reply_mode=policy.reply_mode(entry.channel, clock.tier), transfer=note)
