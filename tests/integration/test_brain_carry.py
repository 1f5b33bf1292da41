"""The brain over overlapping batches, on a real Redis: a batch processed before the one before it
is confirmed decides, and leaves Redis, exactly as if it had waited."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from itertools import count
from typing import Any

import pytest
from redis.asyncio import Redis

from bench.chain import Chain, chain
from bench.workload import Workload
from processors.stage import Output, Record
from processors.stores.tags import Tags
from router.settings import Settings
from schemas.codec import decode
from schemas.routed import RoutedConversation
from schemas.topics import IDENTIFIED, INBOUND, ROUTED
from tests.integration.handing import AT, POLICY

pytestmark = pytest.mark.integration

TOKEN_KEY = b"carry-test-key"
TAGS = Tags(12)
# the same topics for every chain: a claim names its record, and the chains' claims must compare
INBOUND_TOPIC, IDENTIFIED_TOPIC = f"t-{INBOUND.name}", f"t-{IDENTIFIED.name}"


@pytest.fixture
async def redis(stack: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(stack.redis_dsn, socket_timeout=10)
    yield client
    await client.aclose()


def _batches(run: str) -> list[list[bytes]]:
    """Three batches of 12 messages from 4 customers: every customer writes again in the next batch."""
    ticks = count()
    work = Workload(run, customers=4, clock=lambda: AT + timedelta(seconds=next(ticks)))
    return [[work.next()[1] for _ in range(12)] for _ in range(3)]


def _records(topic: str, values: Sequence[bytes], first: int) -> list[Record]:
    return [Record(topic, 0, first + i, v) for i, v in enumerate(values)]


async def _identified(made: Chain, batches: list[list[bytes]]) -> list[list[Record]]:
    """Every batch through intake (its state does not wait for the brain's), as the brain reads them."""
    out = []
    for n, batch in enumerate(batches):
        outputs = await made.intake.process(_records(INBOUND_TOPIC, batch, n * 100))
        out.append(_records(IDENTIFIED_TOPIC, [o.value for o in outputs if o.topic is IDENTIFIED], n * 100))
    return out


async def _state(redis: Redis, ns: str) -> dict[str, Any]:
    """Every key of a namespace, named without it, with its value whatever its type."""
    state: dict[str, Any] = {}
    async for raw in redis.scan_iter(match=f"{ns}:*", count=1000):
        key = raw.decode()
        kind = (await redis.type(key)).decode()
        if kind == "string":
            value: Any = await redis.get(key)
        elif kind == "hash":
            value = await redis.hgetall(key)
        elif kind == "zset":
            value = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            value = sorted(await redis.smembers(key))
        else:
            value = await redis.lrange(key, 0, -1)
        state[key.removeprefix(ns)] = value
    return state


def _routed(outputs: Sequence[Output]) -> list[RoutedConversation]:
    return [decode(o.value, RoutedConversation) for o in outputs if o.topic is ROUTED]


async def test_a_batch_decided_on_its_predecessors_unconfirmed_state_matches_one_that_waited(
        redis: Redis) -> None:
    batches = _batches(f"carry{uuid.uuid4().hex[:8]}")
    one, two = f"c1{uuid.uuid4().hex[:8]}", f"c2{uuid.uuid4().hex[:8]}"
    waited, overlapped = (chain(redis, ns, TAGS, POLICY, TOKEN_KEY, clock=lambda: AT) for ns in (one, two))
    # one batch at a time: process, then confirm
    alone = []
    for records in await _identified(waited, batches):
        alone.append(_routed(await waited.brain.process(records)))
        await waited.brain.confirm(records)
    # as the loop overlaps them: each batch processed before the one before it is confirmed
    first, second, third = await _identified(overlapped, batches)
    brain = overlapped.brain
    together = [_routed(await brain.process(first)), _routed(await brain.process(second))]
    await brain.confirm(first)
    together.append(_routed(await brain.process(third)))
    await brain.confirm(second)
    await brain.confirm(third)
    assert together == alone
    # the later batches did read what the earlier ones left: threads continued, history attached
    seen = {r.conversation_id for r in alone[0]}
    assert {r.conversation_id for r in alone[1]} <= seen
    assert all(r.history for r in alone[1])
    assert await _state(redis, two) == await _state(redis, one)


async def test_a_confirm_out_of_turn_drops_what_was_carried_and_the_batches_run_again(redis: Redis) -> None:
    batches = _batches(f"carry{uuid.uuid4().hex[:8]}")
    one, two = f"c1{uuid.uuid4().hex[:8]}", f"c2{uuid.uuid4().hex[:8]}"
    waited, broken = (chain(redis, ns, TAGS, POLICY, TOKEN_KEY, clock=lambda: AT) for ns in (one, two))
    for records in await _identified(waited, batches[:2]):
        await waited.brain.process(records)
        await waited.brain.confirm(records)
    first, second = await _identified(broken, batches[:2])
    await broken.brain.process(first)
    await broken.brain.process(second)
    with pytest.raises(RuntimeError, match="other than the oldest one processed"):
        await broken.brain.confirm(second)
    # nothing carried is left to be written: the first batch's confirm now refuses too
    with pytest.raises(RuntimeError, match="other than the oldest one processed"):
        await broken.brain.confirm(first)
    # the loop runs both again, one at a time; a forget before changes nothing
    await broken.brain.process(first)
    broken.brain.forget()
    for records in (first, second):
        await broken.brain.process(records)
        await broken.brain.confirm(records)
    assert await _state(redis, two) == await _state(redis, one)
