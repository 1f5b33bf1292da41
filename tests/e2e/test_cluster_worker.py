"""A `switchboard worker` on a real three-node Redis Cluster (SB_REDIS_CLUSTER, decision 0022).

The worker runs intake and brain and the leader's watches against the cluster: messages
of many customers are routed, their state spreads over every node, and the SLA watch
finds clocks made due on every node and fires them. And the whole router (`switchboard
run`) on the cluster: a message reaches the helpdesk's webhook, a transfer the new team's,
with every card and dispatch ledger on the cluster.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster

from processors.stores.tags import Tags
from router.settings import Settings
from schemas import RoutedConversation, decode
from schemas.topics import INBOUND, ROUTED
from tests.kafka_tools import publish, read_all
from tests.policies import example_policy
from tests.processes import Switchboard
from tests.receivers.webhook import WebhookReceiver
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


def bodies(receiver: WebhookReceiver, event: str) -> list[dict[str, Any]]:
    """What a webhook was handed for one event type."""
    return [d.body for d in receiver.deliveries if d.event == event]


async def test_the_router_on_a_redis_cluster_hands_a_conversation_over_and_transfers_it(
        deployment: Settings, launch: Launch, nodes: list[int], tmp_path: Path) -> None:
    async with WebhookReceiver(b"cluster-helpdesk") as helpdesk, WebhookReceiver(b"cluster-pager") as pager:
        policy = example_policy(tmp_path, {
            "url: http://127.0.0.1:18090/switchboard": f"url: {helpdesk.url}",
            "url: http://127.0.0.1:18091/page": f"url: {pager.url}",
            "destinations: [helpdesk-webhook, slack-support]": "destinations: [helpdesk-webhook]",
        })
        router = launch("run", SB_POLICY_FILE=str(policy), SB_WEBHOOK_SECRET="cluster-helpdesk",
                        SB_PAGER_SECRET="cluster-pager", SB_REDIS_CLUSTER="true",
                        SB_REDIS_URL=f"redis://127.0.0.1:{nodes[0]}/0")
        for n in range(6):  # several customers: their conversations fall in several tags
            status, taken = router.post("/v1/messages", json.dumps(
                {"sender": f"cl{n}@example.com", "text": f"Order {n} never arrived.",
                 "thread_id": f"order-{n}"}).encode())
            assert status == 202, taken
        routed = await until(lambda: (found := bodies(helpdesk, "conversation.routed")) and len(found) >= 6
                             and found, "the helpdesk was handed every conversation", timeout=90)
        assert len({b["conversation"]["conversation_id"] for b in routed}) == 6
        conversation = routed[0]["conversation"]["conversation_id"]

        status, moved = router.post(f"/v1/conversations/{conversation}/transfer", json.dumps(
            {"queue": "escalations", "author": "maria", "note": "a supervisor, please"}).encode(),
            headers={"Idempotency-Key": "cluster-move"})
        assert status == 202, moved
        [handed] = await until(lambda: bodies(pager, "conversation.transferred"), "the new team never heard")
        assert handed["conversation"]["conversation_id"] == conversation
        assert handed["conversation"]["queue"] == "escalations"
        assert len(bodies(helpdesk, "conversation.routed")) == 6  # nothing handed twice
        ledgers = await key_counts(nodes, f"{deployment.topic_prefix}sb:*ledger:*")
        assert sum(ledgers) >= 7 and sum(c > 0 for c in ledgers) > 1, ledgers
        assert router.proc is not None and router.proc.poll() is None, router.tail_log()
