"""Held items in the real Redis: one order for every change, however callbacks and the timer interleave."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from processors.stores.tags import on_cluster
from router.held import HeldStore
from tests.kafka_tools import unique_prefix

pytestmark = pytest.mark.integration
T = 1_800_000_000.0


@pytest.fixture
def held(store: Redis) -> tuple[HeldStore, Redis]:
    """The store on the local Redis, then on a real Cluster (`store`, tests/redis_cluster.py)."""
    held = HeldStore(f"{unique_prefix()}sb", ttl_seconds=600, lease_seconds=30, cluster=on_cluster(store))
    return held, store


async def test_a_key_is_held_replaced_and_released_once(held: tuple[HeldStore, Redis]) -> None:
    store, redis = held
    assert await store.hold(redis, "k", b"missed call", T + 60) == "new"
    assert await store.hold(redis, "k", b"voicemail", T + 300) == "held"  # replaced, later deadline
    assert await store.due(redis, T + 299) == []
    assert await store.due(redis, T + 300) == [("k", b"voicemail")]
    assert await store.due(redis, T + 301) == []  # leased while it is published
    assert await store.done(redis, "k", b"voicemail", "released")
    assert await store.hold(redis, "k", b"voicemail again", T + 400) == "released"  # final: left alone
    assert await store.due(redis, T + 10_000) == []


async def test_what_a_crash_left_unmarked_comes_due_again_after_the_lease(
        held: tuple[HeldStore, Redis]) -> None:
    store, redis = held
    await store.hold(redis, "k", b"voicemail", T)
    assert await store.due(redis, T) == [("k", b"voicemail")]
    # published, then the process died before marking it: the next tick past the lease has it
    assert await store.due(redis, T + 29) == []
    assert await store.due(redis, T + 30) == [("k", b"voicemail")]


async def test_a_message_replaced_while_the_timer_had_it_is_not_marked_done(
        held: tuple[HeldStore, Redis]) -> None:
    store, redis = held
    await store.hold(redis, "k", b"without transcript", T)
    assert await store.due(redis, T) == [("k", b"without transcript")]
    assert await store.hold(redis, "k", b"with transcript", T + 30) == "held"  # settle's lease
    assert not await store.done(redis, "k", b"without transcript", "released")
    assert await store.done(redis, "k", b"with transcript", "settled")
    assert await store.hold(redis, "k", b"late", T) == "settled"


async def test_a_hold_that_must_not_replace_leaves_a_held_key_alone(held: tuple[HeldStore, Redis]) -> None:
    store, redis = held
    assert await store.hold(redis, "k", b"missed call", T + 60, replace=False) == "new"
    await store.hold(redis, "k", b"voicemail", T + 300)
    assert await store.hold(redis, "k", b"missed call", T + 60, replace=False) == "held"  # a retried call
    assert await store.due(redis, T + 300) == [("k", b"voicemail")]
