"""Test helpers that talk to the real Kafka: publish, read a topic to its end, wait on commits."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from router.settings import Settings
from tests.waiting import POLL_SECONDS


async def publish(settings: Settings, topic: str, items: Sequence[tuple[bytes, bytes]],
                  timestamp_ms: int | None = None) -> None:
    """Publish (key, value) pairs and wait until Kafka has every one; `timestamp_ms` backdates them."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        pending = [await producer.send(topic, value, key=key, timestamp_ms=timestamp_ms)
                   for key, value in items]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def partitions_of(settings: Settings, topic: str) -> list[int]:
    """The partition numbers of an existing topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
        assert described["error_code"] == 0, f"{topic}: {described}"
        return sorted(p["partition"] for p in described["partitions"])
    finally:
        await admin.close()


async def read_all(settings: Settings, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record now on `topic`, from the beginning to the current end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        partitions = await partitions_of(settings, topic)
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + 30
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for records in (await consumer.getmany(timeout_ms=200)).values():
                out.extend(r for r in records if r.offset < ends[TopicPartition(r.topic, r.partition)])
        return out
    finally:
        await consumer.stop()


async def wait_committed(settings: Settings, group: str, topic: str, timeout: float = 60) -> None:
    """Wait until `group` has committed every partition of `topic` up to its end."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        partitions = await partitions_of(settings, topic)
        tps = [TopicPartition(topic, p) for p in partitions]
        deadline = time.monotonic() + timeout
        while True:
            ends = await consumer.end_offsets(tps)
            committed = await admin.list_consumer_group_offsets(group, partitions=tps)
            # a partition with no commit reports offset -1
            behind = {tp: ends[tp] - max(0, committed[tp].offset if tp in committed else 0)
                      for tp in tps}
            if all(v <= 0 for v in behind.values()):
                return
            assert time.monotonic() < deadline, f"group {group} still behind on {topic}: {behind}"
            await asyncio.sleep(POLL_SECONDS)
    finally:
        await consumer.stop()
        await admin.close()


# every prefix this test session handed out: its topics are deleted when the session ends
ISSUED: list[str] = []


def unique_prefix() -> str:
    """A topic prefix no other test uses."""
    prefix = f"t{uuid.uuid4().hex[:10]}-"
    ISSUED.append(prefix)
    return prefix


async def delete_topics(settings: Settings, prefixes: Sequence[str]) -> int:
    """Delete every topic whose name starts with one of `prefixes`; returns how many.

    Each test deployment makes a dozen topics of four partitions; left behind, a few
    hundred runs hold more open files than a development machine lets Kafka have.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        doomed = [t for t in await admin.list_topics() if t.startswith(tuple(prefixes))]
        for start in range(0, len(doomed), 100):
            await admin.delete_topics(doomed[start:start + 100])
        return len(doomed)
    finally:
        await admin.close()


async def wait_drained(settings: Settings, timeout: float = 90) -> None:
    """Wait until the deployment's workers have committed every stage's input to its end."""
    from router.app import STAGE_TOPICS
    from router.loop import group_of

    for stage in ("intake", "brain", "send"):
        for spec in STAGE_TOPICS[stage]:
            await wait_committed(settings, group_of(settings, stage), settings.topic(spec), timeout)


async def rewind(settings: Settings, group: str, topic: str) -> None:
    """Commit offset 0 on every partition of `topic` for `group`: a redelivery of all of it.

    Only while no member of the group runs; the group's next worker re-reads everything.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in await partitions_of(settings, topic)]
        consumer.assign(tps)
        await consumer.commit(dict.fromkeys(tps, 0))
    finally:
        await consumer.stop()
