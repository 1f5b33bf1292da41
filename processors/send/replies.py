"""Replies to a customer: the reference that keeps one in their thread, and an agent's answer."""

from __future__ import annotations

from datetime import datetime

from schemas.conversation import ConversationCard
from schemas.inbound import InboundMessage, ReplyRef
from schemas.outbound import OutboundMessage

__all__ = ["MAX_REFERENCES", "reply_reference", "reply_to"]

# a reply carries the thread's newest references; mail clients cut long chains too
MAX_REFERENCES = 20


def reply_reference(message: InboundMessage) -> ReplyRef:
    """What a reply to `message` cites: its channel's reference, else its native id."""
    ref = message.reply_ref
    if ref is None:
        return ReplyRef(in_reply_to=message.native_id)
    return ReplyRef(in_reply_to=ref.in_reply_to,
                    references=tuple(dict.fromkeys(ref.references))[-MAX_REFERENCES:])


def reply_to(card: ConversationCard, *, text: str, author: str | None, reply_id: str,
             now: datetime) -> OutboundMessage:
    """The reply on the customer's own channel, in their thread, to the latest message."""
    subject = card.subject
    if subject and not subject.lower().startswith("re:"):
        subject = f"Re: {subject}"
    return OutboundMessage(
        reply_id=reply_id, conversation_id=card.conversation_id, channel=card.channel,
        recipient=card.recipient, kind="agent_reply", text=text, created_at=now, subject=subject,
        author=author, in_reply_to=card.in_reply_to, references=card.references,
        customer_id=card.customer_id, queue=card.queue)
