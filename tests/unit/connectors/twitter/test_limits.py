"""One account's parts share one pacer and budget; while Redis is away they pause, then give up."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from connectors.twitter import SPEC
from connectors.twitter.errors import XUnavailable
from connectors.twitter.limits import account_for
from connectors.twitter.settings import XSettings
from connectors.twitter.state import Shared, connect


def test_the_poller_and_the_sender_of_one_account_share_its_budget() -> None:
    settings = XSettings(account_id="42", base_url="http://127.0.0.1:1")
    other = XSettings(account_id="43", base_url="http://127.0.0.1:1")
    assert SPEC.inbound is not None and SPEC.outbound is not None
    poller, sender = SPEC.inbound(settings, _NoCursors()), SPEC.outbound(settings)
    assert poller.api.budget is sender.api.budget and poller.api.pacer is sender.api.pacer
    assert SPEC.outbound(other).api.budget is not sender.api.budget


async def test_redis_away_pauses_and_tries_again_until_it_answers() -> None:
    now, slept = [1000.0], []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    answers: list[Exception | int] = [RedisConnectionError("down"), RedisConnectionError("down"), 7]

    async def step() -> int:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    shared = Shared(connect("redis://127.0.0.1:1/0"), "t", lambda: now[0], sleep, patience=60)
    assert await shared.run("pacer", step) == 7
    assert slept == [0.2, 0.4]


async def test_redis_away_past_the_patience_sends_nothing() -> None:
    now = [1000.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    settings = XSettings(account_id="42", base_url="http://127.0.0.1:1", redis_url="redis://127.0.0.1:1/0")
    account = account_for(settings, clock=lambda: now[0], sleep=sleep)
    with pytest.raises(XUnavailable, match="Redis"):
        await account.pacer.ready("post")
    assert now[0] >= 1060  # paused a minute, trying again, before giving up


class _NoCursors:
    async def load(self, key: str) -> str | None:
        return None

    async def save(self, key: str, value: str) -> None:
        return None
