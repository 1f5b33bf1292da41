"""`switchboard tail`: print the events on a topic as JSON lines, for people and scripts."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid

from aiokafka import AIOKafkaConsumer

from router.kafka import client_options
from router.settings import Settings
from schemas.topics import ALL, TopicSpec

__all__ = ["tail", "topic_spec"]


def topic_spec(name: str) -> TopicSpec:
    """Find a topic by short name (`routed`) or full name (`sb.routed.v1`)."""
    for spec in ALL:
        if name in (spec.base, spec.name):
            return spec
    known = ", ".join(s.base for s in ALL)
    raise KeyError(f"unknown topic {name!r}; known: {known}")


async def tail(settings: Settings, spec: TopicSpec, *, from_beginning: bool, count: int | None,
               timeout: float | None) -> int:
    """Print events until `count` were seen or `timeout` seconds passed; returns how many."""
    consumer = AIOKafkaConsumer(
        settings.topic(spec),
        **client_options(settings),
        group_id=f"sb-tail-{uuid.uuid4().hex[:8]}",  # a throwaway group: never steals work
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
    )
    await consumer.start()
    seen = 0
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while count is None or seen < count:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            batch = await consumer.getmany(timeout_ms=int(min(left or 1.0, 1.0) * 1000))
            for records in batch.values():
                for record in records:
                    value = json.loads(record.value) if record.value else None
                    print(json.dumps({"partition": record.partition, "offset": record.offset,
                                      "value": value}, ensure_ascii=False), flush=True)
                    seen += 1
        return seen
    finally:
        await consumer.stop()


def run(settings: Settings, name: str, *, from_beginning: bool, count: int | None,
        timeout: float | None) -> int:
    """Synchronous entry point for the CLI."""
    try:
        return asyncio.run(tail(settings, topic_spec(name), from_beginning=from_beginning,
                                count=count, timeout=timeout))
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return 0
