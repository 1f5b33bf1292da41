"""Real-length waits for a process on the simulated day (libfaketime with a speed-up).

libfaketime divides every `epoll_wait` timeout by its speed-up, even with the monotonic
clock left real. asyncio sets each wait from the monotonic clock, so at x240 a loop with
a timer 100 ms away woke after 0 ms, found nothing due and waited again: every event
loop of the router (its own and Faust's consumer thread's) spun at a full core. The
simulated day's router took both cores, its stages fell behind the traffic, and the
day ran ~80 s past its end. Multiplying the timeout back gives the wait asyncio asked for.

Loaded through PYTHONPATH (`bench.day.run` starts the router with this directory first);
it does nothing unless FAKETIME names a rate (x240, x0.5) and the monotonic clock stays real.
"""

from __future__ import annotations

import math
import os
import re
import selectors
from typing import Any

# epoll takes milliseconds as a C int: larger waits are cut (a loop just wakes and waits again)
_LONGEST_SECONDS = 2_000_000.0


def _speed_up() -> float:
    found = re.search(r"\sx([0-9.]+)$", os.environ.get("FAKETIME", ""))
    if not found or os.environ.get("FAKETIME_DONT_FAKE_MONOTONIC") != "1":
        return 1.0
    return float(found.group(1))


def _install(speed: float) -> None:
    original = selectors.EpollSelector.select

    def select(self: Any, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout > 0:
            # whole milliseconds before the speed-up: libfaketime's division then gives them back
            # exactly, never a 0 ms wait for the last fraction of one
            timeout = min(math.ceil(timeout * 1000) * speed / 1000, _LONGEST_SECONDS)
        return original(self, timeout)

    selectors.EpollSelector.select = select  # type: ignore[method-assign]


_RATE = _speed_up()
if _RATE not in (0.0, 1.0):  # a slow-down (x0.5) would make every wait too long instead
    _install(_RATE)
