"""Dispatch and send stages as the workers wire them, with tools and a channel that answer at once.

Shared by the Cluster and retag tests: batches of routed messages (new, follow-ups, for
one or two destinations), a reply receipt and an SLA page, and a batch of replies.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from connectors.base import AgentTool, Handoff
from processors.dispatch.stage import DispatchStage
from processors.policy.model import Destination, Queue
from processors.stage import Record
from processors.stores.cards import CardStore
from processors.stores.tags import Tags
from schemas import Identity, OutboundMessage
from schemas.codec import decode, encode
from schemas.handoff import HandoffReceipt
from schemas.outbound import DeliveryReceipt
from schemas.sla import SlaEvent
from schemas.topics import DELIVERY, HANDOFF, ROUTED, SLA
from tests.integration.test_roundtrips import AT, POLICY, _routed

__all__ = ["AT", "POLICY", "Channel", "Desk", "dispatch_batch", "dispatch_stage", "handoffs", "reply"]


class Desk(AgentTool[None]):
    """An agents' tool that takes every handoff and opens a thread per conversation."""

    def __init__(self) -> None:
        super().__init__(None)
        self.seen: list[str] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def deliver(self, handoff: Handoff) -> str:
        self.seen.append(handoff.delivery_id)
        return handoff.thread or f"ts-{handoff.card.conversation_id}"


def dispatch_stage(redis: Any, ns: str, tools: dict[str, Desk], tags: Tags) -> DispatchStage:
    policy = dataclasses.replace(
        POLICY, default_queue="general",
        queues={"general": Queue("general", None, ("desk",)),
                "billing": Queue("billing", None, ("desk", "chat"))},
        destinations={n: Destination(n, "webhook") for n in ("desk", "chat", "pager")})
    return DispatchStage(redis, lambda: tools, lambda: policy, namespace=ns,
                         ttl_seconds=600, cards=CardStore(ns, 600, tags), thread_ttl_seconds=600)


def handoffs(outputs: list[Any]) -> list[tuple[str, str, str]]:
    return sorted((r.event_id, r.destination, r.status) for r in
                  (decode(o.value, HandoffReceipt) for o in outputs if o.topic is HANDOFF))


def dispatch_batch(ns: str, offset: int) -> list[Record]:
    """Messages to 30 conversations (new, then follow-ups), a reply receipt and an SLA page."""
    queues = ("billing", "general", "general")
    routed = [Record(f"{ns}-{ROUTED.name}", 0, offset + i,
                     encode(_routed(f"ev_{offset + i}", f"con_{i % 30}", queues[i % 3]))) for i in range(60)]
    held = DeliveryReceipt(reply_id=f"rep_{offset}", conversation_id="con_1", channel="email", status="held",
                           at=AT, kind="agent_reply", reason="held by the reply guard")
    page = SlaEvent(event_id=f"sla_{offset}", kind="escalate", conversation_id="con_2", customer_id="cus_ada",
                    target="first_response", due_at=AT, at=AT, reasons=(), step=1, action="page",
                    action_target="pager")
    return [*routed, Record(f"{ns}-{DELIVERY.name}", 0, offset + 100, encode(held)),
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
