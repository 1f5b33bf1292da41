from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection, SSLConnection

from processors.stores.client import new_redis, packed

COMMANDS: list[tuple[Any, ...]] = [
    ("GET", "sb:claim:ev_1"),
    ("EVAL", "return 1", 2, "k1", b"k2", 600, 1.5, 1733300000.123456, -3, "ünï", b"\x00\xff", 10**20, 0.1),
    ("CONFIG GET", "maxmemory"),  # a two-word command name is split, as redis-py does
    (b"CLIENT SETNAME", b"worker"),
    ("SET", "k", "v" * 10_000, "EX", 60),  # past redis-py's 6 KB chunking
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_commands_are_packed_byte_for_byte_as_redis_py_packs_them(command: tuple[Any, ...]) -> None:
    plain, fast = Connection(), packed(Connection)()
    assert b"".join(fast.pack_command(*command)) == b"".join(plain.pack_command(*command))
    twice = [command, command]
    assert b"".join(fast.pack_commands(twice)) == b"".join(plain.pack_commands(twice))


def test_arguments_hiredis_refuses_are_packed_by_redis_py() -> None:
    command = ("SET", "k", memoryview(b"value"), bytearray(b"x"))
    fast, plain = packed(Connection)(), Connection()
    assert b"".join(fast.pack_command(*command)) == b"".join(plain.pack_command(*command))


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "rediss://127.0.0.1:1/0", "unix:///tmp/none.sock"])
def test_every_kind_of_connection_keeps_its_transport(url: str) -> None:
    pool = new_redis(url).connection_pool
    assert pool.connection_class.__name__.startswith("Packed")
    plain = type(pool).from_url(url).connection_class
    assert issubclass(pool.connection_class, plain)


def test_a_cluster_client_packs_on_every_node_it_will_make() -> None:
    client = new_redis("redis://127.0.0.1:1/0", cluster=True)
    assert isinstance(client, RedisCluster)
    assert client.connection_kwargs["connection_class"].__name__ == "PackedConnection"
    assert all(n.connection_class.__name__ == "PackedConnection"
               for n in client.nodes_manager.startup_nodes.values())
    tls = new_redis("rediss://127.0.0.1:1/0", cluster=True)
    assert isinstance(tls, RedisCluster)
    assert issubclass(tls.connection_kwargs["connection_class"], SSLConnection)
