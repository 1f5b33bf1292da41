"""A stage's batch loop on real Kafka: reruns a failing batch, commits only after its outputs."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from processors.stage import Output, Record
from processors.stores.tags import key_partition
from router.kafka import ensure_topics, leader_topic
from router.loop import PREFETCH_HOLD_SECONDS, Stages, adopt_offsets, group_of
from router.settings import Settings
from schemas.topics import IDENTIFIED, INBOUND
from tests.kafka_tools import publish, read_all, unique_prefix, wait_committed
from tests.waiting import until

pytestmark = pytest.mark.integration


@pytest.fixture
async def deployment(stack: Settings) -> Settings:
    prefix = unique_prefix()
    settings = stack.model_copy(update={"topic_prefix": prefix, "app_id": f"{prefix}sb", "batch_size": 10})
    await ensure_topics(settings)
    return settings


class Flaky:
    """A stage that fails its first `failures` batches, then copies each record to IDENTIFIED."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts = 0

    async def process(self, records: Sequence[Record]) -> list[Output]:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise ConnectionError("Redis away")
        return [Output(IDENTIFIED, r.value, r.value) for r in records]


@pytest.fixture
async def stages(deployment: Settings) -> AsyncIterator[Stages]:
    running = Stages(deployment)
    yield running
    await running.stop()


async def test_a_failing_batch_runs_again_and_its_offsets_wait_for_its_outputs(
        deployment: Settings, stages: Stages) -> None:
    flaky = Flaky(failures=2)
    stages.add("intake", [deployment.topic(INBOUND)], flaky.process)
    await stages.start()
    sent = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(25)]
    await publish(deployment, deployment.topic(INBOUND), sent)
    await until(lambda: flaky.attempts > flaky.failures and not stages.stalled, "the stage never recovered")
    await wait_committed(deployment, group_of(deployment, "intake"), deployment.topic(INBOUND))
    copied = sorted(r.value for r in await read_all(deployment, deployment.topic(IDENTIFIED)))
    # every record out exactly once: the failed attempts produced nothing
    assert copied == sorted(v for _, v in sent)
    assert stages.assigned()
    # fetched records hold back the next fetch until the loop takes them (FetchPace)
    assert [loop._consumer._fetcher._prefetch_backoff for loop in stages.loops
            ] == [PREFETCH_HOLD_SECONDS]


class Overlapping:
    """Copies each record to IDENTIFIED; its first confirm waits until the batch after it is processed.

    With `fail`, that first confirm then fails, as a Redis gone away would.
    """

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.processed: list[list[str]] = []
        self.confirmed: list[list[str]] = []
        self.forgotten = 0
        self._later = asyncio.Event()

    async def process(self, records: Sequence[Record]) -> list[Output]:
        self.processed.append([r.owner for r in records])
        if len(self.processed) > 1:
            self._later.set()
        return [Output(IDENTIFIED, r.value, r.value) for r in records]

    async def confirm(self, records: Sequence[Record]) -> None:
        first = not self.confirmed and not self.forgotten
        if first:
            # a loop that waited for this confirm before processing on would never get here
            await asyncio.wait_for(self._later.wait(), 60)
        if first and self.fail:
            raise ConnectionError("Redis away")
        self.confirmed.append([r.owner for r in records])

    def forget(self) -> None:
        self.forgotten += 1


def _in_order(batches: list[list[str]]) -> dict[str, list[int]]:
    """Each partition's offsets, in the order the batches held them."""
    offsets: dict[str, list[int]] = defaultdict(list)
    for batch in batches:
        for owner in batch:
            where, offset = owner.rsplit("/", 1)
            offsets[where].append(int(offset))
    return dict(offsets)


async def test_the_next_batch_is_processed_while_the_one_before_is_acknowledged_and_confirmed(
        deployment: Settings, stages: Stages) -> None:
    stage = Overlapping()
    sent = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(40)]
    await publish(deployment, deployment.topic(INBOUND), sent)
    stages.add("intake", [deployment.topic(INBOUND)], stage.process, stage.confirm, stage.forget)
    await stages.start()
    await wait_committed(deployment, group_of(deployment, "intake"), deployment.topic(INBOUND))
    # the first confirm ended once a later batch was processed: they overlapped, and nothing ran twice
    assert len(stage.processed) > 1 and stage.confirmed[0] == stage.processed[0]
    assert stage.confirmed == stage.processed and not stage.forgotten and not stages.stalled
    every = [owner for batch in stage.confirmed for owner in batch]
    assert len(every) == len(set(every)) == len(sent)
    # confirmed in the order they were read, each partition's offsets rising
    assert all(offsets == sorted(offsets) for offsets in _in_order(stage.confirmed).values())
    copied = sorted(r.value for r in await read_all(deployment, deployment.topic(IDENTIFIED)))
    assert copied == sorted(v for _, v in sent)


async def test_a_failed_confirm_runs_its_batch_again_then_the_batch_processed_on_its_state(
        deployment: Settings, stages: Stages) -> None:
    stage = Overlapping(fail=True)
    sent = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(40)]
    await publish(deployment, deployment.topic(INBOUND), sent)
    stages.add("intake", [deployment.topic(INBOUND)], stage.process, stage.confirm, stage.forget)
    await stages.start()
    await wait_committed(deployment, group_of(deployment, "intake"), deployment.topic(INBOUND))
    await until(lambda: not stages.stalled, "the stage never recovered")
    first, second = stage.processed[:2]
    # what the second batch carried was dropped, and both ran again, one at a time, in order
    assert stage.forgotten >= 1
    assert stage.processed[2:4] == [first, second] and stage.confirmed[:2] == [first, second]
    every = [owner for batch in stage.confirmed for owner in batch]
    assert len(every) == len(set(every)) == len(sent)
    assert all(offsets == sorted(offsets) for offsets in _in_order(stage.confirmed).values())
    # each record out at least once: the first attempts' outputs were in Kafka before the confirm failed
    copied = {r.value for r in await read_all(deployment, deployment.topic(IDENTIFIED))}
    assert copied == {v for _, v in sent}


class Fanout:
    """A stage that turns each record into three of ~6 KB, keyed by the record's own key."""

    async def process(self, records: Sequence[Record]) -> list[Output]:
        return [Output(IDENTIFIED, r.value.split(b"/")[0], r.value + b"/" + bytes([65 + i]) * 6_000)
                for r in records for i in range(3)]


async def test_outputs_land_in_order_on_the_partition_of_their_key_whatever_the_batch_size(
        deployment: Settings) -> None:
    # a produce batch holds two of these records: most go out in several batches a partition
    small = deployment.model_copy(update={"kafka_batch_bytes": 16 * 1024})
    stages = Stages(small)
    stages.add("intake", [small.topic(INBOUND)], Fanout().process)
    await stages.start()
    try:
        sent = [(f"k{i % 5}".encode(), f"k{i % 5}/{i}".encode()) for i in range(30)]
        await publish(small, small.topic(INBOUND), sent)
        await wait_committed(small, group_of(small, "intake"), small.topic(INBOUND))
    finally:
        await stages.stop()
    out = await read_all(small, small.topic(IDENTIFIED))
    assert len(out) == 90
    for record in out:
        assert record.key is not None and record.value is not None
        assert record.partition == key_partition(record.key, small.kafka_partitions)
    # per key, the outputs keep the inputs' order and each input's own order
    for key in {k for k, _ in sent}:
        got = [r.value.rsplit(b"/", 1)[0] + r.value[-1:] for r in sorted(out, key=lambda r: r.offset)
               if r.key == key]
        assert got == [v + bytes([65 + i]) for k, v in sent if k == key for i in range(3)]


async def test_a_stages_new_group_starts_where_the_faust_group_committed(deployment: Settings) -> None:
    topic = deployment.topic(INBOUND)
    legacy = AIOKafkaConsumer(bootstrap_servers=deployment.kafka_bootstrap, group_id=deployment.app_id,
                              enable_auto_commit=False)
    await legacy.start()
    try:
        tp = TopicPartition(topic, 0)
        legacy.assign([tp])
        await legacy.commit({tp: 7})
    finally:
        await legacy.stop()
    group = group_of(deployment, "intake")
    await adopt_offsets(deployment, group, [topic])
    # only once: a group that has offsets of its own keeps them
    await adopt_offsets(deployment, group, [deployment.topic(IDENTIFIED)])
    admin = AIOKafkaAdminClient(bootstrap_servers=deployment.kafka_bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    assert {t: m.offset for t, m in offsets.items()} == {TopicPartition(topic, 0): 7}


async def test_the_leaders_topic_is_ready_before_the_faust_app_subscribes(deployment: Settings) -> None:
    # the fixture ran ensure_topics: Faust finds its leader's topic made, with a leader
    admin = AIOKafkaAdminClient(bootstrap_servers=deployment.kafka_bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([leader_topic(deployment)])
    finally:
        await admin.close()
    assert described["error_code"] == 0
    assert [p["leader"] >= 0 for p in described["partitions"]] == [True]
    assert await ensure_topics(deployment) == []
