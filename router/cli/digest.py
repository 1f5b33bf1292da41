"""`switchboard digest`: what the topics say about a window, as JSON, CSV or a report.

Reads `sb.routed.v1`, `sb.sla.v1`, `sb.conversation.v1` and `sb.delivery.v1` from the
offsets at `since` to the ends found at start, with a consumer in no group (nothing is
committed), and summarises (router/insights/digest.py). Conversations routed before the
window are read back a further `context` so its breaches can name their queue. With
`publish`, the digest is also put on `sb.insights.v1` for the business's own tools.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from aiokafka.errors import KafkaError

from router.cli.whatif import read_window
from router.insights.digest import Events, summarise
from router.kafka import new_producer
from router.settings import Settings
from schemas.codec import decode, encode
from schemas.errors import ParseError, TransientError
from schemas.insights import InsightDigest
from schemas.topics import CONVERSATION, DELIVERY, INSIGHTS, ROUTED, SLA, TopicSpec

__all__ = ["CONTEXT", "digest", "publish"]

TOPICS: tuple[TopicSpec, ...] = (ROUTED, SLA, CONVERSATION, DELIVERY)
# how far before the window routed conversations are read, to explain its breaches
CONTEXT = timedelta(days=7)


async def digest(settings: Settings, since: timedelta, now: datetime,
                 context: timedelta = CONTEXT) -> InsightDigest:
    """The digest of [now - since, now)."""
    start = now - since
    events = Events()
    records: dict[str, int] = {}
    skipped = 0
    for spec in TOPICS:
        # routed from further back: a breach today may belong to a conversation of last week
        _, values = await read_window(settings, start - context if spec is ROUTED else start, None, spec=spec)
        records[spec.name] = len(values)
        for value in values:
            try:
                event: Any = decode(value or b"", spec.model)
            except ParseError:
                skipped += 1
                continue
            events.add(event)
    return summarise(events, start, now, now=now, records=records, skipped=skipped)


async def publish(settings: Settings, found: InsightDigest, timeout: float = 30.0) -> None:
    """Put the digest on sb.insights.v1, keyed by its window; returns once Kafka has it."""
    producer = new_producer(settings)
    try:
        async with asyncio.timeout(timeout):
            await producer.start()
            await producer.send_and_wait(settings.topic(INSIGHTS), encode(found),
                                         key=found.digest_id.encode())
    except (KafkaError, TimeoutError, OSError) as e:
        raise TransientError(f"Kafka did not take the digest: {e!r}") from e
    finally:
        await producer.stop()
