"""Benchmark of the X channel: a mention visible at the local X → routed, by webhook and by polling.

Two `switchboard run` processes, each on its own topics, take the same mentions: one by
the X Activity API's webhook (the emulator delivers each mention signed, as X does), one
by polling the mentions endpoint at the interval the limit table gives (300 calls per 15
minutes: every 3 s). Mentions are posted at random moments; latency is from the moment
the post exists at the emulator to the routed event on Kafka.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass

from bench.pipeline import Collector, percentile, process
from bench.topics import delete_run
from connectors.twitter.settings import XSettings
from connectors.twitter.webhook import PATH
from router.settings import Settings, load
from schemas.topics import ROUTED
from tests.emulators.x import XEmulator
from tests.processes import free_port

__all__ = ["main"]

_STAMP = re.compile(rb"bench-t0=([0-9.]+)")


@dataclass
class ModeResult:
    """Latency of one way of taking mentions in."""

    mode: str
    mentions: int
    p50_s: float
    p95_s: float
    max_s: float


def _stamp(value: bytes) -> float:
    found = _STAMP.search(value)
    return float(found.group(1)) if found else float("nan")


def _env(x: XEmulator, prefix: str, port: int, *, poll: bool) -> dict[str, str]:
    section = {"account_id": x.account, "handle": x.handle, "consumer_key": x.consumer_key,
               "consumer_secret": x.consumer_secret, "access_token": x.access_token,
               "access_token_secret": x.access_token_secret, "base_url": x.base_url, "poll": poll}
    return {"SB_REPLY_TOKEN_KEY": "bench-reply-token-key-not-secret", **os.environ,
            "SB_TOPIC_PREFIX": prefix, "SB_APP_ID": f"{prefix}sb", "SB_HTTP_PORT": str(port),
            "SB_LOG_LEVEL": "WARNING", "SB_X": json.dumps(section)}


def _is_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
            return True
    except OSError:
        return False


async def _ready(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(_is_ready, port):
        if time.monotonic() > deadline:
            raise SystemExit(f"switchboard on port {port} never became ready")
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def _routers(settings: Settings, x: XEmulator) -> AsyncIterator[tuple[dict[str, Collector], str]]:
    """A webhook-fed and a polling `switchboard run`, each watched on its own routed topic."""
    run = uuid.uuid4().hex[:6]
    watches: dict[str, Collector] = {}
    hook_port = free_port()
    try:
        with contextlib.ExitStack() as procs:
            try:
                for i, (mode, poll) in enumerate((("webhook", False), ("polling", True))):
                    prefix, port = f"bench-x-{run}-{i}-", hook_port if not poll else free_port()
                    procs.enter_context(process([sys.executable, "-m", "router.cli", "run"],
                                                _env(x, prefix, port, poll=poll)))
                    await _ready(port)
                    watches[mode] = Collector(settings, f"{prefix}{ROUTED.name}", _stamp)
                    await watches[mode].start()
                yield watches, f"http://127.0.0.1:{hook_port}{PATH}"
            finally:
                for watch in watches.values():
                    await watch.stop()
    finally:
        await delete_run(settings, f"bench-x-{run}-")


async def _mention(x: XEmulator, url: str, n: int) -> None:
    post = x.mention(f"bench-t0={time.time():.6f} order {n} never arrived")
    status, answer = await x.deliver(url, x.envelope("post.mention.create", post))
    if status != 200:
        raise SystemExit(f"the webhook refused mention {n}: {answer}")


async def run(args: argparse.Namespace) -> dict[str, object]:
    """Mentions at random moments; each mode's latency percentiles."""
    settings = load()
    x = await XEmulator().start()
    try:
        async with _routers(settings, x) as (watches, url):
            await _mention(x, url, 0)  # warm-up: both paths route one, then forget it
            for mode, watch in watches.items():
                if not await watch.wait_for(1, 120):
                    raise SystemExit(f"{mode}: the warm-up mention was never routed")
                watch.latencies.clear()
            rng = random.Random(11)
            for n in range(1, args.mentions + 1):
                await asyncio.sleep(rng.uniform(0, 2 * args.spread / args.mentions))
                await _mention(x, url, n)
            for mode, watch in watches.items():
                if not await watch.wait_for(args.mentions, 60):
                    raise SystemExit(f"{mode}: only {len(watch.latencies)} of {args.mentions} routed")
            results = [ModeResult(mode, len(w.latencies), round(percentile(w.latencies, 0.5), 3),
                                  round(percentile(w.latencies, 0.95), 3), round(max(w.latencies), 3))
                       for mode, w in watches.items()]
    finally:
        await x.stop()
    interval = XSettings().poll_interval("mentions")
    print(f"{'mode':<10}{'mentions':>9}{'p50 s':>8}{'p95 s':>8}{'max s':>8}", flush=True)
    for r in results:
        print(f"{r.mode:<10}{r.mentions:>9}{r.p50_s:>8}{r.p95_s:>8}{r.max_s:>8}", flush=True)
    print(f"polling interval from the limit table: {interval:.1f} s; goals: webhook p95 <= 1 s, "
          f"polling p95 <= {interval + 1:.1f} s", flush=True)
    return {"modes": [asdict(r) for r in results], "poll_interval_s": interval}


def main() -> None:
    """Command-line entry: `python -m bench.x`."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mentions", type=int, default=40, help="mentions posted")
    parser.add_argument("--spread", type=float, default=40, help="seconds to post them over")
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
