"""The Redis Cluster client's cost: CPU µs a message for intake and brain batches, ours against redis-py's.

`python -m bench.cluster --url redis://127.0.0.1:PORT` against any node of a running Redis
Cluster. Runs the same batches through the stages as a worker does (keys tagged by
partition, calls split per slot) with `new_cluster` (commands packed with hiredis, a
script's slot found from its first key) and with redis-py's own cluster client,
alternating; prints each run's CPU µs a
message on this process (client side) and the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from redis.asyncio.cluster import RedisCluster

from bench.chain import chain
from bench.workload import Workload
from processors.brain.stage import Brain
from processors.intake.stage import Intake
from processors.policy.load import load_policy
from processors.stage import Record
from processors.stores.client import new_cluster
from processors.stores.tags import Tags
from router.vocabulary import VOCABULARY
from schemas.topics import IDENTIFIED

__all__ = ["measure"]

POLICY = load_policy(Path(__file__).resolve().parents[1] / "deploy" / "policy.example.yaml", VOCABULARY)
KEY = b"bench-cluster-key"


def _stages(redis: Any, ns: str, tags: Tags) -> tuple[Intake, Brain]:
    made = chain(redis, ns, tags, POLICY, KEY)
    return made.intake, made.brain


async def _run(redis: Any, batches: int, size: int, customers: int) -> float:
    """CPU µs a message over `batches` batches of `size` through intake then brain."""
    ns = f"benchcl{uuid.uuid4().hex[:8]}"
    intake, brain = _stages(redis, ns, Tags(12))
    work = Workload(ns, customers=customers)
    cpu = 0.0
    for b in range(batches + 1):  # the first loads the scripts and is not counted
        inbound = [Record("inbound", 0, b * size + i, work.next()[1]) for i in range(size)]
        started = time.process_time()
        outputs = await intake.process(inbound)
        identified = [Record("identified", 0, b * size + i, o.value)
                      for i, o in enumerate(o for o in outputs if o.topic is IDENTIFIED)]
        await brain.process(identified)
        await brain.confirm(identified)
        if b:
            cpu += time.process_time() - started
    return round(cpu / (batches * size) * 1e6, 1)


async def measure(url: str, runs: int, batches: int, size: int, customers: int) -> dict[str, Any]:
    """Alternating runs of our cluster client and redis-py's own; each run's µs and the medians."""
    out: dict[str, list[float]] = {"ours": [], "redis-py": []}
    for _ in range(runs):
        for name, found in out.items():
            client = new_cluster(url, socket_timeout=30) if name == "ours" else \
                RedisCluster.from_url(url, socket_timeout=30)
            try:
                await client.initialize()
                found.append(await _run(client, batches, size, customers))
            finally:
                await client.aclose()
    return {"cpu_us_a_message": out, "median": {k: statistics.median(v) for k, v in out.items()},
            "batch": size, "batches": batches}


def main() -> None:
    """Command line: `python -m bench.cluster --url redis://HOST:PORT`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="any node of a running Redis Cluster")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--customers", type=int, default=2000)
    args = parser.parse_args()
    found = asyncio.run(measure(args.url, args.runs, args.batches, args.size, args.customers))
    print(json.dumps(found, indent=2))


if __name__ == "__main__":
    main()
