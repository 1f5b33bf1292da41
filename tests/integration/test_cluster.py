"""The routing chain's stores on a real Redis Cluster: three local nodes, keys tagged by partition.

Intake and brain run whole batches on the cluster through redis-py's cluster client, the
SLA watch finds due clocks on every node, and `retag` moves keys between nodes. Untagged,
the same batch is refused: a Lua call's keys would span slots (decision 0021).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ClusterCrossSlotError, RedisClusterException

from bench.workload import Workload
from processors.stage import Record
from processors.stores.clocks import ClockStore
from processors.stores.retag import retag
from processors.stores.tags import UNTAGGED, Tags
from schemas.topics import IDENTIFIED, INBOUND, ROUTED
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
    work = Workload(ns, customers=40)
    customers = await _route(cluster, ns, Tags(12), work, 0)
    customers += await _route(cluster, ns, Tags(12), work, 200)
    state = await _state(cluster, ns, Tags(12), sorted(set(customers)))  # type: ignore[arg-type]
    assert all(state[0]) and all(state[2])  # every customer has history and an SLA clock
    assert all(size > 0 for size in await key_counts(nodes))  # the keys spread over every node
    # the SLA watch's read reaches every tag's due set, wherever its node
    due = await ClockStore(ns, Tags(12)).due(cluster, datetime.now(UTC) + timedelta(days=30))  # type: ignore[arg-type]
    assert {e.customer_id for e in due} == set(customers)

    # refused by the client, or by Redis itself (CROSSSLOT) where the client checks one key
    with pytest.raises((RedisClusterException, ClusterCrossSlotError), match=r"same (key )?slot|blocked"):
        await _route(cluster, f"cl{uuid.uuid4().hex[:8]}", UNTAGGED, Workload(ns, customers=40), 0)


async def test_retag_moves_keys_across_the_nodes_of_a_cluster(cluster: RedisCluster) -> None:
    ns = f"cl{uuid.uuid4().hex[:8]}"
    work = Workload(ns, customers=30)
    customers = await _route(cluster, ns, Tags(4), work, 0)
    before = await _state(cluster, ns, Tags(4), customers)  # type: ignore[arg-type]
    done = await retag(cluster, ns, Tags(12))
    assert done.moved > 0 and not done.conflicts
    assert await _state(cluster, ns, Tags(12), customers) == before  # type: ignore[arg-type]
    assert (await retag(cluster, ns, Tags(12))).moved == 0
    await _route(cluster, ns, Tags(12), work, 200)
