"""A real Redis Cluster for tests: three local `redis-server` nodes, created with `redis-cli --cluster`.

A pytest plugin (tests/conftest.py): `nodes` gives the three ports, `cluster` a connected
`RedisCluster` once every node says the cluster is ok. Everything is stopped after the test.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

from devtools.process import free_port, stop
from processors.stores.client import new_cluster
from tests.waiting import until

__all__ = ["cluster", "key_counts", "nodes"]


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
        home = tmp_path / f"redis-{port}"
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
    """The three nodes made one cluster (every slot covered, no replicas), and a client of it."""
    for port in nodes:
        await until(lambda port=port: _answers(port), f"redis-server on {port}", timeout=30)
    await asyncio.to_thread(
        subprocess.run, ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in nodes),
                         "--cluster-replicas", "0", "--cluster-yes"],
        check=True, capture_output=True, timeout=60)
    for port in nodes:
        await until(lambda port=port: _cluster_ok(port), f"cluster state ok on {port}", timeout=30)
    client = new_cluster(f"redis://127.0.0.1:{nodes[0]}", socket_timeout=10)  # as the workers make it
    await client.initialize()
    yield client
    await client.aclose()


async def key_counts(nodes: list[int], match: str = "*") -> list[int]:
    """How many keys matching `match` each node holds, in the order of `nodes`."""
    counts = []
    for port in nodes:
        client = Redis(port=port)
        try:
            counts.append(len([k async for k in client.scan_iter(match=match, count=1000)]))
        finally:
            await client.aclose()
    return counts
