"""Continuation answers: a customer answering, from their mailbox, a conversation begun elsewhere.

A conversation that continued by mail when the customer left its channel (a chat) sent a
continuation token bound to the address it mailed (schemas.tokens). Intake checks it here:
- verified: the writer reads that mailbox, so the conversation's customer identity (the chat
  session) is linked to the address's customer — its history and conversations move with
  it — and the answer joins the conversation as that customer's own, tagged `continuation`
  (the conversation stays where it lives: replies keep going to its channel, which mails
  them on); a copy of it goes to that channel as a `transcript`, so the customer sees it
  there too;
- from another address, altered (or not ours) or expired: nothing is linked, the refusal is
  counted with its reason and the message goes on as an ordinary one (the thread rule then
  keeps it out of a conversation that is not the sender's).
Pure: the stage does the Redis work.
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from prometheus_client import Counter

from schemas.conversation import ConversationCard
from schemas.ids import automatic_reply_id
from schemas.inbound import InboundMessage
from schemas.outbound import OutboundMessage
from schemas.tokens import Continued, check_continuation

__all__ = ["CONTINUATIONS", "TAG", "checked", "linked_identity", "tagged", "transcript"]

# the marker of a verified answer: the conversation's card keeps its channel (processors.dispatch.plan)
TAG = "continuation"
CONTINUATIONS = Counter("sb_continuation_answers_total",
                        "Answers carrying a continuation token, by verdict", ["verdict"])


def checked(message: InboundMessage, key: bytes, now: datetime) -> Continued | None:
    """The verdict on the continuation token a message carries, counted; None when it carries none.

    `key` is `continuation_key(reply-token key)`, derived once per stage, not per message.
    """
    found = check_continuation(message.reply_token, message.sender.value, now, key)
    if found is not None:
        CONTINUATIONS.labels(found.verdict).inc()
    return found


def linked_identity(card: ConversationCard, message: InboundMessage, customer_id: str) -> bool:
    """Whether the conversation's customer identity must move to the sender's customer."""
    return card.recipient != message.sender and card.customer_id != customer_id


def transcript(message: InboundMessage, card: ConversationCard, customer_id: str) -> OutboundMessage | None:
    """The answer, for the record of the conversation's own channel; None when it came on that channel."""
    if card.channel == message.channel:
        return None
    return OutboundMessage(
        reply_id=automatic_reply_id("transcript", message.event_id), conversation_id=card.conversation_id,
        channel=card.channel, recipient=card.recipient, kind="transcript", text=message.text,
        created_at=message.received_at, subject=message.subject, author=message.sender.value,
        in_reply_to=card.in_reply_to, references=card.references, customer_id=customer_id,
        queue=card.queue)


def tagged(message: InboundMessage) -> InboundMessage:
    """The verified answer, marked as continuing its conversation where that conversation lives."""
    return message if TAG in message.tags else msgspec.structs.replace(message, tags=(*message.tags, TAG))
