"""Redis round trips per batch, counted on the wire of a real Redis: intake, brain and dispatch at ≤ 2.

The stores are tagged as the worker tags them; on one node a batch's call is not split
per tag (on a Cluster it is: test_cluster, decision 0021).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import Connection

from bench.chain import chain
from bench.workload import Workload
from processors.brain.stage import Brain
from processors.intake.stage import Intake
from processors.stage import Output, Record
from processors.stores.cards import CardStore, card_fields
from processors.stores.client import packed
from processors.stores.history import HistoryStore
from processors.stores.tags import Tags, hash_tag
from router.settings import Settings
from schemas import Identity, InboundMessage, OutboundMessage
from schemas.codec import decode, encode
from schemas.conversation import ConversationCard, ConversationEvent
from schemas.handoff import HandoffReceipt
from schemas.identified import IdentifiedMessage
from schemas.ids import customer_id_for, delivery_id
from schemas.outbound import DeliveryReceipt
from schemas.routed import RoutedConversation
from schemas.sla import SlaEvent
from schemas.tokens import agent_key, continuation_key, continuation_token, make_token
from schemas.topics import (
    CONVERSATION,
    DEADLETTER,
    DELIVERY,
    HANDOFF,
    IDENTIFIED,
    INBOUND,
    OUTBOUND,
    ROUTED,
    SLA,
)
from tests.integration.handing import AT, POLICY, Desk, dispatch_stage, routed
from tests.waiting import until

pytestmark = pytest.mark.integration

TOKEN_KEY = b"roundtrip-test-key"
# more partitions than a batch's records have: every call splits in many
TAGS = Tags(12)


class Counting(packed(Connection)):  # type: ignore[misc]
    """Our client's connection, counting what it writes to Redis: one write per command or pipeline."""

    sent = 0
    # what went on the wire, as written: the slot test reads the commands back out of it
    wire: list[bytes] = []

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        """Count and keep, then send as usual."""
        type(self).sent += 1
        type(self).wire.append(command if isinstance(command, bytes) else b"".join(command))
        await super().send_packed_command(command, check_health)


@pytest.fixture
async def redis(stack: Settings) -> AsyncIterator[Redis]:
    # built as router.service builds the worker's client (new_redis), on connections that count
    client = Redis.from_url(stack.redis_dsn, socket_timeout=10, connection_class=Counting)
    await client.ping()
    yield client
    await client.aclose()


async def _counted(step: Any) -> tuple[Any, int]:
    before = Counting.sent
    result = await step
    return result, Counting.sent - before


def _records(topic: str, values: Sequence[bytes], offset: int = 0) -> list[Record]:
    return [Record(topic, 0, offset + i, v) for i, v in enumerate(values)]


@dataclass
class Stages:
    """Intake and brain wired as the worker wires them, under a namespace of their own."""

    ns: str
    history: HistoryStore
    intake: Intake
    brain: Brain


@pytest.fixture
def stages(redis: Redis) -> Stages:
    ns = f"rt{uuid.uuid4().hex[:10]}"
    made = chain(redis, ns, TAGS, POLICY, TOKEN_KEY, clock=lambda: AT)
    history, intake, brain = made.history, made.intake, made.brain
    return Stages(ns, history, intake, brain)


async def test_a_batch_costs_intake_and_brain_two_round_trips_each(redis: Redis, stages: Stages) -> None:
    ns, history, intake, brain = stages.ns, stages.history, stages.intake, stages.brain
    # 40 customers writing 200 messages: a batch of the size the stages take
    work = Workload(ns, customers=40, clock=lambda: AT)
    for round_ in range(2):  # first sightings, then customers the stores know
        inbound = _records(f"{ns}-{INBOUND.name}", [work.next()[1] for _ in range(200)], round_ * 200)
        outputs, trips = await _counted(intake.process(inbound))
        assert trips <= 2, f"intake made {trips} round trips (round {round_})"
        identified = _records(f"{ns}-{IDENTIFIED.name}",
                              [o.value for o in outputs if o.topic is IDENTIFIED], round_ * 200)
        assert len(identified) == 200
        routed, read = await _counted(brain.process(identified))
        _, write = await _counted(brain.confirm(identified))
        assert (read, write) == (1, 1), f"brain: {read} + {write} round trips (round {round_})"
        assert sum(o.topic is ROUTED for o in routed) == 200
    # a state the brain wrote on confirm: the customers' recent conversations are there
    assert await redis.exists(history.recent_key(_customer_of(routed)))


async def test_lifecycle_events_ride_the_same_two_round_trips(stages: Stages) -> None:
    ns, intake, brain = stages.ns, stages.intake, stages.brain
    work = Workload(ns, customers=10, clock=lambda: AT)
    outputs = await intake.process(_records(f"{ns}-{INBOUND.name}", [work.next()[1] for _ in range(20)]))
    identified = _records(f"{ns}-{IDENTIFIED.name}", [o.value for o in outputs if o.topic is IDENTIFIED])
    routed = await brain.process(identified)
    await brain.confirm(identified)
    events = [_resolved(o) for o in routed if o.topic is ROUTED]
    mixed = [*_records(f"{ns}-{CONVERSATION.name}", events), *_records(
        f"{ns}-{IDENTIFIED.name}", [o.value for o in (await intake.process(_records(
            f"{ns}-{INBOUND.name}", [work.next()[1] for _ in range(20)], 20))) if o.topic is IDENTIFIED], 20)]
    _, read = await _counted(brain.process(mixed))
    _, write = await _counted(brain.confirm(mixed))
    assert (read, write) == (1, 1)


def _customer_of(outputs: Sequence[Output]) -> str:
    return next(o.key for o in outputs if o.topic is ROUTED).decode()


def _resolved(routed: Output) -> bytes:
    """A "resolved" lifecycle event for a routed conversation, as the API would publish it."""
    conversation = decode(routed.value, RoutedConversation)
    return encode(ConversationEvent(
        event_id=f"ev_resolved_{conversation.event_id}", kind="resolved",
        conversation_id=conversation.conversation_id, customer_id=conversation.customer_id,
        at=conversation.routed_at + timedelta(minutes=5), author="ana"))


async def test_the_state_is_written_only_by_the_confirm_of_its_own_batch(
        redis: Redis, stages: Stages) -> None:
    ns, intake, brain = stages.ns, stages.intake, stages.brain
    work = Workload(ns, customers=5, clock=lambda: AT)
    outputs = await intake.process(_records(f"{ns}-{INBOUND.name}", [work.next()[1] for _ in range(10)]))
    identified = _records(f"{ns}-{IDENTIFIED.name}", [o.value for o in outputs if o.topic is IDENTIFIED])
    routed = await brain.process(identified)
    customer = _customer_of(routed)
    # nothing is written before Kafka has the outputs
    assert not await redis.exists(stages.history.recent_key(customer))
    with pytest.raises(RuntimeError, match="other than the oldest one processed"):
        await brain.confirm(identified[:3])
    assert not await redis.exists(stages.history.recent_key(customer))
    # the loop runs the batch again: decided afresh, then confirmed
    await brain.process(identified)
    await brain.confirm(identified)
    assert await redis.exists(stages.history.recent_key(customer))


async def test_continuations_and_agents_answers_ride_intakes_second_round_trip(
        redis: Redis, stages: Stages) -> None:
    ns, intake = stages.ns, stages.intake
    cards = CardStore(ns, 3600, TAGS)
    ada = Identity(kind="email", value="ada@example.org")
    conversation = f"con_{uuid.uuid4().hex[:20]}"
    pipe = redis.pipeline(transaction=False)
    cards.queue_write(pipe, {conversation: card_fields(ConversationCard(
        conversation_id=conversation, customer_id=customer_id_for(ada), channel="email", recipient=ada,
        queue="general", tier="standard", urgency="normal", priority=3, status="open", opened_at=AT,
        updated_at=AT, in_reply_to="<m1@example.org>"))})
    await pipe.execute()
    unknown = f"con_{uuid.uuid4().hex[:20]}"
    answers = [
        # the customer answers the continuation mail (verified; the conversation is theirs already)
        _mail(ada, "c1", "Thanks, here is the order number",
              continuation_token(conversation, ada.value, date(2099, 1, 1), continuation_key(TOKEN_KEY))),
        # an agent answers from the team mailbox, to a known and to an unknown conversation
        _mail(Identity(kind="email", value="ana@support.example"), "a1", "We refunded it",
              make_token(conversation, agent_key(TOKEN_KEY))),
        _mail(Identity(kind="email", value="ana@support.example"), "a2", "Hello?",
              make_token(unknown, agent_key(TOKEN_KEY))),
    ]
    work = Workload(ns, customers=40, clock=lambda: AT)  # and first sightings to register
    batch = _records(f"{ns}-{INBOUND.name}",
                     [*(encode(m) for m in answers), *(work.next()[1] for _ in range(40))])
    outputs, trips = await _counted(intake.process(batch))
    assert trips <= 2, f"intake made {trips} round trips"
    replies = [decode(o.value, OutboundMessage) for o in outputs if o.topic is OUTBOUND]
    assert [(r.conversation_id, r.text) for r in replies] == [(conversation, "We refunded it")]
    identified = [decode(o.value, IdentifiedMessage) for o in outputs if o.topic is IDENTIFIED]
    assert len(identified) == 41
    # the continuation passes on last, once its card was read
    assert identified[-1].customer_id == customer_id_for(ada)
    assert f"continuation of {conversation}" in " ".join(identified[-1].decisions[-1].reasons)
    assert sum(o.topic is DEADLETTER for o in outputs) == 1


def _mail(sender: Identity, native: str, text: str, token: str) -> InboundMessage:
    return InboundMessage(
        event_id=f"ev_{uuid.uuid4().hex}", channel="email", native_id=f"<{native}@example.org>",
        thread_key=f"<{native}@example.org>", sender=sender, received_at=AT, text=text, reply_token=token)


def _commands(wire: Sequence[bytes]) -> list[list[bytes]]:
    """The commands in what the client wrote: RESP arrays of bulk strings, pipelines back to back."""
    out = []
    for blob in wire:
        at = 0
        while at < len(blob):
            end = blob.index(b"\r\n", at)
            count, at, args = int(blob[at + 1:end]), end + 2, []
            for _ in range(count):
                end = blob.index(b"\r\n", at)
                size = int(blob[at + 1:end])
                args.append(blob[end + 2:end + 2 + size])
                at = end + 2 + size + 2
            out.append(args)
    return out


def _keys(command: list[bytes]) -> list[bytes]:
    """The keys a command names: a script's declared keys, MGET's arguments, else its one key."""
    name = command[0].upper()
    if name in (b"EVAL", b"EVALSHA"):
        return command[3:3 + int(command[2])]
    if name == b"MGET":
        return command[1:]
    return command[1:2] if len(command) > 1 else []


async def test_on_one_node_a_batchs_calls_carry_every_tag_at_once(stages: Stages) -> None:
    # on a Cluster they are split per tag (test_cluster); one node holds every slot

    ns, intake, brain = stages.ns, stages.intake, stages.brain
    work = Workload(ns, customers=40, clock=lambda: AT)
    Counting.wire.clear()
    for round_ in range(2):  # first sightings, then known customers; then a lifecycle event each
        outputs = await intake.process(_records(f"{ns}-{INBOUND.name}",
                                                [work.next()[1] for _ in range(200)], round_ * 200))
        identified = _records(f"{ns}-{IDENTIFIED.name}", [o.value for o in outputs if o.topic is IDENTIFIED],
                              round_ * 200)
        routed = await brain.process(identified)
        await brain.confirm(identified)
    events = _records(f"{ns}-{CONVERSATION.name}", [_resolved(o) for o in routed if o.topic is ROUTED])
    await brain.process(events)
    await brain.confirm(events)
    commands = _commands(Counting.wire)
    many = [c for c in commands if len(_keys(c)) > 1]
    tags = [len({hash_tag(k.decode()) for k in _keys(c)}) for c in many]
    assert max(tags) >= 10, tags  # 200 messages of 40 customers reach most of 12 tags
    assert {c[0].upper() for c in many} >= {b"EVAL", b"MGET"}
    assert all(k.startswith(f"{ns}:".encode()) and b"{p" in k for c in commands for k in _keys(c)
               if not k.endswith(b":backlog") and not k.endswith(b":lifecycle-due"))


# --- dispatch ----------------------------------------------------------------------------

async def test_a_dispatch_batch_costs_two_round_trips_with_a_replay_and_a_skipped_handoff(
        redis: Redis, caplog: pytest.LogCaptureFixture) -> None:
    ns = f"rt{uuid.uuid4().hex[:10]}"
    desk, chat, pager = Desk(threads=False), Desk(threads=False), Desk(threads=False)
    tools = {"desk": desk, "chat": chat, "pager": pager}
    topic = f"{ns}-{ROUTED.name}"
    # before: con_1 is at the desk; a worker dies while the desk takes con_r's message
    await dispatch_stage(redis, ns, tools, TAGS).process(_records(topic, [encode(routed("ev_1", "con_1"))]))
    halfway = _records(topic, [encode(routed("ev_r", "con_r"))], offset=1)
    desk.held = True
    crashed = asyncio.create_task(dispatch_stage(redis, ns, tools, TAGS).process(halfway))
    await until(lambda: any(h.card.conversation_id == "con_r" for h in desk.seen), "con_r reached the desk")
    crashed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await crashed
    desk.held = False
    held = DeliveryReceipt(reply_id="rep_1", conversation_id="con_1", channel="email", status="held",
                           at=AT, kind="agent_reply", reason="held by the reply guard")
    quiet = DeliveryReceipt(reply_id="ack_1", conversation_id="con_1", channel="email", status="sent",
                            at=AT, kind="acknowledgement")
    page = SlaEvent(event_id="sla_1", kind="escalate", conversation_id="con_1", customer_id="cus_ada",
                    target="first_response", due_at=AT, at=AT, reasons=(), step=1, action="page",
                    action_target="pager")
    batch = [
        *halfway,  # the replay: the same record again, on a new worker
        *_records(topic, [encode(routed("ev_2", "con_2")), encode(routed("ev_3", "con_3", "billing")),
                           encode(routed("ev_4", "con_1")),
                           # a transfer's handoff of a conversation never dispatched: skipped
                           encode(routed("ho_1", "con_9", "billing", handoff=True))], offset=2),
        *_records(f"{ns}-{DELIVERY.name}", [encode(held), encode(quiet)], offset=10),
        *_records(f"{ns}-{SLA.name}", [encode(page)], offset=20),
    ]
    with caplog.at_level(logging.INFO, logger="processors.dispatch"):
        outputs, trips = await _counted(dispatch_stage(redis, ns, tools, TAGS).process(batch))
    assert trips == 2, f"dispatch made {trips} round trips"
    # the script planned everything as Python does: nothing planned again
    assert not [r for r in caplog.records if "planned" in r.getMessage()]
    got = [decode(o.value, HandoffReceipt) for o in outputs if o.topic is HANDOFF]
    assert [(r.event_id, r.destination, r.status) for r in got] == [
        ("ev_r", "desk", "delivered"), ("ev_2", "desk", "delivered"), ("ev_3", "desk", "delivered"),
        ("ev_3", "chat", "delivered"), ("ev_4", "desk", "delivered"), ("rep_1", "desk", "delivered"),
        ("sla_1", "desk", "delivered"), ("sla_1", "pager", "delivered")]
    assert "delivered again with the same delivery id" in (got[0].reason or "")
    assert [h.delivery_id for h in desk.seen].count(delivery_id("routed:ev_r", "desk")) == 2
    assert [h.card.conversation_id for h in chat.seen] == ["con_3"]
    assert [h.event for h in pager.seen] == ["conversation.event"]
    # the cards were written before the tools were called, and the follow-up counted
    card = await CardStore(ns, 600, TAGS).get(redis, "con_1")
    # (an escalation's page joins the conversation's destinations, as it always has)
    assert card is not None and card.messages == 2 and card.destinations == {"desk": "", "pager": ""}
    assert await CardStore(ns, 600, TAGS).get(redis, "con_9") is None
