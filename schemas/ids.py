"""Deterministic ids: every id Switchboard derives from what caused it, in one place.

An id derived from its cause is the same on every replay, retry and restart; that is
what lets claims and dedupe recognise a second copy. One rule for all of them: a prefix,
then the hex BLAKE2b digest of the parts joined by NUL. Two sizes: 16 bytes where ids
must not collide across the whole event log (events, deliveries, synthetic Message-IDs),
10 bytes for ids scoped by a customer or a conversation. Mail nonces are 8 bytes, and
ids answering an outside tool's event 12 (24 hex digits).
"""

from __future__ import annotations

import hashlib

from schemas.identity import Identity

__all__ = [
    "agent_reply_id",
    "automatic_reply_id",
    "customer_id_for",
    "delivery_id",
    "digest",
    "follow_up_event_id",
    "handoff_event_id",
    "held_key",
    "inbound_event_id",
    "lifecycle_event_id",
    "mail_nonce",
    "new_conversation_id",
    "sla_event_id",
    "synthetic_message_id",
]

WIDE, NARROW, TOOL, NONCE = 16, 10, 12, 8


def digest(*parts: str | bytes, size: int) -> str:
    """Hex BLAKE2b of the parts joined by NUL, `size` bytes long."""
    raw = b"\x00".join([p.encode() if isinstance(p, str) else p for p in parts])
    return hashlib.blake2b(raw, digest_size=size).hexdigest()


def inbound_event_id(channel: str, native_id: str) -> str:
    """An inbound message's event id from the channel's own id: a re-read yields the same id."""
    return "ev_" + digest(channel, native_id, size=WIDE)


def held_key(source: str, native_id: str) -> str:
    """The key of an item an edge holds for a later callback (a voicemail awaiting its transcript)."""
    return "held_" + digest(source, native_id, size=WIDE)


def customer_id_for(identity: Identity) -> str:
    """The customer an identity creates on first sight."""
    return "cus_" + digest(str(identity), size=NARROW)


def new_conversation_id(event_id: str) -> str:
    """A new conversation's id, from the message that opened it."""
    return "con_" + digest(event_id, size=NARROW)


def automatic_reply_id(kind: str, event_id: str) -> str:
    """The id of a message we send by ourselves (acknowledgement, status update, follow-up)."""
    return f"{kind[:3]}_" + digest(event_id, size=NARROW)


def agent_reply_id(source: str, native_id: str) -> str:
    """An agent's reply id, from the tool event that carried it (a Slack ts, an API key)."""
    return "rep_" + digest(source, native_id, size=TOOL)


def lifecycle_event_id(cause: str, kind: str) -> str:
    """A conversation event's id, from what caused it: a retried cause is the same event."""
    return "evt_" + digest(cause, kind, size=TOOL)


def handoff_event_id(event_id: str) -> str:
    """The routed record handing a transferred conversation to its new team, from the transfer."""
    return "ho_" + digest(event_id, size=WIDE)


def sla_event_id(conversation_id: str, point: str, prefix: str = "sla_") -> str:
    """An SLA event's id, from the conversation and the clock's key for the point that fired."""
    return prefix + digest(conversation_id, point, size=NARROW)


def follow_up_event_id(prefix: str, conversation_id: str, resolved_at: str) -> str:
    """A follow-up's or close's id, from the conversation and the resolve that planned it."""
    return prefix + digest(conversation_id, resolved_at, size=NARROW)


def delivery_id(source: str, destination: str) -> str:
    """The id one item carries to one agents' tool: the same on every retry and restart."""
    return "dlv_" + digest(source, destination, size=WIDE)


def mail_nonce(value: str) -> str:
    """The nonce in one of our Message-IDs, from the reply or delivery it carries."""
    return digest(value, size=NONCE)


def synthetic_message_id(raw: bytes) -> str:
    """A Message-ID for a mail that has none, from its bytes: a re-read gets the same one."""
    return f"sb-{digest(raw, size=WIDE)}@switchboard.invalid"
