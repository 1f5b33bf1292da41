"""Benchmark of the email channel, in one run against the local Dovecot and Kafka.

1. New mail → routed latency, with IMAP IDLE and with polling every 30 s and 60 s (what
   Zammad and Chatwoot do): three `switchboard run` processes read the same mailbox,
   each into its own topics, while mails are filed at random moments.
2. A backlog of N mails dropped at once (one IMAP MOVE) → time until all are routed.
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
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any

from bench.mailbox import BenchMailbox, stamped_mail
from bench.pipeline import Collector, percentile, process
from bench.topics import delete_run
from router.settings import Settings, load
from schemas.topics import ROUTED

__all__ = ["main"]

USER, PASSWORD = "support@example.com", "support-secret"
_STAMP = re.compile(rb"bench-t0=([0-9.]+)")


@dataclass
class ModeResult:
    """Latency of one way of reading the mailbox."""

    mode: str
    mails: int
    p50_s: float
    p95_s: float
    max_s: float


def _stamp_from_body(value: bytes) -> float:
    found = _STAMP.search(value)
    return float(found.group(1)) if found else float("nan")


def _watch(settings: Settings, prefix: str) -> Collector:
    return Collector(settings, f"{prefix}{ROUTED.name}", _stamp_from_body)


def _env(settings: Settings, prefix: str, folder: str, **account: object) -> dict[str, str]:
    config = {"accounts": [{"name": "bench", "host": "127.0.0.1", "port": settings.imap_port,
                            "username": USER, "password": PASSWORD, "mailbox": folder,
                            "tls": "none", **account}],
              "token_key": "bench"}
    return {"SB_REPLY_TOKEN_KEY": "bench-reply-token-key-not-secret", **os.environ,
            "SB_TOPIC_PREFIX": prefix, "SB_APP_ID": f"{prefix}sb",
            "SB_HTTP_PORT": "0", "SB_LOG_LEVEL": "WARNING", "SB_EMAIL": json.dumps(config)}


MODES: dict[str, dict[str, Any]] = {
    "IMAP IDLE": {"idle": True},
    "poll 30 s": {"idle": False, "poll_seconds": 30},
    "poll 60 s": {"idle": False, "poll_seconds": 60},
}


@contextlib.asynccontextmanager
async def _readers(settings: Settings, folder: str, modes: dict[str, dict[str, Any]]
                   ) -> AsyncIterator[dict[str, Collector]]:
    """One `switchboard run` per mode on the same folder, each watched on its own topics."""
    run = uuid.uuid4().hex[:6]
    watches: dict[str, Collector] = {}
    try:
        with contextlib.ExitStack() as procs:
            try:
                for i, (mode, account) in enumerate(modes.items()):
                    prefix = f"bench-{run}-{i}-"
                    procs.enter_context(process([sys.executable, "-m", "router.cli", "run"],
                                                _env(settings, prefix, folder, **account)))
                    watches[mode] = _watch(settings, prefix)
                    await watches[mode].start()
                yield watches
            finally:
                for watch in watches.values():
                    await watch.stop()
    finally:
        # after the routers stopped: a running one would declare its topics again
        await delete_run(settings, f"bench-{run}-")


async def _warm_up(box: BenchMailbox, folder: str, watches: dict[str, Collector]) -> None:
    """Route one mail through every reader, then forget it."""
    await asyncio.to_thread(box.file, folder, stamped_mail(0, "warm-up"))
    for mode, watch in watches.items():
        if not await watch.wait_for(1, 120):
            raise SystemExit(f"{mode}: the warm-up mail was never routed")
        watch.latencies.clear()


async def latency_modes(settings: Settings, box: BenchMailbox, args: argparse.Namespace
                        ) -> list[ModeResult]:
    """File mails at random moments while IDLE, 30 s and 60 s polling read the mailbox."""
    folder = f"bench-{uuid.uuid4().hex[:6]}"
    await asyncio.to_thread(box.create, folder)
    try:
        async with _readers(settings, folder, MODES) as watches:
            await _warm_up(box, folder, watches)
            rng = random.Random(7)
            for n in range(1, args.mails + 1):
                await asyncio.sleep(rng.uniform(0, 2 * args.spread / args.mails))
                await asyncio.to_thread(box.file, folder, stamped_mail(n, folder))
            for mode, watch in watches.items():
                if not await watch.wait_for(args.mails, 90):
                    raise SystemExit(f"{mode}: only {len(watch.latencies)} of {args.mails} routed")
            return [ModeResult(mode, len(w.latencies), round(percentile(w.latencies, 0.5), 2),
                               round(percentile(w.latencies, 0.95), 2), round(max(w.latencies), 2))
                    for mode, w in watches.items()]
    finally:
        await asyncio.to_thread(box.delete, folder)


async def backlog(settings: Settings, box: BenchMailbox, count: int) -> tuple[float, int]:
    """Drop `count` mails at once into a watched mailbox; seconds until all are routed."""
    run = uuid.uuid4().hex[:6]
    staging, folder = f"bench-{run}-staging", f"bench-{run}"
    for name in (staging, folder):
        await asyncio.to_thread(box.create, name)
    try:
        for n in range(count):
            await asyncio.to_thread(box.file, staging, stamped_mail(n, run))
        async with _readers(settings, folder, {"IMAP IDLE": {"idle": True}}) as watches:
            await _warm_up(box, folder, watches)
            watch = watches["IMAP IDLE"]
            dropped = time.time()
            await asyncio.to_thread(box.move_all, staging, folder)
            done = await watch.wait_for(count, 300)
            return (watch.last_at - dropped if done else float("inf")), len(watch.latencies)
    finally:
        for name in (staging, folder):
            await asyncio.to_thread(box.delete, name)


async def run(args: argparse.Namespace) -> dict[str, object]:
    """Both measurements, in one run; each is printed as soon as it is known."""
    settings = load()
    box = BenchMailbox(settings.imap_port, USER, PASSWORD)
    try:
        modes = await latency_modes(settings, box, args)
        print(f"{'mode':<12}{'mails':>7}{'p50 s':>8}{'p95 s':>8}{'max s':>8}", flush=True)
        for m in modes:
            print(f"{m.mode:<12}{m.mails:>7}{m.p50_s:>8}{m.p95_s:>8}{m.max_s:>8}", flush=True)
        seconds, routed = await backlog(settings, box, args.backlog)
        print(f"backlog: {routed} of {args.backlog} mails routed in {seconds:.2f} s "
              f"({routed / seconds:.0f} mails/s) after one IMAP MOVE", flush=True)
    finally:
        box.close()
    return {"modes": [asdict(m) for m in modes], "backlog": {
        "mails": args.backlog, "routed": routed, "seconds": round(seconds, 2)}}


def main() -> None:
    """Command-line entry: `python -m bench.mail`."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mails", type=int, default=20, help="mails filed for latency")
    parser.add_argument("--spread", type=float, default=150, help="seconds to file them over")
    parser.add_argument("--backlog", type=int, default=1000, help="mails in the dropped backlog")
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
