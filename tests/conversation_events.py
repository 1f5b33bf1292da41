"""Topic events of a support day, made by hand: what the dashboard and the digest read."""

from __future__ import annotations

from datetime import datetime, timedelta

from schemas import DeliveryReceipt, EmailExtras, Identity, InboundMessage, RoutedConversation, SlaEvent
from schemas.conversation import ConversationEvent
from schemas.deadletter import DeadLetter
from schemas.handoff import HandoffReceipt
from schemas.ids import automatic_reply_id
from schemas.inbound import XExtras
from schemas.outbound import GuardFlag
from schemas.routed import Decision


def routed(event: str, at: datetime, *, conversation: str | None = None, tier: str = "standard",
           channel: str = "email", queue: str = "general", customer: str = "cus_ada",
           sentiment: float | None = 0.0, reasons: tuple[str, ...] = (),
           lifecycle: Decision | None = None,
           extras: EmailExtras | XExtras | None = None) -> RoutedConversation:
    """A routed message received at `at` (routed a second later)."""
    message = InboundMessage(event_id=event, channel=channel, native_id=f"n-{event}", thread_key=f"t-{event}",
                             sender=Identity(kind="email", value=f"{customer}@example.com"),
                             received_at=at, text="Where is my parcel?", extras=extras)
    return RoutedConversation(
        event_id=event, conversation_id=conversation or f"con_{event}", customer_id=customer, queue=queue,
        priority=3, tier=tier, urgency="normal", first_response_due=at + timedelta(hours=8),
        routed_at=at + timedelta(seconds=1), message=message, sentiment=sentiment,
        decisions=((Decision(stage="classify", outcome="normal", reasons=reasons),) if reasons else ())
        + ((lifecycle,) if lifecycle else ()))


def lifecycle(kind: str, conversation: str, at: datetime, *, author: str | None = None,
              customer: str = "cus_ada", text: str | None = None, queue: str | None = None,
              event: str | None = None, source: str = "api") -> ConversationEvent:
    """A conversation event of `kind`."""
    return ConversationEvent(event_id=event or f"lc_{kind}_{conversation}_{at.timestamp():.0f}",
                             conversation_id=conversation, customer_id=customer, kind=kind,  # type: ignore[arg-type]
                             at=at, author=author, text=text, queue=queue, source=source)


def sla(kind: str, conversation: str, at: datetime, *, customer: str = "cus_ada",
        reasons: tuple[str, ...] = ("breach: 100% of first response 8h used",)) -> SlaEvent:
    """An SLA watcher event."""
    return SlaEvent(event_id=f"sla_{kind}_{conversation}", kind=kind, conversation_id=conversation,  # type: ignore[arg-type]
                    customer_id=customer, target="first_response", due_at=at, at=at, reasons=reasons)


def ack_sent(routed_event: str, conversation: str, at: datetime, channel: str = "email") -> DeliveryReceipt:
    """The receipt of an acknowledgement sent for a routed message."""
    return DeliveryReceipt(reply_id=automatic_reply_id("acknowledgement", routed_event),
                           conversation_id=conversation, channel=channel, status="sent", at=at,
                           kind="acknowledgement")


def held(reply: str, conversation: str, at: datetime, rule: str = "telling-feelings") -> DeliveryReceipt:
    """A reply the guard held."""
    flag = GuardFlag(rule=rule, action="hold", matched=("calm down",),
                     reason="never tell a customer how to feel")
    return DeliveryReceipt(reply_id=reply, conversation_id=conversation, channel="email", status="held",
                           at=at, kind="agent_reply", flags=(flag,))


def handoff(conversation: str, at: datetime, status: str = "delivered",
            destination: str = "helpdesk-webhook") -> HandoffReceipt:
    """A delivery to an agents' tool."""
    return HandoffReceipt(delivery_id=f"dl_{conversation}_{status}", conversation_id=conversation,
                          event_id=f"ev_{conversation}", destination=destination, intended=destination,
                          status=status, attempts=1, at=at)  # type: ignore[arg-type]


def dead(reason: str, at: datetime, offset: int, stage: str = "intake",
         channel: str | None = "email") -> DeadLetter:
    """A dead letter set aside from a source record."""
    return DeadLetter(stage=stage, reason=reason, original=b"\xff", at=at, channel=channel,
                      source_topic="sb.inbound.v1", source_partition=0, source_offset=offset)
