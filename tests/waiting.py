"""How tests wait: on a condition, with a deadline, re-checking every POLL_SECONDS.

No test sleeps for a fixed time to let something happen; every pause below is the
interval between two checks of a condition that has its own deadline.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

POLL_SECONDS = 0.05


async def until(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    """Wait for `check()` to return something truthy, and return it; fail with `what` at the deadline.

    `check` may be a coroutine function: each check is awaited.
    """
    deadline = time.monotonic() + timeout
    while not (found := await _answer(check())):
        assert time.monotonic() < deadline, what
        await asyncio.sleep(POLL_SECONDS)
    return found


async def _answer(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value
