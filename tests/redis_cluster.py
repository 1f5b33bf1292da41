"""A real Redis Cluster for tests: three local `redis-server` nodes, created with `redis-cli --cluster`.

A pytest plugin (tests/conftest.py): `nodes` gives the three ports of the session's
cluster, created once every node answers; `cluster` a connected `RedisCluster` for one
test; `store` runs a test on the local Redis and again on the cluster. Tests keep to
their own namespaces; the nodes stop when the session ends.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator
from typing import cast

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

from devtools.process import free_port, stop
from processors.stores.client import new_cluster
from router.settings import Settings
from tests.clocks import real_clock_env
from tests.waiting import until

__all__ = ["cluster", "key_counts", "nodes", "one_node", "store"]


def _cluster_port() -> int:
    """A free port whose cluster bus port (10000 above) is a port too."""
    while (port := free_port()) > 55_000:
        pass
    return port


@pytest.fixture(scope="session")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    """Three cluster-enabled redis-server processes on free loopback ports, made one cluster.

    One cluster for the session (tests keep to their own namespaces), stopped at its end.
    """
    ports = [_cluster_port() for _ in range(3)]
    root = tmp_path_factory.mktemp("redis-cluster")
    procs = []
    for port in ports:
        home = root / str(port)
        home.mkdir()
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", "nodes.conf", "--save", "", "--appendonly", "no"],
            cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            env=real_clock_env()))
    try:
        asyncio.run(_create(ports))
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


async def _create(ports: list[int]) -> None:
    """Every slot covered, no replicas; done once every node says the cluster is ok."""
    for port in ports:
        await until(lambda port=port: _answers(port), f"redis-server on {port}", timeout=30)
    await asyncio.to_thread(
        subprocess.run, ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                         "--cluster-replicas", "0", "--cluster-yes"],
        check=True, capture_output=True, timeout=60, env=real_clock_env())
    for port in ports:
        await until(lambda port=port: _cluster_ok(port), f"cluster state ok on {port}", timeout=30)


@pytest.fixture
async def cluster(nodes: list[int]) -> AsyncIterator[RedisCluster]:
    """A client of the session's cluster, made as the workers make theirs."""
    client = new_cluster(f"redis://127.0.0.1:{nodes[0]}", socket_timeout=10)
    await client.initialize()
    yield client
    await client.aclose()


@pytest.fixture
async def one_node(stack: Settings) -> AsyncIterator[Redis]:
    """A client of the local single Redis."""
    client = Redis.from_url(stack.redis_dsn)
    yield client
    await client.aclose()


@pytest.fixture(params=["one_node", "cluster"])
def store(request: pytest.FixtureRequest) -> Redis:
    """The local Redis, then the cluster: a test using it runs on both."""
    return cast(Redis, request.getfixturevalue(request.param))


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
