"""A conversation's whole life through the brain and the lifecycle watch, on real Kafka and Redis.

The brain reads its two topics (customer messages and lifecycle events) from Kafka the way
its agent does, one batch per step, and what it and the watch produce goes back to Kafka.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from processors.brain.stage import Brain, Stores
from processors.brain.thread import ThreadRules
from processors.intake.stage import identified_message
from processors.policy.load import parse_policy
from processors.policy.model import Lifecycle, Policy
from processors.stage import Output, Record
from processors.stores.cards import CardStore
from processors.stores.claims import ClaimStore
from processors.stores.clocks import ClockStore, SlaEntry
from processors.stores.conversations import ConversationStore
from processors.stores.directory import Directory
from processors.stores.history import ConversationSummary, HistoryStore
from processors.stores.identities import IdentityStore
from processors.watch.lifecycle_watch import LifecycleSchedule, LifecycleWatch
from router.kafka import ensure_topics
from router.settings import Settings
from router.vocabulary import VOCABULARY
from schemas import Decision, EmailExtras, Identity, InboundMessage, OutboundMessage, decode, encode
from schemas.conversation import ConversationEvent, LifecycleKind
from schemas.identified import IdentifiedMessage
from schemas.routed import HistoryEntry, RoutedConversation
from schemas.topics import CONVERSATION, IDENTIFIED, OUTBOUND, ROUTED
from tests.kafka_tools import partitions_of, publish, read_all, unique_prefix
from tests.waiting import POLL_SECONDS

pytestmark = pytest.mark.integration

POLICY = parse_policy("""
default_tier: standard
tiers:
  standard: {rank: 1, first_response: {normal: 1h, high: 1h}, next_response: {normal: 2h, high: 2h}}
urgency: {levels: [normal, high]}
queues:
  billing: {match: {keywords: [invoice, refund]}, destinations: [billing-mailbox]}
  general: {match: {channels: [email]}, destinations: [helpdesk]}
default_queue: general
lifecycle:
  close_after: 1m
  follow_up:
    delay: 1s
    templates:
      email: {default: "Hi {name}, is {reference} solved? Just reply."}
  confirm: ["yes", "works now"]
""", "lifecycle-test.yaml", VOCABULARY)
# no follow-up, and a close one second after resolving
QUICK_CLOSE = replace(POLICY, lifecycle=Lifecycle(close_after=timedelta(seconds=1)))
ADA = Identity(kind="email", value="ada@example.com")
BOB = Identity(kind="email", value="bob@example.com")


@pytest.fixture
async def redis(stack: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(stack.redis_dsn)
    yield client
    await client.aclose()


@pytest.fixture
async def deployment(stack: Settings) -> Settings:
    """Topics of their own, so every record a test reads is one it caused."""
    settings = stack.model_copy(update={"topic_prefix": unique_prefix()})
    await ensure_topics(settings)
    return settings


def roundtrips() -> float:
    return REGISTRY.get_sample_value("sb_redis_roundtrips_total", {"stage": "brain"}) or 0.0


@dataclass
class World:
    """The brain, the watch and their stores under one namespace, fed from real Kafka."""

    settings: Settings
    redis: Redis
    brain: Brain
    watch: LifecycleWatch
    stores: Stores
    consumer: AIOKafkaConsumer
    routed: list[RoutedConversation]

    async def publish(self, outputs: Sequence[Output]) -> None:
        """Put outputs on their topics the way the agent's producer does."""
        for o in outputs:
            await publish(self.settings, self.settings.topic(o.topic), [(o.key, o.value)])

    async def step(self, *items: IdentifiedMessage | ConversationEvent) -> list[Output]:
        """Publish messages and events, then let the brain take them as one batch."""
        outputs = [Output(CONVERSATION if isinstance(i, ConversationEvent) else IDENTIFIED,
                          i.customer_id.encode(), encode(i)) for i in items]
        await self.publish(outputs)
        return await self.drain()

    async def drain(self) -> list[Output]:
        """Read the brain's topics to their end, process that batch, produce, confirm."""
        tps = list(self.consumer.assignment())
        ends = await self.consumer.end_offsets(tps)
        records: list[Record] = []
        deadline = time.monotonic() + 30
        while [tp for tp in tps if await self.consumer.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline, "could not read the brain's topics to their end"
            for found in (await self.consumer.getmany(timeout_ms=200)).values():
                records += [Record(r.topic, r.partition, r.offset, r.value) for r in found]
        if not records:
            return []
        outputs = await self.brain.process(records)
        await self.publish(outputs)
        await self.brain.confirm(records)
        self.routed += [decode(o.value, RoutedConversation) for o in outputs if o.topic is ROUTED]
        return outputs

    async def fire_when_due(self, deadline: float = 15) -> list[Output]:
        """Tick the watch, as the leader's timer does, until something falls due."""
        until = time.monotonic() + deadline
        while not (fired := await self.watch.tick(datetime.now(UTC), self.publish)):
            assert time.monotonic() < until, "nothing fell due"
            await asyncio.sleep(POLL_SECONDS)
        return fired

    def message(self, sender: Identity, text: str, thread: str = "t-1") -> IdentifiedMessage:
        event_id = f"ev_{uuid.uuid4().hex[:12]}"
        message = InboundMessage(
            event_id=event_id, channel="email", native_id=event_id, thread_key=thread, sender=sender,
            received_at=datetime.now(UTC), text=text, subject="Parcel",
            extras=EmailExtras(message_id=f"<{event_id}@example.com>"))
        return identified_message(message, customer(sender), "first seen",
                                  Decision(stage="identify", outcome="known", reasons=("test",)),
                                  at=message.received_at)

    def event(self, kind: LifecycleKind, conversation: str, **fields: Any) -> ConversationEvent:
        return ConversationEvent(event_id=f"evt_{uuid.uuid4().hex[:12]}", conversation_id=conversation,
                                 customer_id=customer(ADA), kind=kind, at=datetime.now(UTC), **fields)

    async def state(self, conversation: str) -> tuple[ConversationSummary, SlaEntry, str, list[HistoryEntry]]:
        """The conversation's summary, clock, card status and the customer's history, newest first."""
        s, cid = self.stores, customer(ADA)
        pipe = self.redis.pipeline(transaction=False)
        s.history.queue_read_recent(pipe, [cid])
        s.clocks.queue_read(pipe, [cid])
        s.history.queue_read(pipe, [cid], 50)
        recent, clocks, history = await pipe.execute()
        [summaries] = s.history.parse_recent(recent)
        [entries] = s.clocks.parse_read(clocks)
        [lines] = s.history.parse_read(history)
        # the brain's field of the card (the dispatch stage writes the rest)
        raw = await self.redis.hget(s.cards.key(conversation), "status")
        status = raw.decode() if isinstance(raw, bytes) else ""
        summary = next(x for x in summaries if x.conversation_id == conversation)
        return summary, entries[conversation], status, list(lines)

    async def plans(self) -> list[str]:
        """The lifecycle plans waiting in Redis."""
        members = cast(list[bytes], await self.redis.zrange(self.stores.schedule.key, 0, -1))
        return [m.decode() for m in members]


def customer(identity: Identity) -> str:
    return f"cus_{identity.value.split('@')[0]}"


@pytest.fixture
async def world_for(deployment: Settings, redis: Redis) -> AsyncIterator[Callable[[Policy], World]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=deployment.kafka_bootstrap, enable_auto_commit=False,
                                group_id=None)
    await consumer.start()
    tps = [TopicPartition(deployment.topic(spec), p) for spec in (IDENTIFIED, CONVERSATION)
           for p in await partitions_of(deployment, deployment.topic(spec))]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)

    def build(policy: Policy) -> World:
        ns = f"t{uuid.uuid4().hex}"
        history = HistoryStore(ns)
        stores = Stores(
            claims=ClaimStore(namespace=f"{ns}:routed", ttl_seconds=600),
            threads=ConversationStore(ns, 3600), history=history,
            directory=Directory(IdentityStore(ns, history)), clocks=ClockStore(ns),
            cards=CardStore(ns, 3600), schedule=LifecycleSchedule(ns), backlog_key=f"{ns}:backlog")
        brain = Brain(redis, stores, lambda: policy, ThreadRules(token_key=b"k"))
        watch = LifecycleWatch(redis, stores.schedule, history, stores.clocks, lambda: policy)
        return World(deployment, redis, brain, watch, stores, consumer, [])

    yield build
    await consumer.stop()


async def test_a_conversation_from_first_message_to_a_confirmed_close(
        world_for: Callable[[Policy], World], deployment: Settings) -> None:
    w = world_for(POLICY)
    await w.step(w.message(ADA, "My parcel is late"))
    [first] = w.routed
    conversation = first.conversation_id
    summary, entry, card, _ = await w.state(conversation)
    assert (summary.status, card, entry.clock.target) == ("open", "open", "first_response")

    # a mixed batch: the send stage's report of Ana's reply, and another customer's message
    before = roundtrips()
    await w.step(w.event("agent_reply", conversation, author="ana", text="Checking with the courier.",
                         source="send", reply_id="rep_1"),
                 w.message(BOB, "Where is my order?", thread="t-bob"))
    # one read for the whole batch, and one write with the "done" marks once Kafka has the outputs
    assert roundtrips() - before == 2
    assert [r.message.sender for r in w.routed] == [ADA, BOB]
    summary, entry, card, lines = await w.state(conversation)
    assert (entry.clock.target, entry.clock.replied, summary.agent) == ("next_response", True, "ana")
    assert (lines[0].direction, lines[0].summary, lines[0].agent) == ("out", "Checking with the courier.",
                                                                      "ana")

    await w.step(w.event("waiting_on_customer", conversation, author="ana"))
    summary, entry, card, lines = await w.state(conversation)
    assert (summary.status, card, entry.clock.paused) == ("waiting_on_customer", "waiting_on_customer", True)
    assert lines[0].direction == "event" and "paused while waiting on the customer" in lines[0].summary

    await w.step(w.message(ADA, "The tracking number is 123"))
    summary, entry, card, _ = await w.state(conversation)
    assert w.routed[-1].conversation_id == conversation
    assert any(r.startswith(f"resumed: {conversation}") for r in w.routed[-1].reasons)
    assert (summary.status, card, entry.clock.paused) == ("open", "open", False)
    assert entry.clock.running_since is not None, "the clock runs again"

    await w.step(w.event("resolved", conversation, author="ana"))
    summary, entry, card, lines = await w.state(conversation)
    assert (summary.status, card, entry.clock.resolved) == ("resolved", "resolved", True)
    member = f"{customer(ADA)}|{conversation}|"
    assert sorted(await w.plans()) == [member + "close", member + "follow_up"]

    fired = await w.fire_when_due()
    assert [o.topic for o in fired] == [OUTBOUND, CONVERSATION]
    assert await w.plans() == [member + "close"], "the follow-up is settled, the close still planned"
    [sent] = [decode(r.value, OutboundMessage) for r in
              await read_all(deployment, deployment.topic(OUTBOUND))
              if decode(r.value, OutboundMessage).kind == "follow_up"]
    assert sent.text == f"Hi there, is {conversation} solved? Just reply."
    assert (sent.recipient, sent.customer_id, sent.queue) == (ADA, customer(ADA), "general")
    await w.drain()  # the brain takes the follow_up_sent event from Kafka
    summary, *_ = await w.state(conversation)
    assert summary.follow_up_at is not None

    outputs = await w.step(w.message(ADA, "Yes it works now, thanks!"))
    answer = w.routed[-1]
    assert answer.conversation_id == conversation and all(o.topic is not OUTBOUND for o in outputs)
    assert any(r.startswith("closed: the customer's answer to the follow-up") for r in answer.reasons)
    summary, entry, card, lines = await w.state(conversation)
    assert (summary.status, card, entry.clock.target) == ("closed", "closed", None)
    assert (lines[0].direction, lines[0].outcome) == ("in", "confirmed")
    assert await w.plans() == [], "the close is cancelled: the customer closed it"

    # everything read again from the start, as after a crash: nothing is applied twice
    lines_before = len(lines)
    await w.consumer.seek_to_beginning(*w.consumer.assignment())
    assert [o for o in await w.drain() if o.topic is ROUTED] == []
    assert len((await w.state(conversation))[3]) == lines_before


async def test_a_resolved_conversation_reopens_with_the_same_team_and_agent(
        world_for: Callable[[Policy], World]) -> None:
    w = world_for(POLICY)
    await w.step(w.message(ADA, "Wrong invoice amount"))
    conversation = w.routed[0].conversation_id
    assert w.routed[0].queue == "billing"
    await w.step(w.event("agent_reply", conversation, author="ana", text="Corrected."),
                 w.event("resolved", conversation, author="ana"))
    assert len(await w.plans()) == 2

    await w.step(w.message(ADA, "The refund has still not arrived", thread="t-2"))
    again = w.routed[-1]
    assert (again.conversation_id, again.queue, again.agent) == (conversation, "billing", "ana")
    lifecycle = next(d for d in again.decisions if d.stage == "lifecycle")
    assert lifecycle.reasons == (
        f"reopened: resolved conversation {conversation} continues with queue billing, agent ana",)
    summary, entry, card, _ = await w.state(conversation)
    assert (summary.status, card, entry.clock.target) == ("open", "open", "next_response")
    assert await w.plans() == [], "reopening cancels the follow-up and the close"
    assert await w.watch.tick(datetime.now(UTC) + timedelta(hours=1), w.publish) == []


async def test_a_quiet_resolved_conversation_closes_and_the_next_message_starts_anew(
        world_for: Callable[[Policy], World]) -> None:
    w = world_for(QUICK_CLOSE)
    await w.step(w.message(ADA, "My parcel is late"))
    conversation = w.routed[0].conversation_id
    await w.step(w.event("transferred", conversation, queue="billing", author="lead"))
    summary, entry, _, lines = await w.state(conversation)
    assert (summary.queue, summary.transfers, entry.clock.queue) == ("billing", 1, "billing")
    assert lines[0].summary == "transferred from general to billing: transfer 1 of at most 3"
    await w.step(w.event("resolved", conversation))

    [closing] = await w.fire_when_due()
    assert decode(closing.value, ConversationEvent).kind == "closed"
    await w.drain()
    summary, _, card, lines = await w.state(conversation)
    assert (summary.status, card) == ("closed", "closed")
    assert lines[0].summary == "resolved → closed: no word from the customer within 1s of resolution"

    await w.step(w.message(ADA, "One more question about my parcel"))
    assert w.routed[-1].conversation_id != conversation


async def test_messages_and_events_of_one_batch_apply_in_the_batch_order(
        world_for: Callable[[Policy], World], deployment: Settings) -> None:
    w = world_for(POLICY)
    await w.step(w.message(ADA, "My parcel is late"))
    conversation = w.routed[0].conversation_id
    await w.step(w.event("resolved", conversation, author="ana"))
    identified, conversations = deployment.topic(IDENTIFIED), deployment.topic(CONVERSATION)

    def batch(*items: tuple[str, IdentifiedMessage | ConversationEvent]) -> list[Record]:
        # records as a consumer hands them over, each at its own place in its topic
        return [Record(topic, 0, 1000 + i, encode(item)) for i, (topic, item) in enumerate(items)]

    # the customer writes (it reopens), the agent waits on them, then resolves again: in that order
    first = batch((identified, w.message(ADA, "Still late")),
                  (conversations, w.event("waiting_on_customer", conversation)),
                  (conversations, w.event("resolved", conversation, author="ana")))
    await w.brain.process(first)
    await w.brain.confirm(first)  # the state is written once Kafka has the outputs
    summary, *_ = await w.state(conversation)
    assert summary.status == "resolved"
    # a repeated resolve (ignored), then the customer's message in the same batch: it reopens
    second = batch((conversations, w.event("resolved", conversation)),
                   (identified, w.message(ADA, "Not fixed at all")))
    await w.brain.process(second)
    await w.brain.confirm(second)
    summary, _, card, lines = await w.state(conversation)
    assert (summary.status, card) == ("open", "open")
    assert [line.direction for line in lines[:4]] == ["in", "event", "event", "in"]


async def test_a_transfer_takes_its_place_in_the_backlog_along(world_for: Callable[[Policy], World],
                                                                redis: Redis) -> None:
    w = world_for(POLICY)

    async def backlog() -> dict[str, int]:
        raw = await redis.hgetall(w.stores.backlog_key)
        return {k.decode(): int(v) for k, v in raw.items() if int(v)}

    await w.step(w.message(ADA, "My parcel is late"), w.message(BOB, "Mine too", thread="t-bob"))
    conversation = w.routed[0].conversation_id
    assert await backlog() == {"general": 2}
    # an escalation's reassignment: the first response is now owed by billing
    await w.step(w.event("transferred", conversation, queue="billing", source="sla"))
    assert await backlog() == {"general": 1, "billing": 1}
    # resolved there: billing owes nothing, and general's count is untouched (never below zero)
    await w.step(w.event("resolved", conversation, author="ana"))
    assert await backlog() == {"general": 1}


async def test_a_transfer_is_handed_to_the_new_team_with_the_case_file(
        world_for: Callable[[Policy], World]) -> None:
    w = world_for(POLICY)
    await w.step(w.message(ADA, "My parcel is late"))
    [opened] = w.routed
    conversation = opened.conversation_id
    move = w.event("transferred", conversation, queue="billing", author="maria",
                   text="a refund question, not a delivery one")
    outputs = await w.step(move)

    # the new team hears of it now, not when the customer next writes
    [handoff] = [decode(o.value, RoutedConversation) for o in outputs if o.topic is ROUTED]
    assert [o.key for o in outputs if o.topic is ROUTED] == [customer(ADA).encode()]
    assert (handoff.conversation_id, handoff.queue, handoff.message, handoff.transfers) == (
        conversation, "billing", None, 1)
    assert handoff.transfer is not None
    assert (handoff.transfer.from_queue, handoff.transfer.by, handoff.transfer.note) == (
        "general", "maria", "a refund question, not a delivery one")
    assert handoff.transfer.words() == (
        "Transferred from general by maria: a refund question, not a delivery one")
    # the story so far travels with it: the customer's words and the move, newest first
    assert [(h.direction, h.summary) for h in handoff.history[:2]] == [
        ("event", "transferred from general to billing: transfer 1 of at most 3"),
        ("in", "My parcel is late")]
    # the first response is still owed, by the same deadline the clock keeps
    _, entry, _, _ = await w.state(conversation)
    assert entry.clock.queue == "billing"
    assert handoff.first_response_due == opened.first_response_due
    assert (handoff.tier, handoff.urgency, handoff.priority) == (opened.tier, opened.urgency, opened.priority)

    # the same transfer again (a retried call): applied once, handed over once
    assert not [o for o in await w.step(move) if o.topic is ROUTED]
    # a transfer to the queue it is in moves nothing and tells no one
    again = w.event("transferred", conversation, queue="billing", author="maria")
    assert not [o for o in await w.step(again) if o.topic is ROUTED]
