"""Identify: the customer and conversation ids a message belongs to.

Until identities are linked across channels (a later stage), a customer is one sender
identity and a conversation is one channel thread; both ids are stable hashes of those.
"""

from __future__ import annotations

import hashlib

from schemas.identity import Identity
from schemas.inbound import InboundMessage

__all__ = ["conversation_id_for", "customer_id_for"]


def _short_hash(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=10).hexdigest()


def customer_id_for(sender: Identity) -> str:
    """The provisional customer id of one sender identity."""
    return f"cus_{_short_hash(str(sender))}"


def conversation_id_for(message: InboundMessage) -> str:
    """The provisional conversation id of the message's channel thread."""
    return f"con_{_short_hash(message.channel + chr(0) + message.thread_key)}"
