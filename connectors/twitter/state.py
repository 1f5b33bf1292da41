"""Where one X account's shared state lives: Redis, reached patiently.

The pacer and the budget of an account are shared by every process that calls X as it
(the edge's poller, every worker's sender), so they live in Redis under the deployment's
namespace, changed only by Lua scripts (one atomic step each). While Redis is away a call
to X does not go out blind: it pauses and tries Redis again, with backoff, up to a bound;
past it the call is not made (`XUnavailable`, nothing sent).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from connectors.twitter.errors import XUnavailable

__all__ = ["Shared", "connect"]

log = logging.getLogger(__name__)
T = TypeVar("T")
PAUSES = Counter("sb_x_state_pauses_total", "X calls paused because Redis (the shared pacer and budget) "
                 "was away", ["what"])


def connect(url: str) -> Redis:
    """A Redis client; no I/O until the first command."""
    return Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0, health_check_interval=30)


@dataclass(frozen=True, slots=True)
class Shared:
    """One account's Redis, its key prefix, the clock and the sleep every wait goes through."""

    redis: Redis
    prefix: str
    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]
    # how long a call waits for Redis to come back before it is not made
    patience: float = 60.0

    async def run(self, what: str, step: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis step; while Redis is away pause and try again, up to `patience`."""
        start, backoff = self.clock(), 0.2
        while True:
            try:
                return await step()
            except (RedisError, OSError, TimeoutError) as e:
                waited = self.clock() - start
                if waited >= self.patience:
                    raise XUnavailable(f"the shared X {what} (Redis) is away: {e!r}; "
                                       "nothing was sent") from e
                PAUSES.labels(what).inc()
                log.warning("x shared state away; pausing", extra={"what": what, "error": repr(e)})
                await self.sleep(min(backoff, self.patience - waited))
                backoff = min(backoff * 2, 5.0)
