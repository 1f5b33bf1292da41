"""One account's call budget per endpoint, shared by every process that calls X as it.

`Pacer` starts from the settings' limit table and believes X's headers once it has seen
them: `x-rate-limit-remaining/-reset` for the 15-minute window, `x-user-limit-24hour-*`
and `x-app-limit-24hour-*` for the day's. Its state is one Redis hash per endpoint,
counted and read by one Lua step with the caller's clock, so N workers share one
window instead of each spending a whole one. A call that would go over waits for the
reset when that is within `max_wait` seconds; a longer wait is an `XUnavailable` naming
when to come back (the sender turns it into a deferred reply). Every caller of one
account goes through it, so waits are scheduled here and not by tweepy (whose own
wait-and-retry crashes under user auth).

`shared_account` gives every part of one account in a process (poller, sender) the same
pacer and budget (budget.py), on the deployment's Redis.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from prometheus_client import Counter
from redis.typing import EncodableT

from connectors.twitter.budget import CAPPED, COST, Budget
from connectors.twitter.errors import XUnavailable
from connectors.twitter.settings import DEFAULT_LIMITS, Limit, XSettings
from connectors.twitter.state import Shared, connect

__all__ = ["CAPPED", "COST", "Account", "Budget", "Pacer", "account_for", "shared_account"]

WAITS = Counter("sb_x_rate_limit_waits_total", "Waits for an X rate-limit window to reset", ["endpoint"])
_KEEP = 2 * 86_400

# one endpoint's window at ARGV[1] (now): with ARGV[4] = 1 a call is counted when inside every
# limit (our table's window and day, ARGV[6] calls a day or 0; X's headers); returns the
# seconds to wait (0: counted or free now), as a string to keep fractions
_ACQUIRE = """
local h = KEYS[1]
local now, calls, window, count = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == '1'
local v = redis.call('HMGET', h, 'started', 'used', 'remaining', 'reset', 'day_remaining', 'day_reset',
                     'day_started', 'day_used')
local started, used = tonumber(v[1]) or 0, tonumber(v[2]) or 0
if now - started >= window then started, used = now, 0 end
local per_day, day_started, day_used = tonumber(ARGV[6]), tonumber(v[7]) or 0, tonumber(v[8]) or 0
if now - day_started >= 86400 then day_started, day_used = now, 0 end
local wait = 0
if used >= calls then wait = started + window - now end
if per_day > 0 and day_used >= per_day then wait = math.max(wait, day_started + 86400 - now) end
local rem, reset = tonumber(v[3]), tonumber(v[4]) or 0
if rem and rem <= 0 and reset > now then wait = math.max(wait, reset - now) end
local drem, dreset = tonumber(v[5]), tonumber(v[6]) or 0
if drem and drem <= 0 and dreset > now then wait = math.max(wait, dreset - now) end
if wait <= 0 and count then
  used, day_used = used + 1, day_used + 1
  if rem then redis.call('HSET', h, 'remaining', rem - 1) end
  if drem then redis.call('HSET', h, 'day_remaining', drem - 1) end
end
redis.call('HSET', h, 'started', tostring(started), 'used', used, 'day_started', tostring(day_started),
           'day_used', day_used)
redis.call('EXPIRE', h, tonumber(ARGV[5]))
return tostring(wait)
"""


class Pacer:
    """Schedules one account's calls per endpoint inside its limits, across processes."""

    def __init__(self, shared: Shared, limits: Mapping[str, Limit], *, max_wait: float = 900.0) -> None:
        self._shared = shared
        self._limits = dict(limits)
        self._max_wait = max_wait

    def _limit(self, endpoint: str) -> Limit:
        # an endpoint the table leaves out keeps X's published limit
        return self._limits.get(endpoint) or DEFAULT_LIMITS.get(endpoint) or Limit(calls=1_000_000)

    def _key(self, endpoint: str) -> str:
        return f"{self._shared.prefix}:rate:{endpoint}"

    async def _step(self, endpoint: str, *, count: bool) -> float:
        limit, now = self._limit(endpoint), self._shared.clock()
        raw = await self._shared.run("pacer", lambda: self._shared.redis.eval(
            _ACQUIRE, 1, self._key(endpoint), now, limit.calls, limit.window_seconds, int(count), _KEEP,
            limit.per_day or 0))
        return float(raw)

    async def wait_for(self, endpoint: str) -> float:
        """Seconds until `endpoint` may be called once more (0: now); counts nothing."""
        return await self._step(endpoint, count=False)

    async def ready(self, endpoint: str) -> None:
        """Wait until a call to `endpoint` is inside its limits and count it; XUnavailable if that is far."""
        while (wait := await self._step(endpoint, count=True)) > 0:
            if wait > self._max_wait:
                raise XUnavailable(f"X's {endpoint} limit is reached; it resets in {wait:.0f}s",
                                   status=429, retry_after=wait)
            WAITS.labels(endpoint).inc()
            await self._shared.sleep(wait)

    async def observe(self, endpoint: str, headers: Mapping[str, str]) -> None:
        """Believe X's rate-limit headers for `endpoint` from now on."""
        fields: dict[EncodableT, EncodableT] = {}
        remaining, reset = _int(headers, "x-rate-limit-remaining"), _int(headers, "x-rate-limit-reset")
        if remaining is not None and reset is not None:
            fields |= {"remaining": remaining, "reset": reset}
        # the user's and the app's day: the one with fewer calls left binds
        days = [(left, at) for who in ("user", "app")
                if (left := _int(headers, f"x-{who}-limit-24hour-remaining")) is not None
                and (at := _int(headers, f"x-{who}-limit-24hour-reset")) is not None]
        if days:
            left, at = min(days)
            fields |= {"day_remaining": left, "day_reset": at}
        if fields:
            key = self._key(endpoint)
            await self._shared.run("pacer", lambda: self._shared.redis.hset(key, mapping=fields))

    async def refused(self, endpoint: str, headers: Mapping[str, str]) -> float:
        """After a 429: note the window as spent and return seconds until X resets it."""
        await self.observe(endpoint, headers)
        if await self.wait_for(endpoint) <= 0:
            # a 429 without usable headers: X's smallest window is 15 minutes
            until = int(self._shared.clock() + self._limit(endpoint).window_seconds)
            key = self._key(endpoint)
            await self._shared.run("pacer", lambda: self._shared.redis.hset(
                key, mapping={"remaining": 0, "reset": until}))
        return max(await self.wait_for(endpoint), 1.0)


@dataclass(frozen=True, slots=True)
class Account:
    """One X account's call pacer and money budget, shared by everything that calls as it."""

    pacer: Pacer
    budget: Budget


def account_for(settings: XSettings, *, clock: Callable[[], float] = time.time,
                sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> Account:
    """An account's pacer and budget on the deployment's Redis; no I/O until the first call."""
    shared = Shared(connect(settings.redis_url.get_secret_value()),
                    f"{settings.namespace}:x:{settings.account_id}", clock, sleep)
    return Account(Pacer(shared, settings.limits, max_wait=settings.max_wait_seconds),
                   Budget(shared, settings.account_id, settings.daily_budget_usd))


_ACCOUNTS: dict[tuple[str, str, str, str], Account] = {}


def shared_account(settings: XSettings) -> Account:
    """The one pacer and budget of an account in this process: its poller and sender share them."""
    key = (settings.account_id, settings.base_url, settings.redis_url.get_secret_value(), settings.namespace)
    if key not in _ACCOUNTS:
        _ACCOUNTS[key] = account_for(settings)
    return _ACCOUNTS[key]


def _int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    return int(value) if value is not None and value.isascii() and value.isdigit() else None
