"""An agent's answer to a conversation, made into the message its customer will receive."""

from __future__ import annotations

from datetime import datetime

from schemas.conversation import ConversationCard
from schemas.outbound import OutboundMessage

__all__ = ["reply_to"]


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
