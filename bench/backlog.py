"""Backlog drain: N messages waiting in `sb.inbound.v1` before any worker starts, then drained.

What an outage leaves behind. Reports the drain's throughput over time (one figure per
tenth of the backlog: flat means no slowdown as state and offsets grow), the stage groups'
lag, and each worker's resident memory at the first output, at its peak and at the end
(bounded means it does not grow with the backlog). `python -m bench.pipeline --backlog 100000`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from itertools import pairwise

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.pipeline import process
from bench.scaleout import Lag, cpu_seconds, free_port, rss_mib
from bench.topics import delete_run
from bench.workload import Workload
from router.kafka import ensure_topics
from router.settings import Settings, load
from schemas.topics import IDENTIFIED, INBOUND, ROUTED

__all__ = ["Drain", "drain"]

SAMPLE_SECONDS = 1.0
TENTHS = 10


@dataclass
class Drain:
    """What a backlog drain showed."""

    messages: int
    workers: int
    seconds: float
    per_second: int
    # msg/s over each tenth of the backlog, in order
    tenths: list[int] = field(default_factory=list)
    # each worker's RSS in MiB: at the first output, the peak, at the end
    rss_first: list[float] = field(default_factory=list)
    rss_peak: list[float] = field(default_factory=list)
    rss_end: list[float] = field(default_factory=list)
    lag_peak: dict[str, int] = field(default_factory=dict)
    # each worker's CPU µs a message, from the first output to the last (the chain's cost)
    cpu_us: list[float] = field(default_factory=list)

    @property
    def flatness(self) -> float:
        """The last tenth's rate over the median tenth's: near 1 is flat, well below is a slowdown."""
        ordered = sorted(self.tenths)
        return round(self.tenths[-1] / ordered[len(ordered) // 2], 2) if ordered and ordered[0] else 0.0


async def _fill(settings: Settings, topic: str, n: int) -> None:
    """Publish the backlog as fast as Kafka takes it."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=20,
                                max_batch_size=256 * 1024)
    await producer.start()
    work = Workload(uuid.uuid4().hex[:8])
    try:
        pending = []
        for _ in range(n):
            key, value = work.next()
            pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


class _Ends:
    """Reads how many records a fresh topic holds (the sum of its partitions' end offsets)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self._settings = settings
        self._tps = [TopicPartition(topic, p) for p in range(settings.kafka_partitions)]

    async def __aenter__(self) -> _Ends:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self._settings.kafka_bootstrap,
                                          enable_auto_commit=False)
        await self._consumer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._consumer.stop()

    async def count(self) -> int:
        """Records in the topic now."""
        return sum((await self._consumer.end_offsets(self._tps)).values())


async def drain(args: argparse.Namespace) -> Drain:
    """Fill a fresh deployment's inbound topic, start the workers, and watch them drain it."""
    run_id = uuid.uuid4().hex[:8]
    base = load()
    prefix = f"bench-{run_id}-"
    sb = base.model_copy(update={"topic_prefix": prefix, "app_id": f"bench-{run_id}"})
    n = args.backlog
    try:
        await ensure_topics(sb)
        await _fill(base, sb.topic(INBOUND), n)
        env = dict(os.environ) | {
            "SB_REPLY_TOKEN_KEY": os.environ.get("SB_REPLY_TOKEN_KEY", "bench-reply-token-key-not-secret"),
            "SB_TOPIC_PREFIX": prefix, "SB_APP_ID": f"bench-{run_id}", "SB_LOG_LEVEL": "WARNING",
            "SB_STAGES": json.dumps(["intake", "brain"])}
        groups = {f"bench-{run_id}.intake": sb.topic(INBOUND), f"bench-{run_id}.brain": sb.topic(IDENTIFIED)}
        lag = Lag(base.kafka_bootstrap, groups, base.kafka_partitions)
        with contextlib.ExitStack() as stack:
            procs = [stack.enter_context(process([sys.executable, "-m", "router.cli", "worker"],
                                                 env | {"SB_HTTP_PORT": str(free_port())}))
                     for _ in range(args.workers)]
            await lag.start()
            try:
                return await _watch(base, sb.topic(ROUTED), [p.pid for p in procs], lag, args)
            finally:
                await lag.stop()
    finally:
        await delete_run(base, prefix)


async def _watch(settings: Settings, routed: str, pids: list[int], lag: Lag,
                 args: argparse.Namespace) -> Drain:
    """Sample the routed count and the workers' memory until the backlog is out."""
    n = args.backlog
    samples: list[tuple[float, int]] = []
    rss_first: list[float] = []
    cpu_first: list[float] = []
    first = 0
    peak = [0.0] * len(pids)
    deadline = time.monotonic() + args.drain_timeout
    async with _Ends(settings, routed) as ends:
        while True:
            count = await ends.count()
            now = time.monotonic()
            rss = [rss_mib(pid) for pid in pids]
            peak = [max(a, b) for a, b in zip(peak, rss, strict=True)]
            if count and not rss_first:
                rss_first, cpu_first, first = rss, [cpu_seconds(p) for p in pids], count
            samples.append((now, count))
            if count >= n:
                break
            if now > deadline:
                raise SystemExit(f"backlog not drained in {args.drain_timeout} s: {count} of {n}")
            await asyncio.sleep(SAMPLE_SECONDS)
    edges = [_crossing(samples, max(1, n * k // TENTHS)) for k in range(TENTHS + 1)]
    seconds = edges[-1] - edges[0]
    tenths = [round((n // TENTHS) / max(1e-3, b - a)) for a, b in pairwise(edges)]
    return Drain(n, len(pids), round(seconds, 1), round(n / max(1e-3, seconds)), tenths,
                 rss_first=[round(r) for r in rss_first], rss_peak=[round(r) for r in peak],
                 rss_end=[round(rss_mib(p)) for p in pids], lag_peak=dict(lag.peak),
                 cpu_us=[round((cpu_seconds(p) - c) * 1e6 / max(1, n - first), 1)
                         for p, c in zip(pids, cpu_first, strict=True)])


def _crossing(samples: list[tuple[float, int]], edge: int) -> float:
    """When the output count reached `edge`, straight-line between the samples around it."""
    for (t0, c0), (t1, c1) in pairwise(samples):
        if c0 < edge <= c1:
            return t0 + (edge - c0) / (c1 - c0) * (t1 - t0)
    return samples[0][0] if samples[0][1] >= edge else samples[-1][0]


def report(result: Drain) -> None:
    """Print a drain's result and its JSON."""
    print(f"backlog {result.messages} with {result.workers} worker(s): {result.seconds} s, "
          f"{result.per_second} msg/s")
    print(f"msg/s per tenth of the backlog: {result.tenths} (last / median {result.flatness})")
    print(f"RSS MiB per worker: first output {result.rss_first}, peak {result.rss_peak}, "
          f"end {result.rss_end}; peak lag {result.lag_peak}")
    print(f"CPU µs a message per worker, first output to last: {result.cpu_us}")
    print(json.dumps({**asdict(result), "flatness": result.flatness}))
