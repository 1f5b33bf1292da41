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
from schemas.identified import CustomerProfile, IdentifiedMessage, IdentityLink
from schemas.identity import Identity, parse_sender
from schemas.inbound import (
    ApiExtras,
    Attachment,
    Citation,
    DeliveryReport,
    EmailExtras,
    InboundMessage,
    ReplyRef,
)
from schemas.outbound import DeliveryReceipt, OutboundMessage
from schemas.routed import Decision, HistoryEntry, RoutedConversation
from schemas.sla import SlaEvent

__all__ = [
    "ApiExtras",
    "Attachment",
    "AuthError",
    "Citation",
    "ConfigError",
    "CustomerProfile",
    "DeadLetter",
    "Decision",
    "DeliveryReceipt",
    "DeliveryReport",
    "EmailExtras",
    "HistoryEntry",
    "IdentifiedMessage",
    "Identity",
    "IdentityLink",
    "InboundMessage",
    "OutboundMessage",
    "ParseError",
    "PermanentError",
    "ReplyRef",
    "RoutedConversation",
    "SlaEvent",
    "SwitchboardError",
    "TransientError",
    "decode",
    "encode",
    "parse_sender",
]
