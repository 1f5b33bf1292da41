"""The circuit breaker's states, driven by a hand-moved clock."""

from __future__ import annotations

import pytest

from processors.dispatch.breaker import Breaker, Breakers, State


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_stays_closed_below_the_threshold_and_a_success_resets_the_count(clock: Clock) -> None:
    b = Breaker(threshold=3, cool_down=10, clock=clock)
    b.failure("500")
    b.failure("500")
    assert b.state is State.CLOSED and b.allows()
    b.success()
    b.failure("500")
    b.failure("500")
    assert b.state is State.CLOSED and b.failures == 2


def test_opens_after_n_consecutive_failures_and_refuses_until_the_cool_down(clock: Clock) -> None:
    b = Breaker(threshold=3, cool_down=10, clock=clock)
    for _ in range(3):
        assert b.allows()
        b.failure("HTTP 503")
    assert b.state is State.OPEN
    assert not b.allows()
    clock.now += 9.9
    assert not b.allows()
    assert b.describe() == "circuit open after 3 consecutive failures (last: HTTP 503)"


def test_half_open_lets_exactly_one_trial_through(clock: Clock) -> None:
    b = Breaker(threshold=1, cool_down=10, clock=clock)
    b.failure()
    clock.now += 10
    assert b.state is State.HALF_OPEN
    assert b.allows()
    assert not b.allows()  # the trial is in flight
    assert b.state is State.HALF_OPEN


def test_a_successful_trial_closes(clock: Clock) -> None:
    b = Breaker(threshold=2, cool_down=10, clock=clock)
    b.failure()
    b.failure()
    clock.now += 10
    assert b.allows()
    b.success()
    assert b.state is State.CLOSED and b.failures == 0 and b.allows() and b.allows()


def test_a_failed_trial_reopens_for_a_whole_cool_down(clock: Clock) -> None:
    b = Breaker(threshold=2, cool_down=10, clock=clock)
    b.failure()
    b.failure()
    clock.now += 10
    assert b.allows()
    clock.now += 1
    b.failure("still down")
    assert b.state is State.OPEN
    clock.now += 9.5
    assert not b.allows()
    clock.now += 0.5
    assert b.allows()


def test_a_trial_that_never_reports_does_not_keep_it_shut(clock: Clock) -> None:
    b = Breaker(threshold=1, cool_down=10, clock=clock)
    b.failure()
    clock.now += 10
    assert b.allows()  # the trial's caller is cancelled and never reports
    clock.now += 10
    assert b.allows()


def test_one_breaker_per_name(clock: Clock) -> None:
    breakers = Breakers(threshold=1, cool_down=5, clock=clock)
    breakers["a"].failure()
    assert breakers["a"] is breakers["a"]
    assert breakers.states() == {"a": State.OPEN}
    assert breakers["b"].allows()


def test_refuses_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="threshold"):
        Breaker(threshold=0)
