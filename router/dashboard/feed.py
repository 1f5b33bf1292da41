"""The dashboard's feed: the topics it needs, read from a look-back window into the board.

A consumer in no group (it commits nothing and takes no partition from a worker) is
assigned every partition of the seven topics, starts at `now - lookback` and then follows
the ends. Bad records are skipped and counted; Kafka away is waited out. It lives in the
edge process, next to the HTTP server that serves the dashboard.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition
from prometheus_client import Counter

from router.dashboard.board import Board
from router.kafka import client_options
from router.settings import Settings
from schemas.codec import decode
from schemas.errors import ParseError
from schemas.topics import CONVERSATION, DEADLETTER, DELIVERY, HANDOFF, PROBE, ROUTED, SLA, TopicSpec

__all__ = ["TOPICS", "Feed", "apply"]

log = logging.getLogger(__name__)
SKIPPED = Counter("sb_dashboard_skipped_total", "Records the dashboard could not read", ["topic"])
TOPICS: tuple[TopicSpec, ...] = (ROUTED, CONVERSATION, SLA, DELIVERY, HANDOFF, DEADLETTER, PROBE)
_APPLY: dict[str, Callable[[Board, Any], None]] = {
    ROUTED.name: Board.routed, CONVERSATION.name: Board.lifecycle, SLA.name: Board.sla,
    DELIVERY.name: Board.delivery, HANDOFF.name: Board.handoff, DEADLETTER.name: Board.dead_letter,
    # verdicts of whichever edge probes a channel: the lease holder may be another process
    PROBE.name: Board.probe,
}
_MODELS = {spec.name: spec.model for spec in TOPICS}


def apply(board: Board, topic: str, value: bytes | None) -> bool:
    """Apply one record of `topic` (its base name, prefix stripped); False when unreadable."""
    base = next((name for name in _APPLY if topic.endswith(name)), None)
    if base is None:
        return False
    try:
        event: Any = decode(value or b"", _MODELS[base])
    except ParseError:
        SKIPPED.labels(base).inc()
        return False
    _APPLY[base](board, event)
    return True


class Feed:
    """Follows the topics into `board` until cancelled; `caught_up` is set once the window is read."""

    def __init__(self, settings: Settings, board: Board, clock: Callable[[], datetime],
                 lookback: timedelta) -> None:
        self._settings = settings
        self._board = board
        self._clock = clock
        self._lookback = lookback
        self.caught_up = asyncio.Event()
        self.changed = asyncio.Event()
        self._tidied: datetime | None = None

    async def run(self) -> None:
        """Read and follow, starting over after Kafka errors (the board skips what it saw)."""
        delay = 0.5
        task = asyncio.current_task()
        # a cancel that meets aiokafka's own retry under a timeout can come out as a KafkaError
        # or TimeoutError: the task's cancel count says the stop was asked for all the same
        while task is None or not task.cancelling():
            try:
                await self._follow()
            except (KafkaError, OSError, TimeoutError) as e:
                log.warning("dashboard feed lost Kafka; starting again", extra={"error": repr(e)})
            except Exception as e:  # a dashboard bug must not end the edge's view for good
                log.exception("dashboard feed failed; starting again", extra={"error": repr(e)})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _follow(self) -> None:
        consumer = AIOKafkaConsumer(**client_options(self._settings), group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="latest")
        await consumer.start()
        try:
            tps = await self._assign(consumer)
            ends = await consumer.end_offsets(tps)
            behind = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
            # the window's routed messages first: replies, receipts and SLA events read
            # before their conversation would find nothing to count against
            routed = self._settings.topic(ROUTED)
            later = [tp for tp in tps if tp.topic != routed]
            consumer.pause(*later)
            while True:
                if later and not any(tp.topic == routed for tp in behind):
                    consumer.resume(*later)
                    later = []
                batch = await consumer.getmany(timeout_ms=500, max_records=2000)
                for tp, records in batch.items():
                    for r in records:
                        apply(self._board, tp.topic, r.value)
                    if tp in behind and records and records[-1].offset + 1 >= ends[tp]:
                        behind.discard(tp)
                if batch:
                    self._tidy()
                    self.changed.set()
                if not behind:
                    self.caught_up.set()
        finally:
            await consumer.stop()

    def _tidy(self) -> None:
        """Let the board forget what it no longer shows, once a minute (it walks everything)."""
        now = self._clock()
        if self._tidied is None or now - self._tidied >= timedelta(minutes=1):
            self._board.forget(now)
            self._tidied = now

    async def _assign(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        tps = await self._partitions()
        consumer.assign(tps)
        since = int((self._clock() - self._lookback).timestamp() * 1000)
        starts = await consumer.offsets_for_times(dict.fromkeys(tps, since))
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            found = starts.get(tp)
            consumer.seek(tp, found.offset if found is not None else ends[tp])
        return tps

    async def _partitions(self) -> list[TopicPartition]:
        """Every partition of the topics; a consumer in no group learns of none by itself."""
        admin = AIOKafkaAdminClient(**client_options(self._settings))
        try:
            await admin.start()
            described = await admin.describe_topics([self._settings.topic(spec) for spec in TOPICS])
        finally:
            await admin.close()
        return [TopicPartition(d["topic"], p["partition"]) for d in described if not d["error_code"]
                for p in sorted(d["partitions"], key=lambda p: p["partition"])]
