"""Runs a connector's inbound source: every arrival onto Kafka, then its cursor committed.

Sends are pipelined (the next mail is read while Kafka acknowledges the last) but cursors
are committed strictly in order, each only after Kafka acknowledged its event, so a stop
at any moment neither loses nor repeats a message.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from mode import Service
from prometheus_client import Counter, Gauge

from connectors.base import Arrival, Inbound
from router.kafka import new_producer
from router.settings import Settings
from schemas.codec import encode
from schemas.deadletter import DeadLetter
from schemas.errors import AuthError, ConfigError, TransientError
from schemas.topics import DEADLETTER, INBOUND

__all__ = ["SourceRunner"]

log = logging.getLogger(__name__)
RECEIVED = Counter("sb_source_messages_total", "Deliveries a source handed to Kafka",
                   ["connector", "kind"])
UP = Gauge("sb_source_up", "1 while a connector's inbound source runs", ["connector"])
_IN_FLIGHT = 512


class SourceRunner(Service):
    """Pumps one inbound source into Kafka for as long as the process runs."""

    def __init__(self, name: str, source: Inbound[Any], settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.source = source
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._acks: asyncio.Queue[tuple[asyncio.Future[Any], Arrival] | None] = asyncio.Queue(_IN_FLIGHT)

    async def on_start(self) -> None:
        """Connect the source; auth or config failures stop this connector, not the process."""
        self._producer = new_producer(self.settings)
        await self._producer.start()
        try:
            await self.source.start()
        except (AuthError, ConfigError) as e:
            UP.labels(self.name).set(0)
            log.error("source refused to start", extra={"connector": self.name, "reason": e.reason})
            return
        UP.labels(self.name).set(1)
        self.add_future(self._pump())
        self.add_future(self._commit_in_order())

    async def on_stop(self) -> None:
        """Disconnect the source."""
        UP.labels(self.name).set(0)
        await self.source.stop()
        if self._producer is not None:
            await self._producer.stop()

    async def _pump(self) -> None:
        async for arrival in self.source.messages():
            future = await self._send(arrival)
            await self._acks.put((future, arrival))
        await self._acks.put(None)

    async def _send(self, arrival: Arrival) -> asyncio.Future[Any]:
        assert self._producer is not None, "on_start made it"
        item = arrival.item
        if isinstance(item, DeadLetter):
            topic, key, kind = DEADLETTER, item.stage.encode(), "deadletter"
        else:
            topic, key, kind = INBOUND, item.thread_key.encode(), "message"
        RECEIVED.labels(self.name, kind).inc()
        delay = 0.1
        while True:  # Kafka away is no reason to drop a customer's message: wait for it
            try:
                future: asyncio.Future[Any] = await self._producer.send(
                    self.settings.topic(topic), encode(item), key=key)
                return future
            except KafkaError as e:
                log.warning("kafka send failed; retrying", extra={"connector": self.name,
                                                                  "error": repr(e)})
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, 10.0)

    async def _commit_in_order(self) -> None:
        while (entry := await self._acks.get()) is not None:
            future, arrival = entry
            await self._acked(future, arrival)
            await self._committed(arrival)

    async def _committed(self, arrival: Arrival) -> None:
        """Commit the arrival's cursor, for as long as the cursor store is away."""
        delay = 0.1
        while True:
            try:
                await self.source.commit(arrival.cursor)
                return
            except TransientError as e:
                # Kafka has the message: a cursor saved late only means a re-read, deduplicated
                log.warning("cursor not saved; trying again", extra={"connector": self.name,
                                                                     "reason": e.reason})
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, 10.0)

    async def _acked(self, future: asyncio.Future[Any], arrival: Arrival) -> None:
        """Wait until Kafka holds the arrival, sending it again for as long as Kafka refuses it.

        The cursor must not move past a message Kafka has not taken, and the runner must
        not die of it either: an outage or a refused record is retried with backoff (a
        resent message may land after a later one of its thread; dedupe drops a copy).
        """
        delay = 0.1
        while True:
            try:
                await future
                return
            except (KafkaError, TimeoutError) as e:
                log.warning("kafka did not take a message; sending it again", extra={
                    "connector": self.name, "error": repr(e)})
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, 10.0)
                future = await self._send(arrival)
