"""Dispatch and send stages as the workers wire them, with tools and a channel that answer at once.

Shared by the Cluster, retag and round-trip tests: batches of routed messages (new,
follow-ups, for one or two destinations), a reply receipt and an SLA page, and a batch of
replies.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from msgspec.structs import replace

from connectors.base import AgentTool, Handoff
from processors.dispatch.stage import DispatchStage
from processors.policy.load import load_policy
from processors.policy.model import Destination, Queue
from processors.stage import Record
from processors.stores.cards import CardStore
from processors.stores.tags import Tags
from router.vocabulary import VOCABULARY
from schemas import Identity, InboundMessage, OutboundMessage
from schemas.codec import decode, encode
from schemas.handoff import HandoffReceipt
from schemas.outbound import DeliveryReceipt
from schemas.routed import RoutedConversation, TransferNote
from schemas.sla import SlaEvent
from schemas.topics import DELIVERY, HANDOFF, ROUTED, SLA
from tests.paths import ROOT

__all__ = ["AT", "POLICY", "Channel", "Desk", "dispatch_batch", "dispatch_stage", "handoffs", "reply",
           "routed"]

POLICY = load_policy(ROOT / "deploy" / "policy.example.yaml", VOCABULARY)
AT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


class Desk(AgentTool[None]):
    """An agents' tool that takes every handoff, and holds it while `held` (a worker killed mid-call).

    With `threads` it opens a thread per conversation, as Slack does; without, it names none.
    """

    def __init__(self, *, threads: bool = True) -> None:
        super().__init__(None)
        self.seen: list[Handoff] = []
        self.held = False
        self._threads = threads
        self._never = asyncio.Event()

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def deliver(self, handoff: Handoff) -> str:
        self.seen.append(handoff)
        if self.held:
            await self._never.wait()
        return (handoff.thread or f"ts-{handoff.card.conversation_id}") if self._threads else ""


def dispatch_stage(redis: Any, ns: str, tools: Mapping[str, AgentTool[Any]], tags: Tags) -> DispatchStage:
    policy = dataclasses.replace(
        POLICY, default_queue="general",
        queues={"general": Queue("general", None, ("desk",)),
                "billing": Queue("billing", None, ("desk", "chat"))},
        destinations={n: Destination(n, "webhook") for n in ("desk", "chat", "pager")})
    return DispatchStage(redis, lambda: tools, lambda: policy, namespace=ns,
                         ttl_seconds=600, cards=CardStore(ns, 600, tags), thread_ttl_seconds=600)


def routed(event: str, conversation: str, queue: str = "general", *,
           handoff: bool = False) -> RoutedConversation:
    """A routed message of Ada's, or with `handoff` a transfer's handoff of its conversation."""
    message = InboundMessage(
        event_id=event, channel="email", native_id=f"<{event}@example.org>", thread_key="t",
        sender=Identity(kind="email", value="ada@example.org"), received_at=AT, text="Hello")
    routed = RoutedConversation(
        event_id=event, conversation_id=conversation, customer_id="cus_ada", queue=queue, priority=3,
        tier="standard", urgency="normal", routed_at=AT, message=message,
        first_response_due=AT + timedelta(hours=8), decisions=())
    if handoff:
        return replace(routed, message=None, transfers=1, transfer=TransferNote(from_queue="general", at=AT))
    return routed


def handoffs(outputs: list[Any]) -> list[tuple[str, str, str]]:
    return sorted((r.event_id, r.destination, r.status) for r in
                  (decode(o.value, HandoffReceipt) for o in outputs if o.topic is HANDOFF))


def dispatch_batch(ns: str, offset: int) -> list[Record]:
    """Messages to 30 conversations (new, then follow-ups), a reply receipt and an SLA page."""
    queues = ("billing", "general", "general")
    messages = [Record(f"{ns}-{ROUTED.name}", 0, offset + i,
                     encode(routed(f"ev_{offset + i}", f"con_{i % 30}", queues[i % 3]))) for i in range(60)]
    held = DeliveryReceipt(reply_id=f"rep_{offset}", conversation_id="con_1", channel="email", status="held",
                           at=AT, kind="agent_reply", reason="held by the reply guard")
    page = SlaEvent(event_id=f"sla_{offset}", kind="escalate", conversation_id="con_2", customer_id="cus_ada",
                    target="first_response", due_at=AT, at=AT, reasons=(), step=1, action="page",
                    action_target="pager")
    return [*messages, Record(f"{ns}-{DELIVERY.name}", 0, offset + 100, encode(held)),
            Record(f"{ns}-{SLA.name}", 0, offset + 101, encode(page))]


class Channel:
    """A channel that sends every reply, but defers one until `later`."""

    def __init__(self, later: datetime) -> None:
        self.sent: list[str] = []
        self._later = later

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        if message.reply_id == "rep_later" and "deferred" not in self.sent:
            self.sent.append("deferred")
            return DeliveryReceipt(reply_id=message.reply_id, conversation_id=message.conversation_id,
                                   channel=message.channel, status="deferred", at=AT, retry_at=self._later,
                                   reason="the channel's daily cap")
        self.sent.append(message.reply_id)
        return DeliveryReceipt(reply_id=message.reply_id, conversation_id=message.conversation_id,
                               channel=message.channel, status="sent", at=AT)





def reply(reply_id: str, conversation: str) -> OutboundMessage:
    return OutboundMessage(reply_id=reply_id, conversation_id=conversation, channel="email",
                           recipient=Identity(kind="email", value="ada@example.org"), kind="agent_reply",
                           text="Your parcel left today.", created_at=AT, customer_id="cus_ada")
