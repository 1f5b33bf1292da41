"""Benchmark: the raw aiokafka pipe, a Faust forwarder and the Switchboard pipeline, in one run.

For each pipe, on fresh topics of the same partitioning and with the same messages:
throughput (a burst of N messages, first publish → last output) and latency
(publish → output, p50/p99, at a fixed offered rate once it settled). Prints all four and the ratios:
raw is the limit of the stack, raw two hops the honest ceiling of a re-keying chain
(inbound → identified → routed), the Faust forwarder what a Faust agent alone costs (the
stages ran as Faust agents until decision 0006's amendment; they are batch loops now).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.scaleout import Lag, Workers, cpu_seconds, free_port
from bench.topics import delete_run
from bench.workload import Workload
from processors import compiled
from router.settings import Settings, load
from schemas.topics import IDENTIFIED, INBOUND, ROUTED

__all__ = ["SETTLE_SECONDS", "Collector", "Result", "main", "percentile", "process", "publish"]

# the first second at the offered rate is not counted, for every pipe alike: it wakes
# processes the warm-up left idle, and their first ~200 ms held every pipe's worst latencies
SETTLE_SECONDS = 1


class _Stamp(msgspec.Struct):
    received_at: datetime


class _Routed(msgspec.Struct):
    message: _Stamp


_raw_stamp = msgspec.json.Decoder(_Stamp)  # the raw pipe copies inbound messages as they are
_routed_stamp = msgspec.json.Decoder(_Routed)


def _stamp_raw(value: bytes) -> float:
    return _raw_stamp.decode(value).received_at.timestamp()


def _stamp_routed(value: bytes) -> float:
    return _routed_stamp.decode(value).message.received_at.timestamp()


@dataclass
class Result:
    """What one pipe reached."""

    pipe: str
    messages: int
    seconds: float
    per_second: float
    rate: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    # the chain only: each worker's msg/s in the burst, and each stage group's peak lag
    per_worker: list[int] = field(default_factory=list)
    lag_peak: dict[str, int] = field(default_factory=dict)
    # CPU µs each worker spent a message in the burst (all its stages)
    cpu_us: list[float] = field(default_factory=list)
    # every process of the pipe together, CPU µs a message in the burst: what a message costs,
    # whatever the number of processes (the raw two hops run one a hop)
    cost_us: float = 0.0


def percentile(values: list[float], q: float) -> float:
    """The q-quantile of `values` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Collector:
    """Reads a pipe's output topic and records each message's publish→output latency."""

    def __init__(self, settings: Settings, topic: str, stamp: Callable[[bytes], float]) -> None:
        self.latencies: list[float] = []
        self.published: list[float] = []  # each latency's message's publish time, in step
        self.last_at = 0.0
        self._topic = topic
        self._stamp = stamp
        self._settings = settings
        self._task: asyncio.Task[None] | None = None
        self._grew = asyncio.Event()

    async def start(self) -> None:
        """Subscribe and begin reading in the background."""
        self._consumer = AIOKafkaConsumer(
            self._topic, bootstrap_servers=self._settings.kafka_bootstrap,
            group_id=f"bench-collect-{uuid.uuid4().hex[:6]}", auto_offset_reset="earliest",
            enable_auto_commit=False)
        await self._consumer.start()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=50, max_records=2000)
            now = time.time()
            for records in batches.values():
                for r in records:
                    if r.value is not None:
                        at = self._stamp(r.value)
                        self.published.append(at)
                        self.latencies.append(now - at)
            if batches:
                self.last_at = now
                self._grew.set()

    async def wait_for(self, count: int, timeout: float) -> bool:
        """Wait until `count` outputs were seen, or the deadline passed."""
        deadline = time.monotonic() + timeout
        while len(self.latencies) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._grew.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._grew.wait(), left)
        return True

    async def stop(self) -> None:
        """Stop reading."""
        if self._task:
            self._task.cancel()
        await self._consumer.stop()


async def publish(producer: AIOKafkaProducer, topic: str, work: Workload, n: int,
                   rate: int | None) -> float:
    """Publish n messages, as fast as possible or at `rate`/s; returns the start time."""
    started = time.time()
    pending = []
    for i in range(n):
        if rate is not None:
            due = started + i / rate
            delay = due - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
        key, value = work.next()
        pending.append(await producer.send(topic, value, key=key))
        if len(pending) >= 2000:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    return started


def _cpu(procs: Sequence[subprocess.Popen[bytes]]) -> float:
    """CPU seconds a pipe's processes have used so far, together."""
    return sum(cpu_seconds(p.pid) for p in procs)


async def _measure(name: str, settings: Settings, *, source: str, sink: str,
                   stamp: Callable[[bytes], float], args: argparse.Namespace,
                   procs: Sequence[subprocess.Popen[bytes]],
                   workers: Workers | None = None, lag: Lag | None = None) -> Result:
    work = Workload(uuid.uuid4().hex[:8])
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    await producer.start()
    collector = Collector(settings, sink, stamp)
    await collector.start()
    try:
        # warm up: the pipe has its partitions and its clients are connected
        await publish(producer, source, work, 200, None)
        if not await collector.wait_for(200, 90):
            raise SystemExit(f"{name}: warm-up messages never came out")
        # latency at a fixed offered rate; the instrument's own full collections (~50-80 ms
        # over this process's heap) would otherwise land in every pipe's p99
        gc.collect()
        gc.freeze()
        base = len(collector.latencies)
        offered = args.rate * (SETTLE_SECONDS + args.seconds)
        settled = await publish(producer, source, work, offered, args.rate) + SETTLE_SECONDS
        if not await collector.wait_for(base + offered, 60):
            raise SystemExit(f"{name}: lost messages in the latency phase")
        latencies = [took for at, took in zip(collector.published[base:], collector.latencies[base:],
                                              strict=True) if at >= settled]
        # throughput: a burst as fast as we can publish, until the last one is out
        base = len(collector.latencies)
        if workers is not None:
            await workers.start()
        if lag is not None:
            await lag.start()
        cpu = _cpu(procs)
        started = await publish(producer, source, work, args.messages, None)
        if not await collector.wait_for(base + args.messages, 300):
            raise SystemExit(f"{name}: lost messages in the throughput phase")
        cost = (_cpu(procs) - cpu) / args.messages * 1e6
        seconds = collector.last_at - started
        shares = await workers.rates(seconds) if workers is not None else []
        if lag is not None:
            await lag.stop()
        return Result(name, args.messages, round(seconds, 3), round(args.messages / seconds),
                      args.rate, round(percentile(latencies, 0.5) * 1000, 1),
                      round(percentile(latencies, 0.99) * 1000, 1),
                      round(max(latencies) * 1000, 1), shares, dict(lag.peak) if lag else {},
                      workers.cpu_us if workers is not None else [], round(cost, 1))
    finally:
        await collector.stop()
        await producer.stop()


async def _create_topics(settings: Settings, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, settings.kafka_partitions, 1) for n in names])
    finally:
        await admin.close()


LOGS = Path(__file__).resolve().parent.parent / ".local" / "bench"


@contextmanager
def process(argv: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """Run a process for the length of a `with` block, logging to .local/bench/, then stop it."""
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{env.get('SB_TOPIC_PREFIX', 'raw')}{uuid.uuid4().hex[:4]}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=out)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if proc.returncode not in (0, -15):
            print(f"{argv[-1]} exited {proc.returncode}; its log: {log}", file=sys.stderr)


async def run(args: argparse.Namespace) -> list[Result]:
    """Measure the three pipes in one run and return their results; their topics go after."""
    run_id = uuid.uuid4().hex[:8]
    settings = load()
    try:
        return await _measure_all(settings, run_id, args)
    finally:
        await delete_run(settings, f"bench-{run_id}-")


async def _measure_all(settings: Settings, run_id: str, args: argparse.Namespace) -> list[Result]:
    results = []
    raw_in, raw_out = f"bench-{run_id}-raw-in", f"bench-{run_id}-raw-out"
    await _create_topics(settings, [raw_in, raw_out])
    env = dict(os.environ)
    with process([sys.executable, "-m", "bench.rawpipe", "--bootstrap", settings.kafka_bootstrap,
                   "--source", raw_in, "--sink", raw_out, "--group", f"bench-{run_id}-raw"], env) as raw:
        results.append(await _measure("raw aiokafka pipe", settings, source=raw_in, sink=raw_out,
                                      stamp=_stamp_raw, args=args, procs=[raw]))
    # two raw hops, as the chain has (inbound → identified → routed): the honest ceiling
    hop_in, hop_mid, hop_out = (f"bench-{run_id}-hop-{n}" for n in ("in", "mid", "out"))
    await _create_topics(settings, [hop_in, hop_mid, hop_out])
    with contextlib.ExitStack() as hops:
        hop_procs = [hops.enter_context(process([
            sys.executable, "-m", "bench.rawpipe", "--bootstrap", settings.kafka_bootstrap, "--source",
            source, "--sink", sink, "--group", f"bench-{run_id}-hop{n}"], env))
            for source, sink, n in ((hop_in, hop_mid, 1), (hop_mid, hop_out, 2))]
        results.append(await _measure("raw aiokafka, 2 hops", settings, source=hop_in, sink=hop_out,
                                      stamp=_stamp_raw, args=args, procs=hop_procs))
    faust_in, faust_out = f"bench-{run_id}-faust-in", f"bench-{run_id}-faust-out"
    await _create_topics(settings, [faust_in, faust_out])
    with process([sys.executable, "-m", "bench.faustpipe", "--bootstrap", settings.kafka_bootstrap,
                  "--source", faust_in, "--sink", faust_out, "--group", f"bench-{run_id}-faust",
                  "--partitions", str(settings.kafka_partitions)], env) as forwarder:
        results.append(await _measure("faust forward (1 hop)", settings, source=faust_in,
                                      sink=faust_out, stamp=_stamp_raw, args=args, procs=[forwarder]))
    prefix = f"bench-{run_id}-"
    # the routing chain only: sending and dispatch to agents' tools come after routed and
    # can run on workers of their own (SB_STAGES), so they are not what this measures
    env |= {"SB_REPLY_TOKEN_KEY": env.get("SB_REPLY_TOKEN_KEY", "bench-reply-token-key-not-secret"),
            "SB_TOPIC_PREFIX": prefix, "SB_APP_ID": f"bench-{run_id}", "SB_HTTP_PORT": "0",
            "SB_LOG_LEVEL": "WARNING", "SB_STAGES": json.dumps(["intake", "brain"])}
    sb = Settings(topic_prefix=prefix)
    # a worker runs both stages in one process; split, each stage has a process of its own, as
    # each raw hop has (the brain's ports give the shares: it passes on what the chain routes)
    stages = [["intake"], ["brain"]] if args.split_stages else [["intake", "brain"]]
    runs = [(s, free_port()) for _ in range(args.workers) for s in stages]
    with contextlib.ExitStack() as workers:
        chain_procs = [workers.enter_context(process(
            [sys.executable, "-m", "router.cli", "worker"],
            env | {"SB_HTTP_PORT": str(port), "SB_STAGES": json.dumps(run_stages)}))
            for run_stages, port in runs]
        name = "switchboard pipeline" + (f", {args.workers} workers" if args.workers > 1 else "") + (
            ", a process a stage" if args.split_stages else "")
        shares = Workers([port for run_stages, port in runs if "brain" in run_stages])
        await shares.ready()
        lag = Lag(settings.kafka_bootstrap, {f"bench-{run_id}.intake": sb.topic(INBOUND),
                                             f"bench-{run_id}.brain": sb.topic(IDENTIFIED)},
                  settings.kafka_partitions)
        results.append(await _measure(name, settings, source=sb.topic(INBOUND), sink=sb.topic(ROUTED),
                                      stamp=_stamp_routed, args=args, procs=chain_procs, workers=shares,
                                      lag=lag))
    return results


def _report(results: list[Result], workers: int) -> None:
    raw, two_hops, forward, sb = results
    width = max(len(r.pipe) for r in results) + 2
    print(f"{'pipe':<{width}}{'msgs':>8}{'msg/s':>10}{'CPU µs':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
          "  (@ rate/s)")
    for r in results:
        print(f"{r.pipe:<{width}}{r.messages:>8}{r.per_second:>10}{r.cost_us:>8}{r.p50_ms:>9}{r.p99_ms:>9}"
              f"{r.max_ms:>9}  (@ {r.rate})")
    print(f"throughput ratio switchboard/raw: {sb.per_second / raw.per_second:.2f}; "
          f"switchboard/raw two hops: {sb.per_second / two_hops.per_second:.2f}")
    print(f"throughput ratio faust-forward/raw: {forward.per_second / raw.per_second:.2f}")
    # the CPU a message, all of each pipe's processes: steadier than msg/s on a shared machine
    cost = two_hops.cost_us / sb.cost_us if sb.cost_us > 0 else 0.0  # 0: a process gone unread
    print(f"cost ratio (raw two hops' CPU a message / switchboard's): {cost:.2f}")
    print(f"per worker (brain, msg/s in the burst): {sb.per_worker}; CPU µs a message: {sb.cpu_us}; "
          f"peak consumer lag: {sb.lag_peak}")
    print(f"p99 latency ratio switchboard/raw: {sb.p99_ms / raw.p99_ms:.2f}")
    # the workers run this checkout: its build is theirs (decision 0023; 0 is pure Python)
    built = len(compiled.loaded())
    print(f"decision modules compiled: {built} of {len(compiled.MODULES)}")
    print(json.dumps({"results": [asdict(r) for r in results], "workers": workers, "compiled": built,
                      "throughput_ratio": round(sb.per_second / raw.per_second, 3),
                      "two_hop_ratio": round(sb.per_second / two_hops.per_second, 3),
                      "faust_ratio": round(forward.per_second / raw.per_second, 3),
                      "two_hop_cost_ratio": round(cost, 3)}))


def main() -> None:
    """Command-line entry: `python -m bench.pipeline`."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000, help="burst size for throughput")
    parser.add_argument("--rate", type=int, default=1_000, help="offered rate for latency, msg/s")
    parser.add_argument("--seconds", type=int, default=5, help="length of the latency phase")
    parser.add_argument("--workers", type=int, default=1, help="switchboard worker processes")
    parser.add_argument("--split-stages", action="store_true",
                        help="run each worker's intake and brain as two processes, as the raw hops run")
    parser.add_argument("--backlog", type=int, default=0,
                        help="instead: drain a backlog of this many messages (bench.backlog)")
    parser.add_argument("--drain-timeout", type=float, default=900, help="seconds a drain may take")
    args = parser.parse_args()
    if (why := compiled.complaint()) is not None:  # it would measure old code
        parser.error(why)
    if args.backlog:
        from bench import backlog  # imports this module: only when asked for

        backlog.report(asyncio.run(backlog.drain(args)))
        return
    _report(asyncio.run(run(args)), args.workers)


if __name__ == "__main__":
    main()
