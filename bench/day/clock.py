"""The simulated day's clock: real seconds mapped onto a compressed day, shared with the router.

The router reads the wall clock (`datetime.now(UTC)`); its processes are started under
libfaketime with the same start and speed-up, so the SLA watch, due times and lifecycle
timers of the real code run on the simulated day. The monotonic clock is left real:
timeouts, Kafka sessions and retries keep their real lengths, and so do the event loops'
waits (`realsleep`: libfaketime would shorten them by the speed-up and make every loop spin).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

__all__ = ["LIBFAKETIME", "REAL_WAITS", "SimClock"]

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
# the sitecustomize that gives a sped-up process's event loops their real-length waits
REAL_WAITS = Path(__file__).with_name("realsleep")


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

    def faketime_env(self, pythonpath: str = "") -> dict[str, str]:
        """Environment that puts a Python process started right now on this clock (libfaketime).

        `pythonpath` is the child's own; the waits' fix goes before it.
        """
        moment = self.now().astimezone(UTC)
        return {
            "PYTHONPATH": os.pathsep.join(p for p in (str(REAL_WAITS), pythonpath) if p),
            "LD_PRELOAD": str(LIBFAKETIME),
            "FAKETIME": f"@{moment:%Y-%m-%d %H:%M:%S} x{self.speed:g}",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "FAKETIME_NO_CACHE": "1",
            "TZ": "UTC",
        }
