"""The Redis client the stages use: redis-py's asyncio client, packing commands in C.

redis-py's asyncio connection packs every argument in Python, re-joining a buffer that
grows to 6 KB with each one: a batch's Lua calls of a thousand keys and values cost
milliseconds on the client before a byte is sent (most of a stage's Redis cost under
load). Its synchronous connection packs with hiredis instead; `new_redis` gives the
asyncio one the same packer, on whatever connection the URL asks for (TCP, TLS, a unix
socket). Replies are parsed by hiredis already.

With `cluster` it is redis-py's asyncio `RedisCluster` instead (`SB_REDIS_CLUSTER`,
decision 0022): the URL names one node, the others are discovered, and every node's
connections get the same packer (its pipelines pack each node's commands with it too).
"""

from __future__ import annotations

from typing import Any, cast

import hiredis
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection, Connection

__all__ = ["new_cluster", "new_redis", "packed"]


def _pack(args: tuple[Any, ...]) -> list[bytes] | None:
    """One command in the Redis protocol as redis-py packs it; None if hiredis refuses an argument."""
    # a memoryview or bytearray: redis-py's own packer takes those
    head = args[0]
    if isinstance(head, str):
        args = (*head.encode().split(), *args[1:])
    elif b" " in head:
        args = (*head.split(), *args[1:])
    try:
        return [hiredis.pack_command(args)]
    except TypeError:
        return None


_made: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def packed(connection_class: type[AbstractConnection]) -> type[AbstractConnection]:
    """`connection_class` packing its commands with hiredis (one subclass per class)."""
    if connection_class in _made:
        return _made[connection_class]

    class Packed(connection_class):  # type: ignore[valid-type,misc]
        def pack_command(self, *args: Any) -> list[bytes]:
            fast = _pack(args)
            return fast if fast is not None else super().pack_command(*args)

    Packed.__name__ = Packed.__qualname__ = f"Packed{connection_class.__name__}"
    _made[connection_class] = Packed
    return Packed


def new_redis(url: str, *, cluster: bool = False, **options: Any) -> Redis:
    """An asyncio Redis client for `url` whose connections pack commands in C; a Cluster's with `cluster`.

    A `RedisCluster` answers every command the stores send (processors.stores.tags splits
    their calls per slot); it is typed as `Redis` so the stores keep one annotation. When
    it reaches no node it raises `RedisClusterException`, which is not a `RedisError`:
    callers that treat Redis away as transient catch both.
    """
    if cluster:
        return cast(Redis, new_cluster(url, **options))
    pool = ConnectionPool.from_url(url, **options)
    pool.connection_class = packed(pool.connection_class)
    return Redis(connection_pool=pool)


class _Cluster(RedisCluster):
    """redis-py's cluster client, finding a script's slot from its first key alone.

    redis-py hashes every key of an EVAL (CRC16 in Python) to refuse keys across slots
    before sending: a sixth of a batch's client time here, on calls `tags.split` grouped by
    hash tag already. Redis checks it again anyway: keys across slots get CROSSSLOT.
    """

    async def _determine_slot(self, command: str, *args: Any) -> int:
        if command in ("EVAL", "EVALSHA") and len(args) > 2 and int(args[1]) > 1:
            return int(self.keyslot(args[2]))
        return int(await super()._determine_slot(command, *args))


def new_cluster(url: str, **options: Any) -> RedisCluster:
    """A Redis Cluster client, started from the node `url` names, whose connections pack commands in C."""
    client = _Cluster.from_url(url, **options)
    # the class sits in the options every node is made with: the start-up node is made
    # already, the nodes found at `initialize` are made from these options later
    fast = cast(type[Connection], packed(client.connection_kwargs["connection_class"]))
    client.connection_kwargs["connection_class"] = fast
    for node in client.nodes_manager.startup_nodes.values():
        node.connection_class = fast
    return client
