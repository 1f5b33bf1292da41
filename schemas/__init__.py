"""Event types: the single source of truth for every shape on a topic."""

from __future__ import annotations

from schemas.codec import decode, encode
from schemas.deadletter import DeadLetter
from schemas.errors import (
    AuthError,
    ConfigError,
    ParseError,
    PermanentError,
    SwitchboardError,
    TransientError,
)
from schemas.identity import Identity, parse_sender
from schemas.inbound import ApiExtras, Attachment, EmailExtras, InboundMessage, event_id_for
from schemas.outbound import DeliveryReceipt, OutboundMessage
from schemas.routed import Decision, RoutedConversation

__all__ = [
    "ApiExtras",
    "Attachment",
    "AuthError",
    "ConfigError",
    "DeadLetter",
    "Decision",
    "DeliveryReceipt",
    "EmailExtras",
    "Identity",
    "InboundMessage",
    "OutboundMessage",
    "ParseError",
    "PermanentError",
    "RoutedConversation",
    "SwitchboardError",
    "TransientError",
    "decode",
    "encode",
    "event_id_for",
    "parse_sender",
]
