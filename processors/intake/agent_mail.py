"""An agent's answer from a team mailbox: recognised by its agent token, made a reply.

The mail reaches our support mailbox like any customer's, so intake asks first whether
it carries a valid agent token (schemas.tokens.agent_key). If it does, it is not a
customer message: it becomes the agent's reply to the customer, on the customer's
channel, with a reply id fixed by the mail's own event id (a re-read never sends twice).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from processors.send.replies import reply_to
from schemas.conversation import ConversationCard
from schemas.ids import agent_reply_id
from schemas.inbound import InboundMessage
from schemas.outbound import OutboundMessage
from schemas.tokens import agent_key, verify_token

__all__ = ["answered_conversation", "reply_from_mail"]


def answered_conversation(message: InboundMessage, token_key: bytes,
                          our_domains: Sequence[str] = ()) -> str | None:
    """The conversation an agent's mail answers, or None when it is not an agent's answer.

    With `our_domains` set, the sender must also be at one of them: a token forwarded
    outside the company does not make its holder an agent.
    """
    if not message.reply_token:
        return None
    conversation = verify_token(message.reply_token, agent_key(token_key))
    if conversation is None:
        return None
    domain = message.sender.value.rpartition("@")[2].lower()
    if our_domains and domain not in {d.lower() for d in our_domains}:
        return None
    return conversation


def reply_from_mail(message: InboundMessage, card: ConversationCard, now: datetime) -> OutboundMessage:
    """The customer-bound reply an agent wrote in their mail client, taken up `now`."""
    return reply_to(card, text=message.text, author=message.sender.value,
                    reply_id=agent_reply_id("mailbox", message.event_id), now=now)
