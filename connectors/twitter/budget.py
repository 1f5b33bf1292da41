"""One account's spend on X per UTC day, shared by every process, and the day's one notice.

Each call reserves its estimated price before it is made, in one Lua step against the
day's total in Redis (so two workers cannot both take the last dollar), and settles the
difference after (a refused call costs nothing). An optional call (polling, an
acknowledgement, a status update, a follow-up, a public note) is refused once the day's
spend would pass `daily_usd`; an agent's reply is not optional and goes on, counted.
The first sender to find the day spent claims the day's notice (`notice_due`), which
its receipt carries to the agents' tools: once per account per day, whichever worker.
`sb_x_api_cost_usd_total` counts what this process spent; `sb_x_api_spent_today_usd`
shows the account's shared total.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import Counter, Gauge

from connectors.twitter.errors import XRefused
from connectors.twitter.state import Shared

__all__ = ["CAPPED", "COST", "SPENT_TODAY", "Budget"]

COST = Counter("sb_x_api_cost_usd_total", "US dollars spent on X's pay-per-use API", ["account", "call"])
SPENT_TODAY = Gauge("sb_x_api_spent_today_usd", "US dollars spent on X's API since UTC midnight", ["account"])
DAILY = Gauge("sb_x_api_daily_budget_usd", "The daily budget of an X account in US dollars", ["account"])
CAPPED = Counter("sb_x_usage_capped_total", "X answers saying the plan's usage cap is reached",
                 ["account", "endpoint"])
_DAY = 86_400
# amounts are kept in micro-dollars: integers add up exactly across processes
_MICRO = 1_000_000

# reserve ARGV[1] on the day's total unless it would pass ARGV[2] and ARGV[3] is '0' (optional);
# returns {reserved 1/0, the total after}
_RESERVE = """
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
local cost, budget, forced = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1'
if not forced and spent + cost > budget then return {0, spent} end
spent = redis.call('INCRBY', KEYS[1], cost)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return {1, spent}
"""


class Budget:
    """What one account spent today, against its daily budget in US dollars."""

    def __init__(self, shared: Shared, account: str, daily_usd: float) -> None:
        self.account = account
        self.daily_usd = daily_usd
        self._shared = shared
        DAILY.labels(account).set(daily_usd)

    def _day(self) -> int:
        return int(self._shared.clock() // _DAY)

    def _key(self, what: str, day: int) -> str:
        return f"{self._shared.prefix}:{what}:{day}"

    def resets(self) -> datetime:
        """When today's budget starts again: the next UTC midnight."""
        return datetime.fromtimestamp((self._day() + 1) * _DAY, UTC)

    async def spent(self) -> float:
        """Today's spend so far, by every process of this account."""
        key = self._key("spent", self._day())
        raw = await self._shared.run("budget", lambda: self._shared.redis.get(key))
        total = int(raw or 0) / _MICRO
        SPENT_TODAY.labels(self.account).set(total)
        return total

    async def exhausted(self) -> bool:
        """Whether today's spend reached the budget: optional calls stop."""
        return await self.spent() >= self.daily_usd

    async def reserve(self, call: str, cost: float, *, optional: bool) -> int:
        """Set `cost` aside for `call`; XRefused('budget') when an optional call would pass the budget."""
        micro, day = round(cost * _MICRO), self._day()
        key = self._key("spent", day)
        ok, total = await self._shared.run("budget", lambda: self._shared.redis.eval(
            _RESERVE, 1, key, micro, round(self.daily_usd * _MICRO), int(not optional), 2 * _DAY))
        SPENT_TODAY.labels(self.account).set(int(total) / _MICRO)
        if not int(ok):
            spent = int(total) / _MICRO
            raise XRefused(f"today's X budget of ${self.daily_usd:.2f} is spent (${spent:.3f}); "
                           f"{call} not made, the budget starts again at {self.resets():%H:%M} UTC",
                           code="budget")
        return day

    async def settle(self, call: str, reserved: float, cost: float, day: int) -> None:
        """Count what a reserved call cost (0 when it was not made) in place of its reservation."""
        delta = round(cost * _MICRO) - round(reserved * _MICRO)
        if delta:
            key = self._key("spent", day)
            await self._shared.run("budget", lambda: self._shared.redis.incrby(key, delta))
        if cost:
            COST.labels(self.account, call).inc(cost)

    async def notice_due(self, *, refused: bool = False) -> bool:
        """True once per UTC day, to the first caller finding the budget spent or `refused` by it."""
        if not refused and not await self.exhausted():
            return False
        key = self._key("notice", self._day())
        return bool(await self._shared.run("budget", lambda: self._shared.redis.set(key, 1, nx=True,
                                                                                     ex=2 * _DAY)))

    def notice(self) -> str:
        """What the agents' tools are told once the day's budget is spent."""
        return (f"X's daily budget of ${self.daily_usd:.2f} is spent for today: acknowledgements, "
                f"status updates, follow-ups and polling on X stop until {self.resets():%Y-%m-%d %H:%M} UTC; "
                "agents' replies still go out")
