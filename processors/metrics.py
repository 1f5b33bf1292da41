"""Prometheus metrics every stage reports, labelled by stage and channel."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as Tallies
from collections.abc import Mapping, Sequence

from prometheus_client import Counter, Gauge, Histogram

from processors import compiled

__all__ = [
    "BATCH_SIZE",
    "CONSUMER_LAG",
    "DEADLETTERED",
    "DEDUPLICATED",
    "MESSAGES_IN",
    "MESSAGES_OUT",
    "REDIS_ROUNDTRIPS",
    "STAGE_LATENCY",
    "STAGE_RETRIES",
    "UNREACHABLE",
    "Tally",
    "observe_all",
    "report_lag",
]

STAGE_RETRIES = Counter("sb_stage_retries_total", "Batches or ticks run again after a failure",
                        ["stage", "error"])
MESSAGES_IN = Counter("sb_messages_in_total", "Messages a stage took in", ["stage", "channel"])
MESSAGES_OUT = Counter("sb_messages_out_total", "Messages a stage passed on", ["stage", "channel"])
DEDUPLICATED = Counter(
    "sb_messages_deduplicated_total", "Repeats dropped by dedupe", ["stage", "channel"]
)
DEADLETTERED = Counter(
    "sb_messages_deadlettered_total", "Messages set aside to the dead-letter topic",
    ["stage", "channel"],
)
STAGE_LATENCY = Histogram(
    "sb_stage_latency_seconds",
    "Time from a message's receipt to the end of a stage",
    ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BATCH_SIZE = Histogram(
    "sb_batch_size", "Events per stream batch", ["stage"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
)
REDIS_ROUNDTRIPS = Counter("sb_redis_roundtrips_total", "Redis round trips", ["stage"])
UNREACHABLE = Counter(
    "sb_acknowledge_unreachable_total",
    "Acknowledgements, status updates and follow-ups not planned: the channel cannot reach the customer",
    ["kind", "channel", "identity"])
CONSUMER_LAG = Gauge(
    "sb_consumer_lag", "Records between the committed offset and the end", ["topic", "partition"]
)
COMPILED = Gauge("sb_compiled_modules",
                 "Decision modules this process runs compiled to C (decision 0023); 0: pure Python")
# read when scraped: by then the process has imported what it runs
COMPILED.set_function(lambda: len(compiled.loaded()))


class Tally:
    """One batch's per-channel counts of a stage, reported to Prometheus once per batch."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.seen: Tallies[str] = Tallies()
        self.passed: Tallies[str] = Tallies()
        self.dropped: Tallies[str] = Tallies()

    def report(self) -> None:
        """Add the batch's counts to the stage's counters."""
        for counter, counts in ((MESSAGES_IN, self.seen), (MESSAGES_OUT, self.passed),
                                (DEDUPLICATED, self.dropped)):
            for channel, n in counts.items():
                counter.labels(self.stage, channel).inc(n)


def observe_all(histogram: Histogram, amounts: Sequence[float]) -> None:
    """Observe a batch's amounts on one labelled histogram: each bucket and the sum added to once.

    `observe` takes a lock per bucket and per sum, and walks the buckets in Python: 2.5 µs
    a message. Its bucket is the first bound at or above the amount, as here.
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    if bounds is None:  # not prometheus_client's internals as we know them: the slow way
        for amount in amounts:
            histogram.observe(amount)
        return
    if not amounts:
        return
    counts = Tallies(bisect_left(bounds, amount) for amount in amounts)
    for i, n in counts.items():
        histogram._buckets[i].inc(n)
    histogram._sum.inc(sum(amounts))


def report_lag(lags: Mapping[tuple[str, int], int], before: set[tuple[str, int]]) -> set[tuple[str, int]]:
    """Set the lag of the partitions held now and drop those reported before but held no more.

    A partition that moved to another worker must leave this one's metrics: its last value
    would otherwise stay, and a sum over workers (what the autoscaler reads) would count it
    twice, stale, for as long as this worker runs.
    """
    for topic, partition in before - lags.keys():
        CONSUMER_LAG.remove(topic, str(partition))
    for (topic, partition), lag in lags.items():
        CONSUMER_LAG.labels(topic, str(partition)).set(max(0, lag))
    return set(lags)
