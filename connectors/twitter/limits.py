"""One account's shared call budget per endpoint, and its money budget per UTC day.

`Pacer` starts from the settings' limit table and believes X's headers once it has seen
them: `x-rate-limit-remaining/-reset` for the 15-minute window, `x-user-limit-24hour-*`
for the day's. A call that would go over waits for the reset when that is within
`max_wait` seconds; a longer wait is an `XUnavailable` naming when to come back. Every
caller of one account goes through the one pacer, so waits are scheduled once, here,
and not by tweepy (whose own wait-and-retry crashes under user auth).

`shared_account` gives every part of one account in a process (poller, sender) the same
pacer and budget. `Budget` adds up what the calls cost (`sb_x_api_cost_usd_total`); once a day's spend
reaches the setting, optional calls (polling) stop and sends are refused with the reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from prometheus_client import Counter, Gauge

from connectors.twitter.errors import XRefused, XUnavailable
from connectors.twitter.settings import DEFAULT_LIMITS, Limit, XSettings

__all__ = ["CAPPED", "COST", "Account", "Budget", "Pacer", "shared_account"]

COST = Counter("sb_x_api_cost_usd_total", "US dollars spent on X's pay-per-use API", ["account", "call"])
SPENT_TODAY = Gauge("sb_x_api_spent_today_usd", "US dollars spent on X's API since UTC midnight", ["account"])
CAPPED = Counter("sb_x_usage_capped_total", "X answers saying the plan's usage cap is reached",
                 ["account", "endpoint"])
WAITS = Counter("sb_x_rate_limit_waits_total", "Waits for an X rate-limit window to reset", ["endpoint"])
_DAY = 86_400.0


@dataclass
class _Window:
    limit: Limit
    used: int = 0
    started: float = 0.0
    # what X's headers said last; None until a header was seen
    remaining: int | None = None
    reset: float = 0.0
    day_remaining: int | None = None
    day_reset: float = 0.0


class Pacer:
    """Schedules one account's calls per endpoint inside its limits."""

    def __init__(self, limits: Mapping[str, Limit], *, max_wait: float = 900.0,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._limits = dict(limits)
        self._windows: dict[str, _Window] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._max_wait = max_wait
        self._clock = clock
        self._sleep = sleep

    def _window(self, endpoint: str) -> _Window:
        if endpoint not in self._windows:
            # an endpoint the table leaves out keeps X's published limit
            limit = self._limits.get(endpoint) or DEFAULT_LIMITS.get(endpoint) or Limit(calls=1_000_000)
            self._windows[endpoint] = _Window(limit)
        return self._windows[endpoint]

    def wait_for(self, endpoint: str) -> float:
        """Seconds until `endpoint` may be called once more (0: now)."""
        w, now = self._window(endpoint), self._clock()
        if now - w.started >= w.limit.window_seconds:
            w.used, w.started = 0, now
        waits = [0.0]
        if w.used >= w.limit.calls:
            waits.append(w.started + w.limit.window_seconds - now)
        if w.remaining is not None and w.remaining <= 0 and w.reset > now:
            waits.append(w.reset - now)
        if w.day_remaining is not None and w.day_remaining <= 0 and w.day_reset > now:
            waits.append(w.day_reset - now)
        return max(waits)

    async def ready(self, endpoint: str) -> None:
        """Wait until a call to `endpoint` is inside its limits and count it; XUnavailable if that is far."""
        lock = self._locks.setdefault(endpoint, asyncio.Lock())
        async with lock:
            wait = self.wait_for(endpoint)
            if wait > self._max_wait:
                raise XUnavailable(f"X's {endpoint} limit is reached; it resets in {wait:.0f}s",
                                   status=429, retry_after=wait)
            if wait > 0:
                WAITS.labels(endpoint).inc()
                await self._sleep(wait)
                self.wait_for(endpoint)  # a new window starts counting from here
            w = self._window(endpoint)
            w.used += 1
            if w.remaining is not None:
                w.remaining -= 1

    def observe(self, endpoint: str, headers: Mapping[str, str]) -> None:
        """Believe X's rate-limit headers for `endpoint` from now on."""
        w = self._window(endpoint)
        remaining, reset = _int(headers, "x-rate-limit-remaining"), _int(headers, "x-rate-limit-reset")
        if remaining is not None and reset is not None:
            w.remaining, w.reset = remaining, float(reset)
        day = _int(headers, "x-user-limit-24hour-remaining")
        day_reset = _int(headers, "x-user-limit-24hour-reset")
        if day is not None and day_reset is not None:
            w.day_remaining, w.day_reset = day, float(day_reset)

    def refused(self, endpoint: str, headers: Mapping[str, str]) -> float:
        """After a 429: note the window as spent and return seconds until X resets it."""
        self.observe(endpoint, headers)
        w, now = self._window(endpoint), self._clock()
        if w.remaining is None or w.remaining > 0:
            # a 429 without usable headers: X's smallest window is 15 minutes
            w.remaining, w.reset = 0, max(w.reset, now + w.limit.window_seconds)
        return max(self.wait_for(endpoint), 1.0)


class Budget:
    """What one account spent today, against its daily budget in US dollars."""

    def __init__(self, account: str, daily_usd: float, *, clock: Callable[[], float] = time.time) -> None:
        self.account = account
        self.daily_usd = daily_usd
        self._clock = clock
        self._day = -1
        self.spent = 0.0

    def _today(self) -> None:
        day = int(self._clock() // _DAY)
        if day != self._day:
            self._day, self.spent = day, 0.0

    @property
    def exhausted(self) -> bool:
        """Whether today's spend reached the budget: optional calls stop."""
        self._today()
        return self.spent >= self.daily_usd

    def check(self, call: str, cost: float) -> None:
        """Raise XRefused('budget') when `call` would take today's spend over the budget."""
        self._today()
        if self.spent + cost > self.daily_usd:
            raise XRefused(f"today's X budget of ${self.daily_usd:.2f} is spent (${self.spent:.3f}); "
                           f"{call} not made", code="budget")

    def spend(self, call: str, cost: float) -> None:
        """Count a call X made (and will bill)."""
        self._today()
        self.spent += cost
        COST.labels(self.account, call).inc(cost)
        SPENT_TODAY.labels(self.account).set(self.spent)


@dataclass(frozen=True, slots=True)
class Account:
    """One X account's call pacer and money budget, shared by everything that calls as it."""

    pacer: Pacer
    budget: Budget


_ACCOUNTS: dict[tuple[str, str], Account] = {}


def shared_account(settings: XSettings) -> Account:
    """The one pacer and budget of an account in this process: its poller and sender share them."""
    key = (settings.account_id, settings.base_url)
    if key not in _ACCOUNTS:
        _ACCOUNTS[key] = Account(Pacer(settings.limits, max_wait=settings.max_wait_seconds),
                                 Budget(settings.account_id, settings.daily_budget_usd))
    return _ACCOUNTS[key]


def _int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    return int(value) if value is not None and value.isascii() and value.isdigit() else None
