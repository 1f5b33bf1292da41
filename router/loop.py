"""A stage's consume loop, shaped like the raw pipe: fetch a batch, process, produce, commit.

`getmany` → the stage's `process` → every output handed to the producer → the next batch
fetched and processed while Kafka acknowledges this one's → the stage's `confirm` (the
brain's state and "done" marks) → the batch's offsets committed. Two batches overlap at
most: a batch is confirmed only after the one before it, and the one after it is sent
only once this one is settled, so nothing is committed before its outputs are in Kafka
and a worker killed at any point loses nothing: what it had not committed is read again
by whoever takes the partitions, and the claims make that safe (decision 0003).

A stage that fails (Redis or Kafka away, or a bug) runs the same batch again after a
backoff, for as long as it takes, while readiness names the stalled stage. When a batch's
acknowledgements or confirm fail, the batch processed after it (on the state it left)
is forgotten and both run again, one at a time. A stop cancels the batch in flight unless
it finishes within the grace: it was not committed, so it is read again. A rebalance
waits for the batches in flight before the partitions go, so the next owner starts
where this one committed.

Each stage has a consumer group of its own (`<app id>.<stage>`), so stages scale and
stall apart. The range assignor hands out the same partition numbers of every topic a
stage reads, keeping co-partitioned topics (the brain's messages and conversation
events, both keyed by customer) on one worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError
from mode import Service

from processors.metrics import STAGE_RETRIES, report_lag
from processors.stage import Output, Record
from processors.stores.tags import key_partition
from router.kafka import client_options, new_producer
from router.settings import Settings

__all__ = ["Confirm", "FetchPace", "Forget", "Process", "StageLoop", "Stages", "adopt_offsets",
           "group_of", "produce", "send"]

log = logging.getLogger(__name__)
Process = Callable[[Sequence[Record]], Awaitable[list[Output]]]
Confirm = Callable[[Sequence[Record]], Awaitable[None]]
# drops what a stage carries from batches processed but not confirmed (the brain's state)
Forget = Callable[[], None]
RETRY_CAP_SECONDS = 30.0
# how long a stop waits for the batch in flight before it is cancelled (and read again)
STOP_GRACE_SECONDS = 10.0
FETCH_WAIT_MS = 200
# a batch that was waiting in the fetcher longer than this is topped up with what came since,
# waiting at most TOP_UP_MS for it (see StageLoop._top_up)
STALE_SECONDS = 0.005
TOP_UP_MS = 10
# a fetch that took longer than this waited for its records: they are fresh
WAITED_SECONDS = 0.002
# while records flow, a fetch returns once this much is there or SB_BATCH_WITHIN_SECONDS
# passed (FetchPace); under a burst it is there at once
FILL_BYTES = 64 * 1024
# idle, a fetch waits this long at the broker for a first record
IDLE_WAIT_MS = 500
LAG_EVERY_SECONDS = 2.0
# how long a start waits for a group coordinator to read the Faust group's offsets
ADOPT_SECONDS = 30.0
# how long records fetched but not yet taken hold back the next fetch to their broker:
# longer than any batch, since the loop takes every fetched record before it fetches again
PREFETCH_HOLD_SECONDS = 300.0


def group_of(settings: Settings, stage: str) -> str:
    """The consumer group of one stage."""
    return f"{settings.app_id}.{stage}"


async def send(producer: AIOKafkaProducer, settings: Settings, outputs: Sequence[Output]
               ) -> list[asyncio.Future[Any]]:
    """Hand every output to the producer, in order; returns Kafka's acknowledgements to wait for.

    One batch per partition, built here: the producer's per-record `send` (a future, a
    partitioner call and an accumulator step each) was a tenth of a worker's CPU. Records
    land where `send` would put them (key_partition is Kafka's default partitioner), in order.
    """
    partitions: dict[str, int] = {}
    batches: dict[tuple[str, int], Any] = {}
    pending = []
    for o in outputs:
        topic = settings.topic(o.topic)
        count = partitions.get(topic)
        if count is None:
            count = partitions[topic] = len(await producer.partitions_for(topic))
        tp = (topic, key_partition(o.key, count))
        batch = batches.get(tp)
        if batch is None:
            batch = batches[tp] = producer.create_batch()
        if batch.append(key=o.key, value=o.value, timestamp=None) is None:
            # full (SB_KAFKA_BATCH_BYTES): this one goes, the record starts the next
            pending.append(await producer.send_batch(batch, tp[0], partition=tp[1]))
            batch = batches[tp] = producer.create_batch()
            batch.append(key=o.key, value=o.value, timestamp=None)  # an empty batch takes any record
    for (topic, partition), batch in batches.items():
        pending.append(await producer.send_batch(batch, topic, partition=partition))
    return pending


async def produce(producer: AIOKafkaProducer, settings: Settings, outputs: Sequence[Output]) -> None:
    """Send every output and wait until Kafka has all of them."""
    for delivered in await send(producer, settings, outputs):
        await delivered  # Kafka's acknowledgement; a failure reruns the stage's batch


def _abandon(acks: Sequence[asyncio.Future[Any]]) -> None:
    """Acknowledgements no one will wait for: their failures are read, not logged as lost."""
    for ack in acks:
        ack.add_done_callback(lambda f: f.cancelled() or f.exception())


async def adopt_offsets(settings: Settings, group: str, topics: Sequence[str]) -> None:
    """A stage's new group starts where the Faust app's group (`<app id>`) committed, once.

    Before the stages had groups of their own, one Faust group read every topic; an
    upgrade without this would read every retained record again.
    """
    deadline = time.monotonic() + ADOPT_SECONDS
    while True:
        try:
            legacy = await _legacy_offsets(settings, group)
            break
        except KafkaError as e:
            # a broker that has just started has no group coordinator yet
            if not e.retriable or time.monotonic() > deadline:
                log.warning("could not read the Faust group's offsets; the stage's group starts "
                            "where auto_offset_reset says", extra={"group": group, "error": repr(e)})
                return
            await asyncio.sleep(0.5)
    wanted = {tp: mark.offset for tp, mark in legacy.items() if tp.topic in topics and mark.offset >= 0}
    if not wanted:
        return
    consumer = AIOKafkaConsumer(**client_options(settings), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(wanted))
        await consumer.commit(wanted)
    finally:
        await consumer.stop()
    log.info("stage group starts where the Faust group committed", extra={"group": group,
                                                                          "partitions": len(wanted)})


async def _legacy_offsets(settings: Settings, group: str) -> dict[TopicPartition, Any]:
    """The Faust group's committed offsets, or none when `group` has offsets of its own."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        if await admin.list_consumer_group_offsets(group):
            return {}
        return dict(await admin.list_consumer_group_offsets(settings.app_id))
    finally:
        await admin.close()


class FetchPace:
    """How a loop's fetcher fetches: never beside records not yet taken; while records flow, a batch's worth.

    aiokafka has no public way to set either on a running consumer. It reads its fetcher's
    settings each time it fetches, so this sets them there, and refuses to start, naming
    itself, when an upgrade renames them.

    - Fetch again only once the loop has taken what was fetched. aiokafka waits 0.1 s
      (`prefetch_backoff`) for fetched records to be taken, then fetches the partitions that
      hold none. For the brain those are the conversation topic's, which rarely have
      records: the broker held that fetch while the loop, having taken its records, could
      not fetch the busy topic until it came back. One batch longer than 0.1 s set it off,
      and each hold made the next batch bigger and longer (decision 0006, eighth part).
    - A cycle (fetch, process, produce, acknowledge, commit) costs a few milliseconds
      whatever its size. Fetching as soon as one record is there made a cycle of nearly
      every record at a moderate rate: a worker spent most of a core at 200 msg/s. So while
      records flow, the next fetch asks the broker to wait until FILL_BYTES are there or
      `batch_within_seconds` passed; once a fetch comes back empty, fetches long-poll
      again, so a lone record after a quiet spell is taken at once (0006, fourteenth part).
    """

    def __init__(self, consumer: AIOKafkaConsumer, within_seconds: float) -> None:
        fetcher = consumer._fetcher
        if not all(hasattr(fetcher, name)
                   for name in ("_prefetch_backoff", "_fetch_min_bytes", "_fetch_max_wait_ms")):
            raise RuntimeError("aiokafka's fetcher has no _prefetch_backoff, _fetch_min_bytes or "
                               "_fetch_max_wait_ms; see router.loop.FetchPace")
        fetcher._prefetch_backoff = PREFETCH_HOLD_SECONDS
        self._fetcher = fetcher
        self._within_ms = round(within_seconds * 1000)

    def flowing(self, records: bool) -> bool:
        """Set how the next fetch waits from whether the last brought records; True: for a batch's worth."""
        filling = records and self._within_ms > 0
        self._fetcher._fetch_min_bytes, self._fetcher._fetch_max_wait_ms = (
            (FILL_BYTES, self._within_ms) if filling else (1, IDLE_WAIT_MS))
        return filling


@dataclass(slots=True)
class _Batch:
    """A fetched batch: its records and the offsets to commit once it is done."""

    records: list[Record]
    offsets: dict[TopicPartition, int]


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Partitions leave only between batches; the lag gauges follow the assignment."""

    def __init__(self, loop: StageLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        async with self._loop.between_batches:
            await self._loop.drain()
            await self._loop.commit_now()
            self._loop.forget(revoked)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        self._loop.joined = True
        log.info("partitions assigned", extra={"stage": self._loop.name,
                                                "partitions": ",".join(f"{t.topic}/{t.partition}"
                                                                       for t in sorted(assigned))})


class StageLoop:
    """One stage's consumer and its batch loop; `stalled` says why it is rerunning a batch."""

    def __init__(self, name: str, topics: Sequence[str], process: Process, confirm: Confirm | None,
                 *, settings: Settings, producer: Callable[[], AIOKafkaProducer],
                 stalled: dict[str, str], forget: Forget | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.topics = tuple(topics)
        self._process = process
        self._confirm = confirm
        self._forget_carried = forget
        self._settings = settings
        self._producer = producer
        self._stalled = stalled
        self.between_batches = asyncio.Lock()
        self._uncommitted: dict[TopicPartition, int] = {}
        # commits run beside the next batch: one task, committing again while batches finish
        self._committing: asyncio.Task[None] | None = None
        self._commit_again = False
        # the batch sent last, and the task awaiting its acknowledgements and confirm
        self._sent: _Batch | None = None
        self._finishing: asyncio.Task[bool] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.joined = False
        # the next offset to read of each partition this loop has processed, for the lag gauge
        self._next: dict[TopicPartition, int] = {}
        self._lag_at = 0.0
        self._lag_reported: set[tuple[str, int]] = set()
        self._clock = clock  # monotonic seconds: when the fetcher's batch was taken, how long a fetch waited
        self._took = clock()
        self._pace: FetchPace | None = None

    def assigned(self) -> bool:
        """True once this loop has joined its group (with more workers than partitions, idle)."""
        return self.joined

    async def start(self) -> None:
        """Join the stage's group and start the loop."""
        settings = self._settings
        session_ms = int(settings.kafka_session_timeout_seconds * 1000)
        self._consumer = AIOKafkaConsumer(
            **client_options(settings),
            group_id=group_of(settings, self.name),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,),
            max_poll_records=settings.batch_size,
            fetch_max_wait_ms=IDLE_WAIT_MS,
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=session_ms // 4,
            # a batch rerun through an outage must not cost the partitions
            max_poll_interval_ms=max(300_000, session_ms * 30),
        )
        await adopt_offsets(settings, group_of(settings, self.name), self.topics)
        self._consumer.subscribe(list(self.topics), listener=_Rebalance(self))
        await self._consumer.start()
        self._pace = FetchPace(self._consumer, settings.batch_within_seconds)
        self._task = asyncio.create_task(self._run(), name=f"stage-{self.name}")

    async def stop(self) -> None:
        """Let the batches in flight finish within the grace, else cancel them; then leave the group."""
        self._stopping = True
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=STOP_GRACE_SECONDS)
            if not done:
                log.warning("stopping with a batch unfinished; it was not committed and will be read again",
                            extra={"stage": self.name})
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._finishing is not None:
            # the batch sent last: acknowledged and confirmed within the grace, or read again
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._finishing), STOP_GRACE_SECONDS)
        # what finished is committed before the group is left, so the next owner starts after it
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.commit_now(), STOP_GRACE_SECONDS)
        if self._consumer is not None:
            with contextlib.suppress(KafkaError, TimeoutError):
                await asyncio.wait_for(self._consumer.stop(), STOP_GRACE_SECONDS)

    async def _run(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        while not self._stopping:
            try:
                fetched, room = await self._fetch(consumer)
            except KafkaError as e:
                STAGE_RETRIES.labels(self.name, type(e).__name__).inc()
                log.warning("fetch failed; trying again", extra={"stage": self.name, "error": repr(e)})
                await asyncio.sleep(1.0)
                continue
            async with self.between_batches:
                if fetched:
                    if room:  # under the lock: a rebalance waits for these records as for the rest
                        await self._top_up(consumer, fetched, room)
                    await self._overlap(_Batch(
                        [Record(m.topic, m.partition, m.offset, m.value or b"")
                         for messages in fetched.values() for m in messages],
                        {tp: messages[-1].offset + 1 for tp, messages in fetched.items()}))
                elif self._finishing is not None and self._finishing.done():
                    await self._settle()  # idle: a batch whose acks or confirm failed runs again now
            self._report_lag()

    async def _fetch(self, consumer: AIOKafkaConsumer) -> tuple[dict[TopicPartition, list[Any]], int]:
        """The fetcher's next batch, and how many records a top-up may add to it (0: none)."""
        size = self._settings.batch_size
        asked = self._clock()
        fetched: dict[TopicPartition, list[Any]] = await consumer.getmany(timeout_ms=FETCH_WAIT_MS,
                                                                          max_records=size)
        waited = self._clock() - asked
        # set before the fetcher builds its next request; a fetch the broker holds for a
        # batch's worth would not come back within a top-up
        filling = self._pace is not None and self._pace.flowing(bool(fetched))
        room = size - sum(map(len, fetched.values()))
        stale = (bool(fetched) and not filling
                 and waited < WAITED_SECONDS and asked - self._took > STALE_SECONDS)
        self._took = self._clock()
        return fetched, room if stale and room > 0 else 0

    async def _top_up(self, consumer: AIOKafkaConsumer, fetched: dict[TopicPartition, list[Any]],
                      room: int) -> None:
        """Add to a batch what reached Kafka while it waited in the fetcher; each partition stays in order.

        The fetcher fetches again as soon as the loop takes what it holds (FetchPace), so
        under steady load the batch the loop takes next was fetched a whole batch earlier,
        and every record waited one cycle more than it had to. When the batch was already
        there (the fetch did not wait) and is older than STALE_SECONDS, the fetch its taking
        started is waited for, at most TOP_UP_MS.
        """
        try:
            more = await consumer.getmany(timeout_ms=TOP_UP_MS, max_records=room)
        except KafkaError:
            return  # the next fetch meets it again, and says so
        for tp, messages in more.items():
            fetched.setdefault(tp, []).extend(messages)
        self._took = self._clock()

    async def _overlap(self, batch: _Batch) -> None:
        """Process and send a batch while the one before it is acknowledged and confirmed."""
        acks: list[asyncio.Future[Any]] | None = None
        try:
            acks = await send(self._producer(), self._settings, await self._process(batch.records))
        except Exception as e:  # noqa: BLE001 - run again below, after the batch before it
            self._failed(e, 1)
        if await self._settle() or acks is None:
            # processed on the state of a batch that failed, or failed itself: again, alone
            if acks is not None:
                _abandon(acks)
            await self._rerun(batch)
            return
        self._sent = batch
        self._finishing = asyncio.create_task(self._finish(batch, acks), name=f"finish-{self.name}")

    async def _finish(self, batch: _Batch, acks: Sequence[asyncio.Future[Any]]) -> bool:
        """Wait for a sent batch's acknowledgements, then confirm it; False when it must run again."""
        try:
            for ack in acks:
                await ack  # Kafka's acknowledgement
            if self._confirm is not None:
                # shielded: a stop must not cut between "Kafka has it" and "done"
                await asyncio.shield(self._confirm(batch.records))
        except Exception as e:  # noqa: BLE001 - the batch is rerun, never skipped
            _abandon(acks)
            self._failed(e, 1)
            return False
        self._done(batch)
        return True

    async def _unsettled(self) -> _Batch | None:
        """Wait for the batch sent last; it, if its acks or confirm failed (what was carried is dropped)."""
        task, batch = self._finishing, self._sent
        if task is None or batch is None:
            return None
        finished = await asyncio.shield(task)
        # cleared only now: a stop that cancels this wait still waits for the batch (stop)
        self._finishing = self._sent = None
        if finished:
            return None
        self._forgotten()
        return batch

    async def _settle(self) -> bool:
        """Wait for the batch sent last; run it again, alone, if it failed. True if it had to."""
        failed = await self._unsettled()
        if failed is not None:
            await self._rerun(failed)
        return failed is not None

    async def drain(self) -> None:
        """Before partitions go: wait for the batch sent last; if it failed, their next owner reruns it."""
        if await self._unsettled() is not None:
            self._stalled.pop(self.name, None)

    async def _rerun(self, batch: _Batch) -> None:
        """Run a batch again, alone, from the stage's store: nothing carried from another batch."""
        self._forgotten()
        await self._until_done(batch.records)
        self._done(batch)

    def _forgotten(self) -> None:
        """What the stage carried from unconfirmed batches is dropped: the next runs from its store."""
        if self._forget_carried is not None:
            self._forget_carried()

    def _done(self, batch: _Batch) -> None:
        for tp, offset in batch.offsets.items():
            self._uncommitted[tp] = self._next[tp] = offset
        self._commit_soon()

    def _failed(self, e: Exception, attempt: int, retry_in: float = 0.0) -> None:
        STAGE_RETRIES.labels(self.name, type(e).__name__).inc()
        self._stalled[self.name] = f"{type(e).__name__} on attempt {attempt}: {str(e)[:200]}"
        log.warning("stage failed; the same batch runs again", extra={
            "stage": self.name, "attempt": attempt, "retry_in": round(retry_in, 2), "error": repr(e)})

    async def _until_done(self, records: Sequence[Record]) -> None:
        """Run one batch until its outputs are in Kafka and confirmed; only a stop (cancel) ends it sooner."""
        attempt = 0
        while True:
            try:
                await produce(self._producer(), self._settings, await self._process(records))
                if self._confirm is not None:
                    # shielded: a stop must not cut between "Kafka has it" and "done"
                    await asyncio.shield(self._confirm(records))
            except Exception as e:  # noqa: BLE001 - the batch is rerun, never skipped
                attempt += 1
                delay = min(RETRY_CAP_SECONDS, 0.2 * 2 ** min(attempt, 10)) * random.uniform(0.5, 1.0)
                self._failed(e, attempt, delay)
                self._forgotten()
                await asyncio.sleep(delay)
                continue
            if self._stalled.pop(self.name, None) is not None:
                log.info("stage recovered", extra={"stage": self.name, "attempts": attempt + 1})
            return

    def _commit_soon(self) -> None:
        """Commit beside the next batch: Kafka's round trip no longer sits between two batches.

        Safe because a commit only ever follows its batch's outputs and "done" marks; a
        crash before it lands means the batch is read again, which the claims make harmless.
        """
        self._commit_again = True
        if self._committing is None or self._committing.done():
            self._committing = asyncio.create_task(self._commit_while_new(), name=f"commit-{self.name}")

    async def _commit_while_new(self) -> None:
        while self._commit_again:
            self._commit_again = False
            await self.commit()

    async def commit_now(self) -> None:
        """Wait for the commit in flight, then commit whatever is left (a rebalance, a stop)."""
        if self._committing is not None:
            with contextlib.suppress(Exception):
                await self._committing
        await self.commit()

    async def commit(self) -> None:
        """Commit what was processed; a failed commit is carried to the next one."""
        if not self._uncommitted or self._consumer is None:
            return
        offsets = dict(self._uncommitted)
        try:
            await self._consumer.commit(offsets)
        except KafkaError as e:
            # read again by whoever has the partition next: the claims make that safe
            STAGE_RETRIES.labels(self.name, type(e).__name__).inc()
            log.warning("commit failed; carried to the next batch", extra={"stage": self.name,
                                                                           "error": repr(e)})
            return
        for tp, offset in offsets.items():
            if self._uncommitted.get(tp) == offset:
                del self._uncommitted[tp]

    def forget(self, revoked: Sequence[TopicPartition]) -> None:
        """Drop what could not be committed on partitions that went: their next owner reads it again."""
        for tp in revoked:
            self._uncommitted.pop(tp, None)
            self._next.pop(tp, None)

    def _report_lag(self) -> None:
        """Records behind the end of each partition this loop holds, every couple of seconds."""
        now = time.monotonic()
        if self._consumer is None or now - self._lag_at < LAG_EVERY_SECONDS:
            return
        self._lag_at = now
        lags = {}
        for tp in self._consumer.assignment():
            end, at = self._consumer.highwater(tp), self._next.get(tp)
            if end is not None and at is not None:
                lags[tp.topic, tp.partition] = end - at
        # partitions that moved to another worker leave this one's gauges
        self._lag_reported = report_lag(lags, self._lag_reported)


class Stages(Service):
    """The stage loops of a worker and the producer they share; started after the senders."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.loops: list[StageLoop] = []
        self.stalled: dict[str, str] = {}
        self._producer: AIOKafkaProducer | None = None

    def add(self, name: str, topics: Sequence[str], process: Process, confirm: Confirm | None = None,
            forget: Forget | None = None) -> None:
        """A stage to run: its input topics, its batch function, its "done" step and what drops its carry."""
        self.loops.append(StageLoop(name, topics, process, confirm, settings=self.settings,
                                    producer=self.producer, stalled=self.stalled, forget=forget))

    def producer(self) -> AIOKafkaProducer:
        """The started producer."""
        assert self._producer is not None, "the stages' producer is not started"
        return self._producer

    def assigned(self) -> bool:
        """True once every loop has joined its group."""
        return all(loop.assigned() for loop in self.loops)

    async def on_start(self) -> None:
        """Start the producer, then every loop."""
        if not self.loops:
            return
        self._producer = new_producer(self.settings)
        await self._producer.start()
        for loop in self.loops:
            await loop.start()

    async def on_stop(self) -> None:
        """Stop every loop (each finishes or drops its batch), then the producer."""
        await asyncio.gather(*(loop.stop() for loop in self.loops))
        if self._producer is not None:
            with contextlib.suppress(KafkaError, TimeoutError):
                await asyncio.wait_for(self._producer.stop(), STOP_GRACE_SECONDS)
