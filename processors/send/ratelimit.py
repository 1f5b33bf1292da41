"""Per-channel send rates: a token bucket each, so a burst never trips a provider's limit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

__all__ = ["Bucket", "RateLimits"]


class Bucket:
    """`rate` sends per second on average, bursts of up to `burst`; waiters queue in order."""

    def __init__(self, rate: float, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._tokens = self.burst
        self._clock = clock
        self._at = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def wait_for_one(self) -> float:
        """Take a token if there is one (0.0), else how long until there will be."""
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate

    async def acquire(self) -> None:
        """Wait for a token; the lock keeps the order of arrival."""
        async with self._lock:
            delay = self.wait_for_one()
            while delay > 0:
                # the bucket refills with time, not with an event: sleeping is the wait
                await asyncio.sleep(delay)
                delay = self.wait_for_one()


class RateLimits:
    """One bucket per channel that has a configured rate; other channels are not limited."""

    def __init__(self, rates: Mapping[str, float]) -> None:
        self._buckets = {channel: Bucket(rate) for channel, rate in rates.items() if rate > 0}

    async def acquire(self, channel: str) -> None:
        """Wait until `channel` may send once more."""
        bucket = self._buckets.get(channel)
        if bucket is not None:
            await bucket.acquire()
