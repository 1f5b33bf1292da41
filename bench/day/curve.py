"""A support day's arrival curve: morning peak, lunch dip, afternoon hump, after-hours trickle."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = ["HOURLY", "arrivals", "expected_per_hour"]

# relative arrival rate per local hour 0..23 (a B2C support desk in one time zone)
HOURLY: tuple[float, ...] = (
    0.15,
    0.1,
    0.1,
    0.1,
    0.1,
    0.15,
    0.3,
    0.6,  # night, then the day begins
    1.4,
    2.0,
    2.2,
    1.9,  # the morning peak
    1.0,
    1.1,  # lunch
    1.7,
    1.8,
    1.5,
    1.1,  # the afternoon
    0.6,
    0.45,
    0.35,
    0.3,
    0.2,
    0.15,  # after hours
)


def expected_per_hour(per_day: float) -> list[float]:
    """Expected arrivals in each local hour of a day with `per_day` arrivals on average."""
    total = sum(HOURLY)
    return [per_day * w / total for w in HOURLY]


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method; means here stay small (tens)
    limit, k, p = pow(2.718281828459045, -mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def arrivals(
    rng: random.Random, day: datetime, per_day: float, zone: ZoneInfo, hours: range = range(24)
) -> list[datetime]:
    """Arrival moments (sorted) on the local calendar day of `day`, in the given local hours."""
    midnight = day.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    rates = expected_per_hour(per_day)
    found: list[datetime] = []
    for hour in hours:
        begin = midnight + timedelta(hours=hour)
        found += [begin + timedelta(seconds=rng.uniform(0, 3600)) for _ in range(_poisson(rng, rates[hour]))]
    return sorted(found)
