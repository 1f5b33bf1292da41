"""With several edges, one probes each channel: the holder of its lease in the real Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis

from router.probes import Lease
from router.settings import Settings
from tests.waiting import POLL_SECONDS

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis(stack: Settings) -> AsyncIterator[Redis]:
    client: Redis = Redis.from_url(stack.redis_dsn)
    yield client
    await client.aclose()


async def test_one_edge_holds_a_channel_until_its_lease_lapses(redis: Redis) -> None:
    namespace = f"lease-{uuid.uuid4().hex[:12]}"
    first, second = Lease(redis, namespace, "edge-a"), Lease(redis, namespace, "edge-b")
    assert await first.take("email", 60)
    assert not await second.take("email", 60), "another edge holds email"
    assert await second.take("chat", 60), "each channel has its own lease"
    assert await first.take("email", 0.5), "the holder renews"
    assert await redis.get(f"{namespace}:probe:lease:email") == b"edge-a"
    # the holder stops renewing (it stopped): the other edge takes over once the lease lapses
    await until_async(lambda: second.take("email", 60), "the lapsed lease was never taken over")
    assert not await first.take("email", 60)
    # a stopping edge gives its leases up at once; never one another edge holds
    await first.release(["email", "chat"])
    assert await redis.get(f"{namespace}:probe:lease:email") == b"edge-b"
    await second.release(["email", "chat"])
    assert await first.take("email", 60) and await first.take("chat", 60)
    await first.release(["email", "chat"])
    assert await redis.exists(f"{namespace}:probe:lease:email", f"{namespace}:probe:lease:chat") == 0


async def test_an_edge_that_cannot_reach_redis_probes_anyway() -> None:
    unreachable: Redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    try:
        assert await Lease(unreachable, "sb").take("email", 60)
        assert await Lease(None, "sb").take("email", 60)
    finally:
        await unreachable.aclose()


async def until_async(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 10) -> None:
    """`until` for a check that must be awaited."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(POLL_SECONDS)
