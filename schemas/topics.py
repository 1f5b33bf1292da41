"""Every topic: its name, version, event type and key rule, side by side."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.conversation import ConversationEvent
from schemas.deadletter import DeadLetter
from schemas.handoff import HandoffReceipt
from schemas.identified import IdentifiedMessage, IdentityLink
from schemas.inbound import InboundMessage
from schemas.insights import InsightDigest
from schemas.outbound import DeliveryReceipt, OutboundMessage
from schemas.probe import ProbeEvent
from schemas.routed import RoutedConversation
from schemas.sla import SlaEvent

__all__ = [
    "ALL", "CONVERSATION", "DEADLETTER", "DELIVERY", "HANDOFF", "IDENTIFIED", "IDENTITY", "INBOUND",
    "INSIGHTS", "OUTBOUND", "PROBE", "ROUTED", "SLA", "TopicSpec",
]


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic's base name and version, the event it carries and what its key is."""

    base: str
    version: int
    model: type
    key: str

    @property
    def name(self) -> str:
        """The topic name as it appears in Kafka, without a deployment prefix."""
        return f"sb.{self.base}.v{self.version}"

    def named(self, prefix: str = "") -> str:
        """The topic name under a deployment prefix (tests use one per run)."""
        return f"{prefix}{self.name}"


INBOUND = TopicSpec("inbound", 1, InboundMessage, "thread_key: the channel's conversation key")
IDENTIFIED = TopicSpec("identified", 1, IdentifiedMessage, "customer_id")
IDENTITY = TopicSpec("identity", 1, IdentityLink, "customer_id")
ROUTED = TopicSpec("routed", 1, RoutedConversation, "customer_id")
SLA = TopicSpec("sla", 1, SlaEvent, "customer_id")
OUTBOUND = TopicSpec("outbound", 1, OutboundMessage, "conversation_id")
DELIVERY = TopicSpec("delivery", 1, DeliveryReceipt, "conversation_id")
CONVERSATION = TopicSpec("conversation", 1, ConversationEvent, "customer_id")
HANDOFF = TopicSpec("handoff", 1, HandoffReceipt, "conversation_id")
DEADLETTER = TopicSpec("deadletter", 1, DeadLetter, "stage")
PROBE = TopicSpec("probe", 1, ProbeEvent, "channel")
INSIGHTS = TopicSpec("insights", 1, InsightDigest, "digest_id: the window, '<since>/<until>'")

ALL: tuple[TopicSpec, ...] = (
    INBOUND, IDENTIFIED, IDENTITY, ROUTED, SLA, CONVERSATION, OUTBOUND, DELIVERY, HANDOFF, DEADLETTER,
    PROBE, INSIGHTS,
)
