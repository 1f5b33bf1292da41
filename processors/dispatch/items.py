"""What dispatch hands over: routed messages and transfers, reply receipts and SLA notices as one item type.

Each item has a `source`, unique across the three topics, from which its claims and its
delivery ids derive, and the words an agent reads about it.
"""

from __future__ import annotations

from dataclasses import dataclass

from processors.stage import Record
from schemas.outbound import DeliveryReceipt
from schemas.routed import RoutedConversation
from schemas.sla import SlaEvent

__all__ = [
    "NOTICE",
    "RECEIPT",
    "ROUTED",
    "TRANSFERRED",
    "Item",
    "receipt_item",
    "receipt_notice",
    "receipt_text",
    "routed_item",
    "sla_item",
    "sla_text",
]

ROUTED = "conversation.routed"
# a transfer's handoff: `routed` carries no message, its `transfer` says from where and why
TRANSFERRED = "conversation.transferred"
RECEIPT = "reply.receipt"
NOTICE = "conversation.event"


@dataclass(frozen=True, slots=True)
class Item:
    """One thing to tell a conversation's agents' tools, and the record it came in."""

    record: Record
    # what the item is, unique across topics: its claims and delivery ids derive from it
    source: str
    event_id: str
    conversation_id: str
    event: str
    routed: RoutedConversation | None = None
    receipt: DeliveryReceipt | None = None
    text: str | None = None
    # an escalation step's action and target ("page", "support-on-call"): who else hears it
    action: str | None = None
    action_target: str | None = None


def routed_item(record: Record, routed: RoutedConversation) -> Item:
    """A routed message, or a transfer's handoff, for the queue's destinations."""
    return Item(record, f"routed:{routed.event_id}", routed.event_id, routed.conversation_id,
                ROUTED if routed.transfer is None else TRANSFERRED, routed=routed)


def receipt_item(record: Record, receipt: DeliveryReceipt) -> Item:
    """A send outcome; a bounce after "sent" is a second receipt, so the status is in the source."""
    return Item(record, f"receipt:{receipt.reply_id}:{receipt.status}", receipt.reply_id,
                receipt.conversation_id, RECEIPT, receipt=receipt, text=receipt_text(receipt))


def sla_item(record: Record, event: SlaEvent) -> Item:
    """An SLA event, as a one-line notice."""
    return Item(record, f"sla:{event.event_id}", event.event_id, event.conversation_id, NOTICE,
                text=sla_text(event), action=event.action, action_target=event.action_target)


def receipt_notice(receipt: DeliveryReceipt) -> tuple[bool, str]:
    """Whether agents hear of a send outcome: their own replies always, machines' only when amiss."""
    if receipt.kind in (None, "agent_reply"):
        return True, "an agent's reply"
    if receipt.notice:
        return True, f"{receipt.kind} carries a notice for agents"
    if receipt.status != "sent" or receipt.flags:
        return True, f"{receipt.kind} was {receipt.status}"
    return False, f"{receipt.kind} sent as expected: nothing for agents to do"


def receipt_text(receipt: DeliveryReceipt) -> str:
    """One line saying what became of a reply."""
    what = "Reply" if receipt.kind in (None, "agent_reply") else receipt.kind.replace("_", " ").capitalize()
    line = f"{what} {receipt.reply_id} was {receipt.status}"
    if receipt.reason:
        line += f": {receipt.reason}"
    if receipt.retry_at is not None:
        line += f"; it goes out at {receipt.retry_at:%Y-%m-%d %H:%M} UTC"
    if receipt.flags:
        line += " [" + "; ".join(f"{f.action}: {f.rule}" for f in receipt.flags) + "]"
    if receipt.notice:
        line += f". Notice: {receipt.notice}"
    return " ".join(line.split())


_SLA_PHRASES = {
    "warn": "SLA warning: {target} due {due}",
    "breach": "SLA breached: {target} was due {due}",
    "status_update": "Customer kept waiting, a status update goes out: {target} due {due}",
    "escalate": "Escalation{step}: {action}{action_target} ({target} due {due})",
    "cleared": "SLA cleared: {target} given (was due {due})",
}


def sla_text(event: SlaEvent) -> str:
    """One line an agent reads at a glance."""
    line = _SLA_PHRASES[event.kind].format(
        target=event.target.replace("_", " "), due=f"{event.due_at:%Y-%m-%d %H:%M %Z}".strip(),
        step=f" step {event.step}" if event.step is not None else "", action=event.action or "escalate",
        action_target=f" {event.action_target}" if event.action_target else "")
    if event.reasons:
        line += " - " + "; ".join(event.reasons)
    return " ".join(line.split())


