"""Where a message's latency goes in the chain: publish → identified (intake) → routed (brain).

One worker, a fixed offered rate (its first second settles, as in bench.pipeline); then
every record's Kafka timestamp (the time our producer built its batch) is read back and
each hop's share is printed, p50 / p99 / max, with the worker's CPU a message and the
moments that held the slowest 1%.

It also prints the host's budget while the rate was offered: the CPU a message of the
worker, the Kafka broker (when the local stack runs it) and Redis, and how busy the
host's cores were. On a small host the three share the cores with the publisher, and
the latency is what waiting for a core costs them.
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
from dataclasses import dataclass
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from redis.exceptions import RedisError

from bench.pipeline import SETTLE_SECONDS, percentile, process, publish
from bench.scaleout import Workers, cpu_seconds, free_port
from bench.topics import delete_run
from bench.workload import Workload
from devtools.stack import status
from router.kafka import ensure_topics
from router.settings import Settings, load
from schemas.topics import IDENTIFIED, INBOUND, ROUTED

__all__ = ["main"]
WARM_UP = 200


class _Event(msgspec.Struct):
    event_id: str = ""


class _Routed(msgspec.Struct):
    message: _Event | None = None


@dataclass(frozen=True)
class _Budget:
    """CPU seconds so far: workers', broker's, Redis's (None: not measurable here), the host's."""

    workers: float
    broker: float | None
    redis: float | None
    busy: float
    total: float


def _host() -> tuple[float, float]:
    """The host's busy and total CPU seconds since boot, every core (/proc/stat)."""
    ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle and waiting for I/O
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / hz, sum(ticks) / hz


async def _budget(settings: Settings, workers: list[int], broker: int | None) -> _Budget:
    """What the processes sharing this host have used so far."""
    redis = settings.new_redis(socket_timeout=5)
    try:
        cpu = await redis.info("cpu")
        used: float | None = float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
    except (RedisError, KeyError):
        used = None
    finally:
        await redis.aclose()
    busy, total = _host()
    return _Budget(sum(cpu_seconds(pid) for pid in workers),
                   None if broker is None else cpu_seconds(broker), used, busy, total)


async def _broker_pid(settings: Settings) -> int | None:
    """The Kafka broker's pid when this checkout's stack runs it, else None (a broker elsewhere)."""
    found = await asyncio.to_thread(status, settings)  # its probes run loops of their own
    return next((s.pid for s in found if s.name == "kafka" and s.running), None)


def _print_budget(before: _Budget, after: _Budget, messages: int) -> None:
    """The CPU a message each process spent while the rate was offered, and how busy the host was."""
    def each(start: float | None, end: float | None) -> str:
        return "n/a" if start is None or end is None else f"{(end - start) / messages * 1e6:.0f} µs"

    cores = os.cpu_count() or 1
    print(f"while offered: CPU a message: worker {each(before.workers, after.workers)}, "
          f"Kafka broker {each(before.broker, after.broker)}, Redis {each(before.redis, after.redis)}; "
          f"the host's {cores} cores {(after.busy - before.busy) / (after.total - before.total):.0%} busy")


async def _stamps(bootstrap: str, topic: str, routed: bool) -> dict[str, float]:
    """Each record's event id → its Kafka timestamp in seconds."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    found: dict[str, float] = {}
    try:
        while batch := await consumer.getmany(timeout_ms=2000):
            for records in batch.values():
                for r in records:
                    if routed:
                        message = msgspec.json.decode(r.value or b"{}", type=_Routed).message
                        event = message.event_id if message else ""
                    else:
                        event = msgspec.json.decode(r.value or b"{}", type=_Event).event_id
                    found.setdefault(event, r.timestamp / 1000)
    finally:
        await consumer.stop()
    return found


async def _through(settings: Settings, count: int) -> tuple[dict[str, float], ...]:
    """The three topics' stamps once `count` messages are routed (or a minute passed)."""
    deadline = time.monotonic() + 60
    while True:
        stamps = await asyncio.gather(*(_stamps(settings.kafka_bootstrap, settings.topic(spec),
                                                spec is ROUTED) for spec in (INBOUND, IDENTIFIED, ROUTED)))
        if len(stamps[2]) >= count or time.monotonic() > deadline:
            return tuple(stamps)
        await asyncio.sleep(0.5)


async def run(args: argparse.Namespace) -> None:
    """Offer `rate` msg/s for `seconds` to one worker, then split each message's latency by hop."""
    run_id = uuid.uuid4().hex[:8]
    base = load()
    prefix = f"bench-{run_id}-"
    sb = base.model_copy(update={"topic_prefix": prefix, "app_id": f"bench-{run_id}"})
    try:
        await ensure_topics(sb)
        env = dict(os.environ) | {
            "SB_REPLY_TOKEN_KEY": os.environ.get("SB_REPLY_TOKEN_KEY", "bench-reply-token-key-not-secret"),
            "SB_TOPIC_PREFIX": prefix, "SB_APP_ID": f"bench-{run_id}",
            "SB_LOG_LEVEL": os.environ.get("SB_LOG_LEVEL", "WARNING")}
        # one worker with both stages, or (--apart) a worker each: a loop of its own per hop
        stages = [["intake"], ["brain"]] if args.apart else [["intake", "brain"]]
        ports = [free_port() for _ in stages]
        with contextlib.ExitStack() as stack:
            command = [sys.executable, "-m", "router.cli", "worker"]
            workers = [stack.enter_context(process(command, env | {"SB_HTTP_PORT": str(port),
                                                                   "SB_STAGES": json.dumps(mine)}))
                       for port, mine in zip(ports, stages, strict=True)]
            await Workers(ports).ready()
            producer = AIOKafkaProducer(bootstrap_servers=base.kafka_bootstrap, acks="all", linger_ms=5)
            await producer.start()
            work = Workload(run_id)
            try:
                # warm-up, as bench.pipeline does: the first messages meet cold connections and caches
                await publish(producer, sb.topic(INBOUND), work, WARM_UP, None)
                await _through(sb, WARM_UP)
                cpu = sum(cpu_seconds(w.pid) for w in workers)
                broker = await _broker_pid(base)
                before = await _budget(base, [w.pid for w in workers], broker)
                offered = args.rate * (SETTLE_SECONDS + args.seconds)
                started = await publish(producer, sb.topic(INBOUND), work, offered, args.rate)
                settled = started + SETTLE_SECONDS
                # the window ends with the publishing, before the read-back below loads the broker
                after = await _budget(base, [w.pid for w in workers], broker)
            finally:
                await producer.stop()
            inbound, identified, routed = await _through(sb, WARM_UP + offered)
            cpu = sum(cpu_seconds(w.pid) for w in workers) - cpu
    finally:
        await delete_run(base, prefix)
    # the warm-up was published before the rate phase, so the settling cut leaves it out too
    both = [e for e in inbound if e in identified and e in routed and inbound[e] >= settled]
    hops = {"publish → identified": [identified[e] - inbound[e] for e in both],
            "identified → routed": [routed[e] - identified[e] for e in both],
            "publish → routed": [routed[e] - inbound[e] for e in both]}
    print(f"{len(both)} of {len(inbound)} messages through both hops, {args.rate} msg/s offered, "
          + ("a worker per stage" if args.apart else "one worker")
          # at a steady rate batches are small: compare with a burst's CPU a message (bench.pipeline)
          + f"; worker CPU {cpu / offered * 1e6:.0f} µs a message")
    for name, values in hops.items():
        p50, p99 = (percentile(values, q) * 1000 for q in (0.5, 0.99))
        print(f"{name:>22}: p50 {p50:6.1f}  p99 {p99:6.1f}  max {max(values) * 1000:6.1f} ms")
    _worst_moments({e: inbound[e] for e in both}, {e: routed[e] - inbound[e] for e in both})
    _print_budget(before, after, offered)


def _worst_moments(published: dict[str, float], took: dict[str, float], width: float = 0.1) -> None:
    """The slowest moments: a stall shows as a few windows holding most of the tail."""
    start = min(published.values())
    windows: dict[int, list[float]] = {}
    for event, at in published.items():
        windows.setdefault(int((at - start) / width), []).append(took[event])
    tail = percentile(list(took.values()), 0.99)
    slow = {w: sum(t >= tail for t in values) for w, values in windows.items()}
    print(f"slowest 1% ({len(took) // 100} messages) by when they were published, "
          f"{width * 1000:.0f} ms windows:")
    for w in sorted(slow, key=lambda w: -slow[w])[:8]:
        if slow[w]:
            print(f"  +{w * width:6.1f} s: {slow[w]:4d} slow, worst {max(windows[w]) * 1000:6.1f} ms")


def main() -> None:
    """Command-line entry: `python -m bench.hops`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=1_000)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--apart", action="store_true", help="intake and brain in a worker each")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
