"""The simulated desk's end of shift: a reply in hand lands before the day is scored; a stop drops it."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from email.message import EmailMessage
from zoneinfo import ZoneInfo

from bench.day.clock import SimClock
from bench.day.desk import Desk, Item, Shift, Team
from tests.waiting import until

T0 = datetime(2026, 11, 30, 9, tzinfo=UTC)


class SlowThread:
    """A Slack thread whose answer is in flight until the test lets it through."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.started: list[str] = []
        self.answered: list[str] = []

    async def answer(self, thread: tuple[str, str], text: str, agent: str) -> None:
        self.started.append(text)
        await self.gate.wait()
        self.answered.append(text)


async def _never(message: EmailMessage, text: str) -> None:
    raise AssertionError("no mail answer in these tests")


def desk_with_one_item(thread: SlowThread) -> Desk:
    """One agent on duty all day, one Slack item waiting; the day runs a million times faster."""
    team = Team("general", (Shift(0, 24, 1),))
    team.add(Item(1, T0, "k1", "con_1", "cus_1", "Where is my parcel?", thread=("C1", "1.0")))
    clock = SimClock(start=T0, speed=1e6, origin=0.0, real=lambda: 0.0)
    return Desk(clock=clock, zone=ZoneInfo("Europe/Berlin"), teams={"general": team}, secrets={},
                api="http://127.0.0.1:9", token="t", rng=random.Random(1), answer_text=str.upper,
                mail_answer=_never, in_thread=thread.answer)


async def test_finishing_the_shift_waits_for_the_reply_in_hand() -> None:
    thread = SlowThread()
    desk = desk_with_one_item(thread)
    await desk.start()
    try:
        await until(lambda: thread.started, "the agent never took the item", timeout=10)
        finishing = asyncio.create_task(desk.finish())
        await until(lambda: all(t.done() for t in desk._tasks), "the agents never went home", timeout=10)
        assert not finishing.done() and thread.answered == []
        thread.gate.set()
        await asyncio.wait_for(finishing, 10)
        assert thread.answered == ["WHERE IS MY PARCEL?"]
    finally:
        await desk.stop()


async def test_a_stop_drops_the_reply_in_hand() -> None:
    thread = SlowThread()
    desk = desk_with_one_item(thread)
    await desk.start()
    await until(lambda: thread.started, "the agent never took the item", timeout=10)
    await asyncio.wait_for(desk.stop(), 10)
    assert thread.answered == []
