"""The simulated day's clock: real seconds mapped onto a compressed day, shared with the router.

The router reads the wall clock (`datetime.now(UTC)`); its processes are started under
libfaketime with the same start and speed-up, so the SLA watch, due times and lifecycle
timers of the real code run on the simulated day. The monotonic clock is left real:
timeouts, Kafka sessions and retries keep their real lengths.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

__all__ = ["LIBFAKETIME", "SimClock"]

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")


@dataclass(frozen=True)
class SimClock:
    """`start` is the simulated moment at real time `origin`; it runs `speed` times faster."""

    start: datetime
    speed: float
    origin: float
    real: Callable[[], float] = field(default=time.time, compare=False)

    def now(self) -> datetime:
        """The simulated moment now."""
        return self.at(self.real())

    def at(self, real: float) -> datetime:
        """The simulated moment at a real epoch time."""
        return self.start + timedelta(seconds=(real - self.origin) * self.speed)

    def real_at(self, moment: datetime) -> float:
        """The real epoch time at which the simulated day reaches `moment`."""
        return self.origin + (moment - self.start).total_seconds() / self.speed

    def real_seconds(self, span: timedelta) -> float:
        """How long a simulated span lasts in real seconds."""
        return span.total_seconds() / self.speed

    def faketime_env(self) -> dict[str, str]:
        """Environment that puts a process started right now on this clock (libfaketime)."""
        moment = self.now().astimezone(UTC)
        return {
            "LD_PRELOAD": str(LIBFAKETIME),
            "FAKETIME": f"@{moment:%Y-%m-%d %H:%M:%S} x{self.speed:g}",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "FAKETIME_NO_CACHE": "1",
            "TZ": "UTC",
        }
