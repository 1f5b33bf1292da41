"""Delivering one item to one destination: retries, the breaker, then the fallback chain.

A destination gets attempts with exponential backoff and full jitter until its deadline
(no attempt starts after it; a receiver's Retry-After is honoured when it fits). It is
given up on at once when its breaker is open or it answers with a permanent error, and
then its `fallback` takes over, and that one's fallback after it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from processors.dispatch.breaker import Breakers
from processors.dispatch.tools import HandoffTarget
from processors.policy.model import Destination
from schemas.errors import PermanentError, SwitchboardError, TransientError
from schemas.handoff import Handoff

__all__ = ["Courier", "Outcome", "Retry", "backoff", "fallback_chain"]

log = logging.getLogger(__name__)
# a destination the policy does not describe (e.g. removed by a reload) keeps this deadline
DEFAULT_DEADLINE = Destination(name="", kind="webhook").deadline


def fallback_chain(name: str, destinations: Mapping[str, Destination]) -> tuple[str, ...]:
    """A destination, then its fallback, then that one's, stopping at a loop or an unknown name."""
    chain = [name]
    while (found := destinations.get(chain[-1])) is not None and found.fallback \
            and found.fallback not in chain:
        chain.append(found.fallback)
    return tuple(chain)


def backoff(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds before retry `attempt` (1 = the first retry): exponential, full jitter."""
    return rng.uniform(0.0, min(cap, base * 2 ** (attempt - 1)))


@dataclass(frozen=True, slots=True)
class Retry:
    """How retries are spaced, and how long one attempt may take at most."""

    base: float = 0.2
    cap: float = 5.0
    # a safety net around a tool's own timeout
    attempt_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one item for one intended destination."""

    intended: str
    actual: str
    delivered: bool
    attempts: int
    thread: str
    reason: str | None
    # passed over for want of a tool: not set up here, reported once when the policy took effect
    unserved: bool = False


@dataclass(frozen=True, slots=True)
class _Tried:
    ok: bool
    attempts: int
    thread: str = ""
    reason: str = ""
    unserved: bool = False


class Courier:
    """Carries items to destinations, one breaker per destination for the process's life."""

    def __init__(self, breakers: Breakers, retry: Retry | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 rng: random.Random | None = None) -> None:
        self.breakers = breakers
        self._retry = retry or Retry()
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()

    async def deliver(self, make: Callable[[str], Handoff], intended: str,
                      destinations: Mapping[str, Destination], tools: Mapping[str, HandoffTarget],
                      reached: Mapping[str, str]) -> Outcome:
        """Deliver to `intended`, else along its fallback chain; `reached` already has the item."""
        notes: list[str] = []
        attempts = 0
        unserved = False
        for name in fallback_chain(intended, destinations):
            if name in reached:
                note = "" if name == intended else f"; its fallback {name} already has it"
                return Outcome(intended, name, True, attempts, reached[name],
                               "; ".join(notes) + note if notes else None, unserved)
            handoff = make(name)
            config = destinations.get(name)
            tried = await self._one(handoff, config.deadline if config else DEFAULT_DEADLINE,
                                    tools.get(name))
            attempts += tried.attempts
            if tried.ok:
                reason = "; ".join(notes) + f"; delivered to its fallback {name}" if notes else None
                return Outcome(intended, name, True, attempts, tried.thread, reason, unserved)
            notes.append(f"{name}: {tried.reason}")
            unserved = unserved or (tried.unserved and name == intended)
            # a destination without a tool was reported once at start: no news per message
            log.log(logging.DEBUG if tried.unserved else logging.WARNING, "destination gave up", extra={
                "delivery_id": handoff.delivery_id, "conversation_id": handoff.card.conversation_id,
                "destination": name, "reason": tried.reason})
        return Outcome(intended, intended, False, attempts, "", "; ".join(notes) + "; no fallback left",
                       unserved)

    async def _one(self, handoff: Handoff, deadline: timedelta, tool: HandoffTarget | None) -> _Tried:
        """Attempts at one destination until it takes the item or is given up on."""
        name = handoff.destination
        if tool is None:
            return _Tried(False, 0, reason=f"no agents' tool is configured for destination {name!r}",
                          unserved=True)
        breaker = self.breakers[name]
        give_up_at = self._clock() + deadline.total_seconds()
        attempts = 0
        while True:
            if not breaker.allows():
                return _Tried(False, attempts, reason=breaker.describe())
            attempts += 1
            error = await self._attempt(tool, handoff)
            if isinstance(error, str):  # no error: the tool's thread reference
                breaker.success()
                return _Tried(True, attempts, thread=error)
            breaker.failure(error.reason)
            if not error.retriable:
                return _Tried(False, attempts, reason=error.reason)
            wait = backoff(attempts, self._retry.base, self._retry.cap, self._rng)
            if isinstance(error, TransientError) and error.retry_after:
                wait = max(wait, error.retry_after)
            if self._clock() + wait >= give_up_at:
                return _Tried(False, attempts, reason=(
                    f"{error.reason}; gave up after {attempts} attempt{'s' * (attempts > 1)}, "
                    f"deadline {deadline.total_seconds():g}s"))
            log.info("delivery retry", extra={"delivery_id": handoff.delivery_id, "destination": name,
                                              "attempt": attempts, "reason": error.reason})
            await self._sleep(wait)

    async def _attempt(self, tool: HandoffTarget, handoff: Handoff) -> str | SwitchboardError:
        """One call of the tool: its thread reference when it took the item, else the error."""
        try:
            async with asyncio.timeout(self._retry.attempt_timeout):
                return await tool.deliver(handoff)
        except TimeoutError:
            return TransientError(f"no answer within {self._retry.attempt_timeout:g}s")
        except SwitchboardError as e:
            return e
        except Exception as e:  # a tool's bug fails its destination visibly, never the batch
            log.exception("agents' tool failed unexpectedly", extra={
                "delivery_id": handoff.delivery_id, "destination": handoff.destination})
            return PermanentError(f"{type(e).__name__}: {e}")
