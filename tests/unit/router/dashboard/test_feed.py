"""The dashboard feed ends when cancelled, even when a Kafka call swallowed the cancel."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from aiokafka.errors import KafkaTimeoutError

from router.dashboard.board import Board
from router.dashboard.feed import Feed
from router.settings import Settings

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


class SwallowingFeed(Feed):
    """A feed whose Kafka call turns a cancel into a timeout, as aiokafka's retries can."""

    def __init__(self) -> None:
        super().__init__(Settings(), Board(UTC), lambda: NOW, timedelta(hours=1))
        self.started = asyncio.Event()
        self.follows = 0

    async def _follow(self) -> None:
        self.follows += 1
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise KafkaTimeoutError("offsets not fetched") from None


async def test_a_swallowed_cancel_still_ends_the_feed() -> None:
    feed = SwallowingFeed()
    task = asyncio.create_task(feed.run())
    await asyncio.wait_for(feed.started.wait(), 5)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert done == {task}, "the feed went on following after its stop"
    assert feed.follows == 1
