"""The routing chain's stores on a real Redis Cluster: three local nodes, keys tagged by partition.

Intake and brain run whole batches on the cluster through redis-py's cluster client, the
SLA watch finds due clocks on every node, and `retag` moves keys between nodes. Untagged,
the same batch is refused: a Lua call's keys would span slots (decision 0021).
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException

from bench.workload import Workload
from devtools.process import free_port, stop
from processors.stage import Record
from processors.stores.clocks import ClockStore
from processors.stores.retag import retag
from processors.stores.tags import UNTAGGED, Tags
from schemas.topics import IDENTIFIED, INBOUND, ROUTED
from tests.integration.test_retag import _stages, _state
from tests.waiting import until

pytestmark = pytest.mark.integration


def _cluster_port() -> int:
    """A free port whose cluster bus port (10000 above) is a port too."""
    while (port := free_port()) > 55_000:
        pass
    return port


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[int]]:
    """Three cluster-enabled redis-server processes on free loopback ports, stopped after."""
    ports = [_cluster_port() for _ in range(3)]
    procs = []
    for port in ports:
        home = tmp_path / str(port)
        home.mkdir()
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", "nodes.conf", "--save", "", "--appendonly", "no"],
            cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL))
    try:
        yield ports
    finally:
        for proc in procs:
            stop(proc)


def _answers(port: int) -> bool:
    with SyncRedis(port=port, socket_timeout=5) as client:
        try:
            return bool(client.ping())
        except RedisConnectionError:
            return False


def _cluster_ok(port: int) -> bool:
    with SyncRedis(port=port, socket_timeout=5) as client:
        return bool(client.cluster("info").get("cluster_state") == "ok")


@pytest.fixture
async def cluster(nodes: list[int]) -> AsyncIterator[RedisCluster]:
    for port in nodes:
        await until(lambda port=port: _answers(port), f"redis-server on {port}", timeout=30)
    await asyncio.to_thread(
        subprocess.run, ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in nodes),
                         "--cluster-replicas", "0", "--cluster-yes"],
        check=True, capture_output=True, timeout=60)
    for port in nodes:
        await until(lambda port=port: _cluster_ok(port), f"cluster state ok on {port}", timeout=30)
    client = RedisCluster(host="127.0.0.1", port=nodes[0], socket_timeout=10)
    await client.initialize()
    yield client
    await client.aclose()


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


async def _sizes(nodes: list[int]) -> list[int]:
    sizes = []
    for port in nodes:
        client = Redis(port=port)
        sizes.append(await client.dbsize())
        await client.aclose()
    return sizes


async def test_tagged_batches_run_on_a_cluster_and_untagged_ones_are_refused(
        cluster: RedisCluster, nodes: list[int]) -> None:
    ns = f"cl{uuid.uuid4().hex[:8]}"
    work = Workload(ns, customers=40)
    customers = await _route(cluster, ns, Tags(12), work, 0)
    customers += await _route(cluster, ns, Tags(12), work, 200)
    state = await _state(cluster, ns, Tags(12), sorted(set(customers)))  # type: ignore[arg-type]
    assert all(state[0]) and all(state[2])  # every customer has history and an SLA clock
    assert all(size > 0 for size in await _sizes(nodes))  # the keys spread over every node
    # the SLA watch's read reaches every tag's due set, wherever its node
    due = await ClockStore(ns, Tags(12)).due(cluster, datetime.now(UTC) + timedelta(days=30))  # type: ignore[arg-type]
    assert {e.customer_id for e in due} == set(customers)

    with pytest.raises(RedisClusterException, match=r"same key slot|blocked"):
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
