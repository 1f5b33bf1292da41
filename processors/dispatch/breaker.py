"""A circuit breaker per destination: stop knocking on a door that stays shut.

closed ──N consecutive failures──► open ──cool-down passed──► half-open
  ▲                                  ▲                            │ one trial goes through
  └────────── trial succeeds ────────┼────────────────────────────┤
                                     └─────── trial fails ────────┘

Pure and synchronous: the clock is injected, nothing sleeps. While the breaker is open,
`allows()` says no at once, so a caller moves on (to a fallback) instead of spending its
deadline on retries that cannot succeed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum

__all__ = ["Breaker", "Breakers", "State"]


class State(Enum):
    """Where a breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Breaker:
    """Opens after `threshold` consecutive failures; lets one trial through per `cool_down`."""

    def __init__(self, threshold: int = 5, cool_down: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if threshold < 1 or cool_down <= 0:
            raise ValueError("a breaker needs threshold >= 1 and a cool-down > 0")
        self.threshold = threshold
        self.cool_down = cool_down
        self._clock = clock
        self._state = State.CLOSED
        self._failures = 0
        self._since = 0.0  # when it opened, or when the current trial started
        self.last_failure: str | None = None

    @property
    def state(self) -> State:
        """The state now, with an elapsed cool-down counted as half-open."""
        if self._state is State.OPEN and self._clock() - self._since >= self.cool_down:
            return State.HALF_OPEN
        return self._state

    @property
    def failures(self) -> int:
        """Consecutive failures so far."""
        return self._failures

    def allows(self) -> bool:
        """Whether a call may go through now; in half-open, only the one trial does."""
        now = self._clock()
        if self._state is State.CLOSED:
            return True
        # a trial whose caller never reported back must not keep the breaker shut forever
        if now - self._since < self.cool_down:
            return False
        self._state = State.HALF_OPEN
        self._since = now
        return True

    def success(self) -> None:
        """A call went through: close and forget the failures."""
        self._state = State.CLOSED
        self._failures = 0
        self.last_failure = None

    def failure(self, reason: str | None = None) -> None:
        """A call failed: count it; open at the threshold, re-open after a failed trial."""
        self._failures += 1
        self.last_failure = reason
        if self._state is State.HALF_OPEN or self._failures >= self.threshold:
            self._state = State.OPEN
            self._since = self._clock()

    def describe(self) -> str:
        """Why calls are refused, in words for a receipt or a log."""
        last = f" (last: {self.last_failure})" if self.last_failure else ""
        return f"circuit open after {self._failures} consecutive failures{last}"


class Breakers:
    """One breaker per name, made on first use with the same settings."""

    def __init__(self, threshold: int = 5, cool_down: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = (threshold, cool_down, clock)
        self._by_name: dict[str, Breaker] = {}

    def __getitem__(self, name: str) -> Breaker:
        found = self._by_name.get(name)
        if found is None:
            found = self._by_name[name] = Breaker(*self._settings)
        return found

    def states(self) -> dict[str, State]:
        """Every known breaker's state, for diagnostics."""
        return {name: b.state for name, b in self._by_name.items()}
