"""The consumer-lag gauge: what the autoscaler sums over workers must count each partition once."""

from __future__ import annotations

from prometheus_client import REGISTRY

from processors.metrics import report_lag


def _lag(topic: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value("sb_consumer_lag", {"topic": topic, "partition": str(partition)})


def test_lag_is_set_per_partition_held() -> None:
    held = report_lag({("lagtest.a", 0): 7, ("lagtest.a", 1): 0}, set())
    assert held == {("lagtest.a", 0), ("lagtest.a", 1)}
    assert _lag("lagtest.a", 0) == 7
    assert _lag("lagtest.a", 1) == 0
    report_lag({}, held)


def test_a_partition_that_moved_away_leaves_the_metrics() -> None:
    held = report_lag({("lagtest.b", 0): 5, ("lagtest.b", 1): 9}, set())
    # a rebalance gave partition 1 to another worker: its stale 9 must not be reported here
    held = report_lag({("lagtest.b", 0): 2}, held)
    assert _lag("lagtest.b", 0) == 2
    assert _lag("lagtest.b", 1) is None
    report_lag({}, held)
    assert _lag("lagtest.b", 0) is None


def test_a_committed_offset_past_the_end_reads_as_no_lag() -> None:
    held = report_lag({("lagtest.c", 0): -3}, set())
    assert _lag("lagtest.c", 0) == 0
    report_lag({}, held)
