"""A batch observed at once reads on /metrics exactly as its amounts observed one by one."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from processors.metrics import observe_all

BOUNDS = (0.01, 0.1, 1.0, 10.0)
# on a bound, between bounds, below the first, above the last, zero, repeats
AMOUNTS = [0.01, 0.05, 0.1, 0.1000001, 0.0, 3.0, 10.0, 42.0, 0.005, 0.05, 1.0]


def _exposed(fill: str) -> bytes:
    registry = CollectorRegistry()
    histogram = Histogram("oa_seconds", "test", ["stage"], buckets=BOUNDS, registry=registry)
    child = histogram.labels("brain")
    if fill == "one by one":
        for amount in AMOUNTS:
            child.observe(amount)
    else:
        observe_all(child, AMOUNTS)
    # the created timestamps differ between the two registries; every count and the sum must not
    return b"\n".join(line for line in generate_latest(registry).splitlines() if b"_created" not in line)


def test_a_batch_reads_as_each_amount_observed_alone() -> None:
    alone = _exposed("one by one")
    assert b'oa_seconds_bucket{le="0.1",stage="brain"} 6.0' in alone  # the sample means what it says
    assert _exposed("at once") == alone


def test_an_empty_batch_observes_nothing() -> None:
    registry = CollectorRegistry()
    child = Histogram("oa_empty_seconds", "test", buckets=BOUNDS, registry=registry)
    observe_all(child, [])
    assert registry.get_sample_value("oa_empty_seconds_count") == 0.0


def test_a_histogram_without_the_known_internals_is_observed_one_by_one() -> None:
    class Plain:
        def __init__(self) -> None:
            self.seen: list[float] = []

        def observe(self, amount: float) -> None:
            self.seen.append(amount)

    plain = Plain()
    observe_all(plain, AMOUNTS)  # type: ignore[arg-type]
    assert plain.seen == AMOUNTS
