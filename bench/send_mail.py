"""Benchmark of the email sender: replies through the local SMTP relay into Dovecot.

N replies are handed to one `EmailOutbound` at once, at most 16 in flight (the send
stage's concurrency), for each pool size given: 1 connection is the sender as it was
(one connection, one mail at a time). Prints mails/s, p50/p95 per reply (from the hand-off
to its receipt) and the load average, and the JSON of it all. Run `switchboard stack up
--with-imap` first; the relay files everything into one bench mailbox of Dovecot.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from pydantic import SecretStr

from bench.pipeline import percentile
from connectors.email.outbound import EmailOutbound
from connectors.email.settings import EmailSettings, SmtpSettings
from router.settings import load
from schemas.identity import Identity
from schemas.outbound import OutboundMessage

__all__ = ["main"]

IN_FLIGHT = 16  # the send stage's own bound (processors/send/stage.py)


@dataclass
class PoolResult:
    """One pool size's run."""

    connections: int
    replies: int
    sent: int
    seconds: float
    mails_per_s: float
    p50_s: float
    p95_s: float
    load_before: float
    load_after: float


def _reply(recipient: str, n: int) -> OutboundMessage:
    return OutboundMessage(
        reply_id=f"rep_bench_{uuid.uuid4().hex}", conversation_id="con_bench0000000000000000",
        channel="email", recipient=Identity(kind="email", value=recipient), kind="agent_reply",
        text=f"Bench reply {n}.\nYour parcel left the warehouse.", created_at=datetime.now(UTC),
        subject="Order 42")


async def one_pool(port: int, connections: int, count: int, recipient: str) -> PoolResult:
    """Send `count` replies through a pool of `connections`; how fast, and how long each took."""
    smtp = SmtpSettings(host="127.0.0.1", port=port, tls="none", from_address="support@example.com",
                        message_id_domain="support.example.com", connections=connections, timeout=30)
    sender = EmailOutbound(EmailSettings(smtp=smtp, token_key=SecretStr("bench-token-key-0123456789abcdef")))
    await sender.start()
    gate = asyncio.Semaphore(IN_FLIGHT)
    took: list[float] = []

    async def send(n: int) -> bool:
        async with gate:
            begun = time.perf_counter()
            receipt = await sender.send(_reply(recipient, n))
            took.append(time.perf_counter() - begun)
            return receipt.status == "sent"

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    try:
        sent = sum(await asyncio.gather(*(send(n) for n in range(count))))
    finally:
        seconds = time.perf_counter() - started
        await sender.stop()
    return PoolResult(connections, count, sent, round(seconds, 2), round(sent / seconds, 1),
                      round(percentile(took, 0.5), 3), round(percentile(took, 0.95), 3),
                      round(load_before, 2), round(os.getloadavg()[0], 2))


async def run(args: argparse.Namespace) -> list[dict[str, object]]:
    """Every pool size in turn, against the stack's relay; each printed as soon as known."""
    settings = load()
    recipient = f"bench-send-{uuid.uuid4().hex[:6]}@example.com"
    # one mail first, so the relay has made the bench mailbox before the clock runs
    await one_pool(settings.smtp_port, 1, 1, recipient)
    print(f"{'connections':>11}{'replies':>9}{'sent':>6}{'s':>8}{'mails/s':>9}{'p50 s':>8}{'p95 s':>8}"
          f"{'load':>12}", flush=True)
    results = []
    for size in args.connections:
        r = await one_pool(settings.smtp_port, size, args.replies, recipient)
        print(f"{r.connections:>11}{r.replies:>9}{r.sent:>6}{r.seconds:>8}{r.mails_per_s:>9}"
              f"{r.p50_s:>8}{r.p95_s:>8}{f'{r.load_before}→{r.load_after}':>12}", flush=True)
        results.append(asdict(r))
    return results


def main() -> None:
    """Command-line entry: `python -m bench.send_mail`."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replies", type=int, default=300, help="replies per pool size")
    parser.add_argument("--connections", type=lambda v: [int(x) for x in v.split(",")],
                        default=[1, 4, 8], help="pool sizes to try, e.g. 1,4,8")
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
