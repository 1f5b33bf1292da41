"""One account's parts share one pacer and budget; the budget counts per UTC day."""

from __future__ import annotations

import pytest

from connectors.twitter import SPEC
from connectors.twitter.errors import XRefused
from connectors.twitter.limits import Budget
from connectors.twitter.settings import XSettings


def test_the_poller_and_the_sender_of_one_account_share_its_budget() -> None:
    settings = XSettings(account_id="42", base_url="http://127.0.0.1:1")
    other = XSettings(account_id="43", base_url="http://127.0.0.1:1")
    assert SPEC.inbound is not None and SPEC.outbound is not None
    poller, sender = SPEC.inbound(settings, _NoCursors()), SPEC.outbound(settings)
    assert poller.api.budget is sender.api.budget and poller.api.pacer is sender.api.pacer
    assert SPEC.outbound(other).api.budget is not sender.api.budget


def test_a_budget_refuses_past_its_day_and_starts_again_the_next() -> None:
    now = [86_400.0 * 20_000 + 10]
    budget = Budget("42", 0.02, clock=lambda: now[0])
    budget.spend("post", 0.015)
    with pytest.raises(XRefused, match="budget"):
        budget.check("post", 0.015)
    now[0] += 86_400
    budget.check("post", 0.015)
    assert not budget.exhausted


class _NoCursors:
    async def load(self, key: str) -> str | None:
        return None

    async def save(self, key: str, value: str) -> None:
        return None
