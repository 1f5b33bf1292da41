"""A `switchboard worker` on a real three-node Redis Cluster (SB_REDIS_CLUSTER, decision 0022).

The worker runs intake and brain and the leader's watches against the cluster: messages
of many customers are routed, their state spreads over every node, and the SLA watch
finds clocks made due on every node and fires them. Dispatch and send are left out here:
their keys are being tagged in their own change.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from redis.asyncio.cluster import RedisCluster

from processors.stores.tags import Tags
from router.settings import Settings
from schemas import RoutedConversation, decode
from schemas.topics import INBOUND, ROUTED
from tests.kafka_tools import publish, read_all
from tests.processes import Switchboard
from tests.redis_cluster import key_counts
from tests.traffic import busy_hour
from tests.waiting import until

pytestmark = pytest.mark.e2e
Launch = Callable[..., Switchboard]


def metric(worker: Switchboard, name: str, stage: str) -> float:
    """One counter of the worker's /metrics for one stage label (0 before it is counted)."""
    _, text = worker.get("/metrics")
    line = next((m for m in (text or "").splitlines()
                 if m.startswith(name + "{") and f'stage="{stage}"' in m), None)
    return float(line.rsplit(" ", 1)[1]) if line else 0.0


async def test_a_worker_routes_on_a_redis_cluster_its_state_spread_over_the_nodes_and_the_watches_fire(
        deployment: Settings, launch: Launch, cluster: RedisCluster, nodes: list[int]) -> None:
    traffic = busy_hour(deployment.topic_prefix.rstrip("-"), customers=30, repeat_every=1000)
    expected = set(traffic.by_event())
    worker = launch("worker", SB_REDIS_URL=f"redis://127.0.0.1:{nodes[0]}/0", SB_REDIS_CLUSTER="true",
                    SB_STAGES="intake,brain")
    await publish(deployment, deployment.topic(INBOUND), list(traffic.records()))

    async def routed() -> set[str] | None:
        found = {decode(r.value, RoutedConversation).event_id
                 for r in await read_all(deployment, deployment.topic(ROUTED))}
        assert worker.proc is not None and worker.proc.poll() is None, worker.tail_log()
        return found if found >= expected else None
    assert await until(routed, "every message routed through the cluster", timeout=120) == expected
    customers = {decode(r.value, RoutedConversation).customer_id
                 for r in await read_all(deployment, deployment.topic(ROUTED))}
    assert len(customers) == 30

    ns = f"{deployment.topic_prefix}sb"
    counts = await key_counts(nodes, f"{ns}:*")
    assert sum(c > 0 for c in counts) > 1, f"the worker's keys are on one node only: {counts}"
    # the lifecycle watch ticks on the leader: a round trip counted for each empty take
    await until(lambda: metric(worker, "sb_redis_roundtrips_total", "lifecycle") > 0, "a lifecycle tick")

    # every clock's due time moved to long ago: the SLA watch takes each from its tag's due set
    # on whichever node, finds nothing to fire yet, and writes it back with its real due time
    tags = Tags(deployment.kafka_partitions)
    due_sets = [f"{ns}:{tag}sla-due" for tag in tags.every()]
    clocks = 0
    for key in due_sets:
        members = await cluster.zrange(key, 0, -1)
        clocks += len(members)
        if members:
            await cluster.zadd(key, dict.fromkeys(members, 1.0))
    assert clocks >= len(customers)

    async def rewritten() -> bool:
        scores = [s for key in due_sets for _, s in await cluster.zrange(key, 0, -1, withscores=True)]
        return len(scores) == clocks and min(scores) > 1.0
    await until(rewritten, "the SLA watch rewrote every clock", timeout=60)
    assert metric(worker, "sb_redis_roundtrips_total", "sla") > 0
    assert "tick failed" not in worker.log_path.read_text(errors="replace")
