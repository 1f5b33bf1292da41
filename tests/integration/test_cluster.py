"""The routing chain's stores on a real Redis Cluster: three local nodes, keys tagged by partition.

Intake and brain run whole batches on the cluster through redis-py's cluster client, the
SLA watch finds due clocks on every node, dispatch hands batches over (new, replayed,
transferred) and send sends them once, and `retag` moves keys between nodes. Untagged,
the same batch is refused: a Lua call's keys would span slots (decision 0021).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ClusterCrossSlotError, RedisClusterException

from bench.workload import Workload
from processors.send.stage import SendStage
from processors.stage import Record
from processors.stores.cards import CardStore
from processors.stores.clocks import ClockStore
from processors.stores.retag import retag
from processors.stores.tags import UNTAGGED, Tags
from schemas.codec import decode, encode
from schemas.outbound import DeliveryReceipt
from schemas.topics import DELIVERY, IDENTIFIED, INBOUND, OUTBOUND, ROUTED
from tests.integration.handing import (
    AT,
    POLICY,
    Channel,
    Desk,
    dispatch_batch,
    dispatch_stage,
    handoffs,
    reply,
    routed,
)
from tests.integration.test_retag import _stages, _state
from tests.redis_cluster import key_counts

pytestmark = pytest.mark.integration


async def _route(redis: RedisCluster, ns: str, tags: Tags, work: Workload, offset: int) -> list[str]:
    intake, brain, _, _ = _stages(redis, ns, tags)  # type: ignore[arg-type]
    inbound = [Record(f"{ns}-{INBOUND.name}", 0, offset + i, work.next()[1]) for i in range(200)]
    identified = [Record(f"{ns}-{IDENTIFIED.name}", 0, offset + i, o.value)
                  for i, o in enumerate(o for o in await intake.process(inbound) if o.topic is IDENTIFIED)]
    assert len(identified) == 200
    routed = await brain.process(identified)
    await brain.confirm(identified)
    assert sum(o.topic is ROUTED for o in routed) == 200
    return sorted({o.key.decode() for o in routed if o.topic is ROUTED})


async def test_tagged_batches_run_on_a_cluster_and_untagged_ones_are_refused(
        cluster: RedisCluster, nodes: list[int]) -> None:
    ns = f"cl{uuid.uuid4().hex[:8]}"
    work = Workload(ns, customers=40, clock=lambda: AT)
    customers = await _route(cluster, ns, Tags(12), work, 0)
    customers += await _route(cluster, ns, Tags(12), work, 200)
    state = await _state(cluster, ns, Tags(12), sorted(set(customers)))  # type: ignore[arg-type]
    assert all(state[0]) and all(state[2])  # every customer has history and an SLA clock
    assert all(size > 0 for size in await key_counts(nodes))  # the keys spread over every node
    # the SLA watch's read reaches every tag's due set, wherever its node
    due = await ClockStore(ns, Tags(12)).due(cluster, AT + timedelta(days=30))  # type: ignore[arg-type]
    assert {e.customer_id for e in due} == set(customers)

    # refused by the client, or by Redis itself (CROSSSLOT) where the client checks one key
    with pytest.raises((RedisClusterException, ClusterCrossSlotError), match=r"same (key )?slot|blocked"):
        await _route(cluster, f"cl{uuid.uuid4().hex[:8]}", UNTAGGED,
                     Workload(ns, customers=40, clock=lambda: AT), 0)


async def test_retag_moves_keys_across_the_nodes_of_a_cluster(cluster: RedisCluster) -> None:
    ns = f"cl{uuid.uuid4().hex[:8]}"
    work = Workload(ns, customers=30, clock=lambda: AT)
    customers = await _route(cluster, ns, Tags(4), work, 0)
    before = await _state(cluster, ns, Tags(4), customers)  # type: ignore[arg-type]
    done = await retag(cluster, ns, Tags(12))
    assert done.moved > 0 and not done.conflicts
    assert await _state(cluster, ns, Tags(12), customers) == before  # type: ignore[arg-type]
    assert (await retag(cluster, ns, Tags(12))).moved == 0
    await _route(cluster, ns, Tags(12), work, 200)


# --- dispatch and send ---------------------------------------------------------------------

TAGS = Tags(12)


async def test_dispatch_batches_run_on_a_cluster_and_a_replay_delivers_nothing_twice(
        cluster: RedisCluster, nodes: list[int]) -> None:
    ns = f"cl{uuid.uuid4().hex[:8]}"
    desk, chat, pager = Desk(), Desk(), Desk()
    tools = {"desk": desk, "chat": chat, "pager": pager}
    batch = dispatch_batch(ns, 0)
    first = handoffs(await dispatch_stage(cluster, ns, tools, Tags(12)).process(batch))
    # every message reaches its queue's tools; billing's also the chat; the page the pager too
    assert len(first) == 60 + 20 + 1 + 2 and {s for _, _, s in first} == {"delivered"}
    assert (len(desk.seen), len(chat.seen), len(pager.seen)) == (62, 20, 1)
    assert all(size > 0 for size in await key_counts(nodes, f"{ns}:*"))  # every node holds some
    cards = CardStore(ns, 600, Tags(12))
    card = await cards.get(cluster, "con_3")  # type: ignore[arg-type]
    assert card is not None and card.messages == 2
    assert card.destinations == {"desk": "ts-con_3", "chat": "ts-con_3"}
    assert await cards.conversation_of(cluster, "chat", "ts-con_3") == "con_3"  # type: ignore[arg-type]

    # the same records again on a new worker (a restart): their receipts again, nothing delivered
    again = handoffs(await dispatch_stage(cluster, ns, tools, Tags(12)).process(batch))
    assert again == first
    # the same items in other records (a duplicate upstream): nothing at all
    copies = [Record(r.topic, 1, r.offset, r.value) for r in batch]
    assert handoffs(await dispatch_stage(cluster, ns, tools, Tags(12)).process(copies)) == []
    assert (len(desk.seen), len(chat.seen), len(pager.seen)) == (62, 20, 1)

    # a transfer moves con_1 to billing: handed to billing's tools, its old thread dropped
    moved = Record(f"{ns}-{ROUTED.name}", 0, 500, encode(routed("ho_1", "con_1", "billing", handoff=True)))
    assert handoffs(await dispatch_stage(cluster, ns, tools, Tags(12)).process([moved])) == [
        ("ho_1", "chat", "delivered"), ("ho_1", "desk", "delivered")]
    card = await cards.get(cluster, "con_1")  # type: ignore[arg-type]
    assert card is not None and card.queue == "billing" and card.transfers == 1

    with pytest.raises((RedisClusterException, ClusterCrossSlotError), match=r"same (key )?slot|blocked"):
        await dispatch_stage(cluster, ns, tools, UNTAGGED).process(dispatch_batch(ns, 1000))


async def test_a_send_batch_runs_on_a_cluster_each_reply_sent_once(cluster: RedisCluster) -> None:
    ns = f"cl{uuid.uuid4().hex[:8]}"
    now = [AT]
    channel = Channel(AT + timedelta(hours=1))

    def stage(tags: Tags = TAGS) -> SendStage:
        return SendStage(cluster, {"email": channel.send}, namespace=ns, ttl_seconds=600,  # type: ignore[arg-type]
                         policy=lambda: POLICY, cards=CardStore(ns, 600, tags), clock=lambda: now[0])

    replies = [reply(f"rep_{i}", f"con_{i % 20}") for i in range(40)] + [reply("rep_later", "con_7")]
    batch = [Record(f"{ns}-{OUTBOUND.name}", 0, i, encode(m)) for i, m in enumerate(replies)]
    out = await stage().process(batch)
    statuses = sorted(decode(o.value, DeliveryReceipt).status for o in out if o.topic is DELIVERY)
    assert statuses == ["deferred"] + ["sent"] * 40
    assert sorted(channel.sent) == sorted([f"rep_{i}" for i in range(40)] + ["deferred"])
    # other records of the same replies: none is sent again
    copies = [Record(r.topic, 1, r.offset, r.value) for r in batch]
    assert await stage().process(copies) == []
    assert len(channel.sent) == 41

    # the deferred reply comes back when due, and goes once
    produced: list[Any] = []

    async def produce(outputs: Any) -> None:
        produced.extend(outputs)
    assert await stage().redeliver(produce) == 0
    now[0] = AT + timedelta(hours=2)
    assert await stage().redeliver(produce) == 1
    due = [Record(f"{ns}-{OUTBOUND.name}", 0, 100, o.value) for o in produced]
    assert [decode(o.value, DeliveryReceipt).status for o in await stage().process(due)
            if o.topic is DELIVERY] == ["sent"]
    assert channel.sent.count("rep_later") == 1

    with pytest.raises((RedisClusterException, ClusterCrossSlotError), match=r"same (key )?slot|blocked"):
        await stage(UNTAGGED).process(batch)
