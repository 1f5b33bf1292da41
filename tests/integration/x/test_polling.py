"""Polling mentions and DM events from the local X: overlap window, id dedupe, cursors, budget."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from connectors.base import Arrival
from connectors.twitter.inbound import XPolling
from connectors.twitter.settings import XSettings
from router.settings import Settings
from schemas.inbound import InboundMessage, XExtras
from tests.emulators.x import ADA, XEmulator
from tests.integration.email.conftest import MemoryCursors
from tests.integration.x.test_sender import REDIS, Clock

pytestmark = pytest.mark.integration


@dataclass
class World:
    x: XEmulator
    clock: Clock
    cursors: MemoryCursors
    namespace: str = field(default_factory=lambda: f"t{uuid.uuid4().hex}")

    async def poller(self, sleep: Callable[[float], Awaitable[None]] | None = None,
                     **changes: Any) -> XPolling:
        x = self.x
        given: dict[str, Any] = {
            "account_id": x.account, "handle": x.handle, "consumer_key": x.consumer_key,
            "consumer_secret": x.consumer_secret, "access_token": x.access_token,
            "access_token_secret": x.access_token_secret, "base_url": x.base_url, "poll": True,
            "redis_url": REDIS, "namespace": self.namespace}
        settings = XSettings.model_validate(given | changes)
        poller = XPolling(settings, self.cursors, clock=self.clock, sleep=sleep or self.clock.sleep)
        await poller.start()
        return poller


@pytest.fixture
async def world(stack: Settings) -> AsyncIterator[World]:
    clock = Clock()
    emulator = await XEmulator(clock=clock).start()
    try:
        yield World(emulator, clock, MemoryCursors())
    finally:
        await emulator.stop()


def message(arrival: Arrival) -> InboundMessage:
    assert isinstance(arrival.item, InboundMessage)
    return arrival.item


async def test_mentions_are_read_oldest_first_and_once(world: World) -> None:
    poller = await world.poller()
    first = world.x.mention("one")
    world.clock.now += 5
    second = world.x.mention("two")
    arrivals = await poller.poll("mentions")
    again = await poller.poll("mentions")
    await poller.stop()
    assert [message(a).native_id for a in arrivals] == [first["id"], second["id"]]
    assert again == []
    extras = message(arrivals[0]).extras
    assert isinstance(extras, XExtras) and (extras.handle, extras.summoned) == ("ada_x", True)


async def test_a_mention_indexed_late_is_still_read(world: World) -> None:
    poller = await world.poller()
    world.clock.now += 60
    world.x.mention("newer")
    assert len(await poller.poll("mentions")) == 1
    world.clock.now -= 30  # X shows a post written half a minute earlier only now
    late = world.x.mention("older, but late")
    world.clock.now += 40
    arrivals = await poller.poll("mentions")
    await poller.stop()
    assert [message(a).native_id for a in arrivals] == [late["id"]]


async def test_a_restart_resumes_after_the_last_committed_item(world: World) -> None:
    poller = await world.poller()
    world.x.mention("one")
    world.clock.now += 1
    second = world.x.mention("two")
    first_arrival, _ = await poller.poll("mentions")
    await poller.commit(first_arrival.cursor)  # Kafka had only the first when we died
    await poller.stop()
    restarted = await world.poller()
    arrivals = await restarted.poll("mentions")
    await restarted.stop()
    assert [message(a).native_id for a in arrivals] == [second["id"]]


async def test_dms_are_read_and_our_own_are_not(world: World) -> None:
    poller = await world.poller()
    world.x.dm("my account is locked")
    world.x.dm("we're on it", sender=world.x.account)
    [arrival] = await poller.poll("dm_events")
    await poller.stop()
    assert message(arrival).tags == ("dm",) and str(message(arrival).sender) == f"xid:{ADA}"


async def test_history_from_before_the_first_start_is_not_routed(world: World) -> None:
    world.x.dm("a year-old DM")
    world.clock.now += 3_600
    poller = await world.poller()
    assert await poller.poll("dm_events") == []
    await poller.stop()


async def test_partial_errors_ride_with_the_post_that_cites_them(world: World) -> None:
    poller = await world.poller()
    world.x.mention("see my quoted post", quotes="9")
    world.x.partial_errors.append({"title": "Not Found Error", "detail": "Could not find tweet 9.",
                                   "resource_id": "9",
                                   "type": "https://api.twitter.com/2/problems/resource-not-found"})
    [arrival] = await poller.poll("mentions")
    await poller.stop()
    extras = message(arrival).extras
    assert isinstance(extras, XExtras) and extras.errors == ("Not Found Error: Could not find tweet 9.",)


async def test_the_loop_reads_each_endpoint(world: World) -> None:
    poller = await world.poller()
    world.x.mention("one")
    world.x.dm("two")
    seen: list[str] = []
    async for arrival in poller.messages():
        seen.append(message(arrival).tags[0])
        if len(seen) == 2:
            break
    await poller.stop()
    assert sorted(seen) == ["dm", "public"]


async def test_a_spent_budget_pauses_polling(world: World) -> None:
    world.x.mention("one")
    slept = world.clock.slept

    async def until_tomorrow(seconds: float) -> None:
        await world.clock.sleep(seconds)
        if len(slept) == 2:
            await poller.stop()
    poller = await world.poller(until_tomorrow, daily_budget_usd=0.0)
    assert [a async for a in poller.messages()] == []
    # 10:00 UTC: both endpoints wait 14 hours, for the next UTC day, and then a day more
    assert "mentions" not in world.x.calls and slept == [14 * 3600.0, 86_400.0]


async def test_refused_credentials_stop_polling(world: World) -> None:
    world.x.mention("one")
    poller = await world.poller(access_token="1072250532645998596-revoked")
    assert [a async for a in poller.messages()] == []
    await poller.stop()
    assert world.x.calls == ["mentions"]
