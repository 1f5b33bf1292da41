"""The dispatch stage's time per batch on a real Redis, with agents' tools that answer at once.

Each batch is routed messages of new conversations and follow-ups (two destinations for
some queues) and reply receipts, as `DispatchStage.process` receives them; the tools
are in-process, so what is measured is the stage's own work and its Redis round trips.
Needs only Redis (the local stack's, or `--redis`): `python -m bench.dispatch`. Keys are
tagged for `--partitions` (12 by default, as the workers tag them; 0 leaves them untagged).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from connectors.base import AgentTool, Handoff
from processors.dispatch.stage import DispatchStage
from processors.policy.load import load_policy
from processors.policy.model import Destination, Policy, Queue
from processors.stage import Record
from processors.stores.cards import CardStore
from processors.stores.client import new_redis
from processors.stores.tags import Tags
from router.settings import load
from router.vocabulary import VOCABULARY
from schemas import Identity, InboundMessage, encode
from schemas.outbound import DeliveryReceipt
from schemas.routed import RoutedConversation

__all__ = ["main", "measure"]

EXAMPLE_POLICY = Path(__file__).resolve().parents[1] / "deploy" / "policy.example.yaml"
AT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


class _Desk(AgentTool[None]):
    """An agents' tool that takes every handoff at once, giving a thread to each conversation."""

    def __init__(self) -> None:
        super().__init__(None)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def deliver(self, handoff: Handoff) -> str:
        return handoff.thread or f"ts-{handoff.card.conversation_id}"


def _policy() -> Policy:
    names = ("desk", "chat")
    return dataclasses.replace(
        load_policy(EXAMPLE_POLICY, VOCABULARY), default_queue="general",
        queues={"general": Queue("general", None, ("desk",)), "billing": Queue("billing", None, names)},
        destinations={n: Destination(n, "webhook") for n in names})


def _routed(n: int, conversation: str) -> RoutedConversation:
    message = InboundMessage(
        event_id=f"ev_{n}", channel="email", native_id=f"<m{n}@example.org>", thread_key=conversation,
        sender=Identity(kind="email", value=f"{conversation}@example.org"), received_at=AT,
        text="Where is my parcel? It was due on Monday.", subject="Parcel")
    return RoutedConversation(
        event_id=f"ev_{n}", conversation_id=conversation, customer_id=f"cus_{conversation}",
        queue="billing" if n % 3 == 0 else "general", priority=3, tier="standard", urgency="normal",
        first_response_due=AT + timedelta(hours=8), routed_at=AT, message=message, decisions=(),
        customer_name="Ada")


def _batch(ns: str, number: int, size: int, conversations: int) -> list[Record]:
    """`size` records: messages to `conversations` conversations (new, then follow-ups), 1 in 10 a receipt."""
    out = []
    for i in range(size):
        n = number * size + i
        conversation = f"con_{ns}_{n % conversations}"
        if i % 10 == 9:
            receipt = DeliveryReceipt(reply_id=f"rep_{n}", conversation_id=conversation, channel="email",
                                      status="held", at=AT, kind="agent_reply", reason="held")
            out.append(Record(f"{ns}-sb.delivery.v1", 0, n, encode(receipt)))
        else:
            out.append(Record(f"{ns}-sb.routed.v1", 0, n, encode(_routed(n, conversation))))
    return out


async def measure(redis_url: str, batches: int, size: int, conversations: int,
                  partitions: int = 12) -> dict[str, float]:
    """Milliseconds a batch (median, p90, mean; and CPU of this process) over `batches` batches."""
    redis = new_redis(redis_url)
    ns = f"benchdispatch{uuid.uuid4().hex[:8]}"
    desk = _Desk()
    policy = _policy()
    stage = DispatchStage(redis, lambda: {"desk": desk, "chat": desk}, lambda: policy, namespace=ns,
                          ttl_seconds=600, cards=CardStore(ns, 600, Tags(partitions)), thread_ttl_seconds=600)
    try:
        await stage.process(_batch(ns, batches, size, conversations))  # warm up: scripts loaded
        times, cpu = [], []
        for b in range(batches):
            records = _batch(ns, b, size, conversations)
            start, used = time.perf_counter(), time.process_time()
            await stage.process(records)
            times.append((time.perf_counter() - start) * 1000)
            cpu.append((time.process_time() - used) * 1000)
    finally:
        async for key in redis.scan_iter(match=f"{ns}:*", count=1000):
            await redis.delete(key)
        await redis.aclose()
    times.sort()
    return {"batches": batches, "size": size, "median_ms": round(statistics.median(times), 2),
            "p90_ms": round(times[int(len(times) * 0.9)], 2), "mean_ms": round(statistics.fmean(times), 2),
            # this process's own CPU: the stage's Python, not Redis's work or the machine's load
            "cpu_median_ms": round(statistics.median(cpu), 2)}


def main() -> None:
    """Run the bench and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis", default=load().redis_dsn)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--conversations", type=int, default=80, help="conversations a batch writes to")
    parser.add_argument("--partitions", type=int, default=12, help="the partition count keys are tagged for")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.redis, args.batches, args.size, args.conversations,
                                         args.partitions))))


if __name__ == "__main__":
    main()
