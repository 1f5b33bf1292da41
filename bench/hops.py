"""Where a message's latency goes in the chain: publish → identified (intake) → routed (brain).

One worker, a fixed offered rate; then every record's Kafka timestamp (the time our
producer built its batch) is read back and each hop's share is printed, p50 / p99 / max.
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

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.pipeline import percentile, process, publish
from bench.scaleout import Workers, free_port
from bench.topics import delete_run
from bench.workload import Workload
from router.kafka import ensure_topics
from router.settings import load
from schemas.topics import IDENTIFIED, INBOUND, ROUTED

__all__ = ["main"]


class _Event(msgspec.Struct):
    event_id: str = ""


class _Routed(msgspec.Struct):
    message: _Event | None = None


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
            "SB_TOPIC_PREFIX": prefix, "SB_APP_ID": f"bench-{run_id}", "SB_LOG_LEVEL": "WARNING"}
        # one worker with both stages, or (--apart) a worker each: a loop of its own per hop
        stages = [["intake"], ["brain"]] if args.apart else [["intake", "brain"]]
        ports = [free_port() for _ in stages]
        with contextlib.ExitStack() as stack:
            for port, mine in zip(ports, stages, strict=True):
                stack.enter_context(process([sys.executable, "-m", "router.cli", "worker"],
                                            env | {"SB_HTTP_PORT": str(port), "SB_STAGES": json.dumps(mine)}))
            await Workers(ports).ready()
            producer = AIOKafkaProducer(bootstrap_servers=base.kafka_bootstrap, acks="all", linger_ms=5)
            await producer.start()
            try:
                await publish(producer, sb.topic(INBOUND), Workload(run_id), args.rate * args.seconds,
                              args.rate)
            finally:
                await producer.stop()
            deadline = time.monotonic() + 60
            while True:  # until every message is through both hops, or the deadline
                inbound, identified, routed = await asyncio.gather(
                    _stamps(base.kafka_bootstrap, sb.topic(INBOUND), False),
                    _stamps(base.kafka_bootstrap, sb.topic(IDENTIFIED), False),
                    _stamps(base.kafka_bootstrap, sb.topic(ROUTED), True))
                if len(routed) >= len(inbound) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
    finally:
        await delete_run(base, prefix)
    both = [e for e in inbound if e in identified and e in routed]
    hops = {"publish → identified": [identified[e] - inbound[e] for e in both],
            "identified → routed": [routed[e] - identified[e] for e in both],
            "publish → routed": [routed[e] - inbound[e] for e in both]}
    print(f"{len(both)} of {len(inbound)} messages through both hops, {args.rate} msg/s offered, "
          + ("a worker per stage" if args.apart else "one worker"))
    for name, values in hops.items():
        p50, p99 = (percentile(values, q) * 1000 for q in (0.5, 0.99))
        print(f"{name:>22}: p50 {p50:6.1f}  p99 {p99:6.1f}  max {max(values) * 1000:6.1f} ms")


def main() -> None:
    """Command-line entry: `python -m bench.hops`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=1_000)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--apart", action="store_true", help="intake and brain in a worker each")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
