"""The dashboard's feed against real Kafka: the look-back window, cross-topic order, following live."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from router.dashboard.board import Board
from router.dashboard.feed import Feed
from router.dashboard.view import snapshot
from router.settings import Settings
from schemas import encode
from schemas.topics import CONVERSATION, DELIVERY, ROUTED, TopicSpec
from tests.clocks import midday
from tests.conversation_events import ack_sent, lifecycle, routed
from tests.kafka_tools import publish
from tests.waiting import until

pytestmark = pytest.mark.integration
ZONE = ZoneInfo("Europe/Berlin")


@pytest.fixture
def now() -> datetime:
    # the board counts the team's day: a story told at the real present fails just past midnight
    return midday(ZONE)


async def put(settings: Settings, spec: TopicSpec, event: object, at: datetime) -> None:
    await publish(settings, settings.topic(spec), [(b"k", encode(event))],
                  timestamp_ms=int(at.timestamp() * 1000))


@pytest.fixture
def board(deployment: Settings, now: datetime) -> tuple[Board, Feed]:
    b = Board(zone=ZONE)
    return b, Feed(deployment, b, lambda: now, lookback=timedelta(hours=1))


async def test_the_window_is_read_routed_first_then_followed(deployment: Settings, now: datetime,
                                                            board: tuple[Board, Feed]) -> None:
    b, feed = board
    # older than the look-back: never read
    await put(deployment, ROUTED, routed("ev_old", now - timedelta(hours=2)), now - timedelta(hours=2))
    # the reply and the acknowledgement's receipt reach Kafka before the message they concern
    await put(deployment, CONVERSATION, lifecycle("agent_reply", "con_ev_1", now - timedelta(minutes=10),
                                                  author="maria"), now - timedelta(minutes=10))
    await put(deployment, DELIVERY, ack_sent("ev_1", "con_ev_1", now - timedelta(minutes=29, seconds=57)),
              now - timedelta(minutes=29))
    await put(deployment, ROUTED, routed("ev_1", now - timedelta(minutes=30)), now - timedelta(minutes=30))
    task = asyncio.create_task(feed.run())
    try:
        await asyncio.wait_for(feed.caught_up.wait(), 30)
        [row] = snapshot(b, now, {})["segments"]
        assert (row["routed"], row["replied"], row["sla"]["met"], row["waiting"]) == (1, 1, 1, 0)
        assert row["acknowledgement"] == {"count": 1, "p50_seconds": 3.0, "p90_seconds": 3.0}
        assert snapshot(b, now, {})["agents"][0] == {"agent": "maria", "count": 1, "p50_seconds": 1200.0,
                                                     "p90_seconds": 1200.0}

        # then it follows: a new message shows up
        await put(deployment, ROUTED, routed("ev_2", now - timedelta(seconds=5)), now - timedelta(seconds=5))
        await until(lambda: snapshot(b, now, {})["segments"][0]["routed"] == 2, "the live message counted",
                    timeout=30)
        assert snapshot(b, now, {})["segments"][0]["waiting"] == 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
