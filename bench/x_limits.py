"""Benchmark of what sharing an X account's pacer and budget in Redis costs each call.

Every X call now makes its Redis steps before and after it: reserve the price, count the
call in the pacer, believe X's headers, settle the price. This times those steps alone
(no X) against the local stack's Redis, from several tasks at once as a busy worker
would, on a fresh namespace that is deleted after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

from connectors.twitter.limits import account_for
from connectors.twitter.settings import Limit, XSettings
from connectors.twitter.state import connect
from router.settings import load

HEADERS = {"x-rate-limit-remaining": "1000000", "x-rate-limit-reset": str(2**31),
           "x-user-limit-24hour-remaining": "1000000", "x-user-limit-24hour-reset": str(2**31)}


async def run(calls: int, tasks: int) -> dict[str, float]:
    """Time `calls` calls' shared-state steps spread over `tasks` concurrent tasks."""
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    settings = XSettings(account_id="42", redis_url=load().redis_url, namespace=namespace,
                         limits={"post": Limit(calls=10**9)}, daily_budget_usd=10**6)
    account = account_for(settings)
    took: list[float] = []

    async def one() -> None:
        start = time.perf_counter()
        day = await account.budget.reserve("post", 0.015, optional=True)
        await account.pacer.ready("post")
        await account.pacer.observe("post", HEADERS)
        await account.budget.settle("post", 0.015, 0.015, day)
        took.append(time.perf_counter() - start)

    async def worker(n: int) -> None:
        for _ in range(n):
            await one()

    began = time.perf_counter()
    await asyncio.gather(*(worker(calls // tasks) for _ in range(tasks)))
    wall = time.perf_counter() - began
    redis = connect(settings.redis_url.get_secret_value())  # to clean up the bench's own keys
    keys = [k async for k in redis.scan_iter(f"{namespace}:*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()
    took.sort()
    return {"calls": len(took), "tasks": tasks, "p50_ms": took[len(took) // 2] * 1000,
            "p95_ms": took[int(len(took) * 0.95)] * 1000, "calls_per_second": len(took) / wall}


def main() -> None:
    """Run and print the numbers as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--tasks", type=int, default=8)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.calls, args.tasks)), indent=2))


if __name__ == "__main__":
    main()
