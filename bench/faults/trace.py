"""Where a lost message stopped: its records on the way, and how far the group committed.

Run at the end, while the stack is still up: for each lost message, the records carrying
it on `sb.inbound.v1` and `sb.identified.v1` (partition/offset) and, for each, whether
the processors' consumer group committed past it — a committed record without its
output is a batch acknowledged without being processed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from router.loop import group_of
from router.settings import Settings
from schemas.topics import IDENTIFIED, INBOUND

__all__ = ["trace_lost"]

READ_SECONDS = 60.0


class _Inbound(msgspec.Struct):
    native_id: str


class _Identified(msgspec.Struct):
    message: _Inbound


async def trace_lost(settings: Settings, lost: set[str]) -> dict[str, list[str]]:
    """For each lost native id: `topic p/o (committed N: past it | not yet)` for every record."""
    found: dict[str, list[str]] = {key: [] for key in lost}
    if not lost:
        return found
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        for stage, spec, decode in (("intake", INBOUND, _native_of_inbound),
                                    ("brain", IDENTIFIED, _native_of_identified)):
            topic = settings.topic(spec)
            tps = [TopicPartition(topic, p) for p in range(settings.kafka_partitions)]
            committed = await admin.list_consumer_group_offsets(group_of(settings, stage), partitions=tps)
            for tp, offset, native in await _records(settings, tps, decode):
                if native not in lost:
                    continue
                mark = committed.get(tp)
                at = mark.offset if mark is not None else -1
                found[native].append(f"{topic} {tp.partition}/{offset} (group committed {at}: "
                                     f"{'past it' if at > offset else 'not past it'})")
    finally:
        await admin.close()
    return found


def _native_of_inbound(value: bytes) -> str:
    return msgspec.json.decode(value, type=_Inbound).native_id


def _native_of_identified(value: bytes) -> str:
    return msgspec.json.decode(value, type=_Identified).message.native_id


async def _records(settings: Settings, tps: list[TopicPartition], decode: Callable[[bytes], str]
                   ) -> list[tuple[TopicPartition, int, str]]:
    """Every record of the partitions up to their current end: (partition, offset, native id)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[tuple[TopicPartition, int, str]] = []
        async with asyncio.timeout(READ_SECONDS):
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                    out.extend((tp, r.offset, decode(r.value)) for r in records
                               if r.value is not None and r.offset < ends[tp])
        return out
    finally:
        await consumer.stop()
