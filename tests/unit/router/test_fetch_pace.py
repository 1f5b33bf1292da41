"""How a stage loop fetches: fuller batches while records flow; a batch that sat in the fetcher topped up."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import TopicPartition

from router.loop import (
    FETCH_WAIT_MS,
    FILL_BYTES,
    IDLE_WAIT_MS,
    STALE_SECONDS,
    TOP_UP_MS,
    WAITED_SECONDS,
    FetchPace,
    StageLoop,
)
from router.settings import Settings

A, B = TopicPartition("in", 0), TopicPartition("in", 1)


class Clock:
    """Monotonic seconds that move only when a fetch takes time."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Fetcher:
    """The settings aiokafka's fetcher reads each time it fetches."""

    def __init__(self) -> None:
        self._prefetch_backoff = 0.1
        self._fetch_min_bytes = 1
        self._fetch_max_wait_ms = IDLE_WAIT_MS


class Consumer:
    """Answers `getmany` from a script of (records, seconds the call takes), noting each call."""

    def __init__(self, clock: Clock, answers: list[tuple[dict[TopicPartition, list[int]], float]]) -> None:
        self.clock = clock
        self.answers = answers
        self.calls: list[tuple[int, int]] = []
        self._fetcher = Fetcher()

    def next_fetch(self) -> tuple[int, int]:
        """How the fetcher would ask for its next records: (min bytes, max wait ms)."""
        return self._fetcher._fetch_min_bytes, self._fetcher._fetch_max_wait_ms

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[int]]:
        self.calls.append((timeout_ms, max_records))
        records, seconds = self.answers.pop(0)
        self.clock.now += seconds
        return {tp: list(r) for tp, r in records.items()}


def _loop(clock: Clock, batch_size: int = 10) -> StageLoop:
    async def process(records: Any) -> list[Any]:
        return []

    return StageLoop("intake", ["in"], process, None, settings=Settings(batch_size=batch_size),
                     producer=lambda: None,  # type: ignore[arg-type,return-value]
                     stalled={}, clock=clock)


async def _next(loop: StageLoop, consumer: Consumer) -> Any:
    """A batch as the loop takes it: fetched, then topped up when there is room."""
    fetched, room = await loop._fetch(consumer)  # type: ignore[arg-type]
    if room:
        await loop._top_up(consumer, fetched, room)  # type: ignore[arg-type]
    return fetched


async def test_a_batch_that_sat_in_the_fetcher_is_topped_up_in_each_partitions_order() -> None:
    clock = Clock()
    loop = _loop(clock)
    clock.now += STALE_SECONDS * 2  # processing the batch before took this long
    consumer = Consumer(clock, [({A: [1, 2], B: [7]}, 0.0), ({B: [8, 9], A: [3]}, 0.001)])
    assert await _next(loop, consumer) == {A: [1, 2, 3], B: [7, 8, 9]}
    # the top-up asks only for the room left, and waits briefly
    assert consumer.calls == [(FETCH_WAIT_MS, 10), (TOP_UP_MS, 7)]


async def test_fresh_full_or_waited_for_batches_are_not_topped_up() -> None:
    clock = Clock()
    loop = _loop(clock, batch_size=3)
    # taken just after the last batch: the fetcher's records are fresh
    consumer = Consumer(clock, [({A: [1]}, 0.0)])
    assert await _next(loop, consumer) == {A: [1]}
    # the fetch had to wait for its records: they just arrived
    clock.now += STALE_SECONDS * 2
    consumer = Consumer(clock, [({A: [2]}, WAITED_SECONDS * 2)])
    assert await _next(loop, consumer) == {A: [2]}
    # a full batch has no room
    clock.now += STALE_SECONDS * 2
    consumer = Consumer(clock, [({A: [3, 4], B: [5]}, 0.0)])
    assert await _next(loop, consumer) == {A: [3, 4], B: [5]}
    # nothing fetched: nothing to top up
    clock.now += STALE_SECONDS * 2
    consumer = Consumer(clock, [({}, 0.0)])
    assert await _next(loop, consumer) == {}
    assert len(consumer.calls) == 1


def _paced(loop: StageLoop, consumer: Consumer, within: float) -> None:
    loop._pace = FetchPace(consumer, within)  # type: ignore[arg-type]  # as start() does


async def test_while_records_flow_a_fetch_waits_for_a_batchs_worth_and_idle_it_long_polls() -> None:
    clock = Clock()
    loop = _loop(clock)
    consumer = Consumer(clock, [({A: [1]}, 0.3), ({A: [2, 3]}, 0.03), ({}, 0.2), ({A: [4]}, 0.4)])
    _paced(loop, consumer, 0.03)
    left = []
    for _ in range(4):
        await loop._fetch(consumer)  # type: ignore[arg-type]
        left.append(consumer.next_fetch())
    # records came: the next fetch waits for FILL_BYTES or 30 ms; none came (the flow
    # stopped): it long-polls, so a lone record after a quiet spell is taken at once
    assert left == [(FILL_BYTES, 30), (FILL_BYTES, 30), (1, IDLE_WAIT_MS), (FILL_BYTES, 30)]


async def test_with_no_wait_configured_a_fetch_takes_what_is_there_at_once() -> None:
    clock = Clock()
    loop = _loop(clock)
    consumer = Consumer(clock, [({A: [1]}, 0.0), ({A: [2]}, 0.0)])
    _paced(loop, consumer, 0.0)
    for _ in range(2):
        await loop._fetch(consumer)  # type: ignore[arg-type]
        assert consumer.next_fetch() == (1, IDLE_WAIT_MS)


async def test_a_batch_is_not_topped_up_while_the_broker_holds_the_next_fetch_for_a_batchs_worth() -> None:
    clock = Clock()
    loop = _loop(clock)
    consumer = Consumer(clock, [({A: [1]}, 0.0)])
    _paced(loop, consumer, 0.03)
    clock.now += STALE_SECONDS * 2  # a batch that sat in the fetcher, with room: topped up unpaced
    fetched, room = await loop._fetch(consumer)  # type: ignore[arg-type]
    assert (fetched, room) == ({A: [1]}, 0)


def test_an_aiokafka_without_the_fetch_settings_is_refused_at_start() -> None:
    class Bare:
        _fetcher = object()

    with pytest.raises(RuntimeError, match="FetchPace"):
        FetchPace(Bare(), 0.03)  # type: ignore[arg-type]
