"""Process composition: the stream worker, the HTTP server, or both, in one event loop."""

from __future__ import annotations

import asyncio
import gc
import logging
import logging.config
import os
import threading
import time
from typing import Any

import faust
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from mode import Service
from redis.asyncio import Redis

from processors import compiled
from processors.stores.cursors import RedisCursorStore
from processors.stores.retag import check_layout
from processors.stores.tags import Tags
from router.app import Pipeline
from router.channels import Channels, configured
from router.http.app import edge_app
from router.http.server import Check, build_app, serve
from router.kafka import ensure_topics, new_producer
from router.logs import logging_config
from router.policy_watch import PolicyHolder
from router.probes import ProbeService, target_of
from router.probes import configured as configured_probes
from router.settings import Settings
from router.sources import SourceRunner
from router.tools import ToolBox
from router.vocabulary import vocabulary
from schemas.codec import encode
from schemas.errors import AuthError, ConfigError, TransientError
from schemas.identified import IdentityLink
from schemas.topics import IDENTITY, INBOUND

__all__ = ["HttpService", "SenderService", "run_worker"]

log = logging.getLogger(__name__)
# SIGTERM always stops a process within this; a stop that hangs exits with the code below
STOP_DEADLINE_SECONDS = 30.0
EXIT_STOP_DEADLINE = 75


class HttpService(Service):
    """Serves the HTTP API beside the stream worker; owns the intake producer."""

    def __init__(self, settings: Settings, pipeline: Pipeline, *, accept_messages: bool,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.pipeline = pipeline
        self.accept_messages = accept_messages
        self.producer: AIOKafkaProducer | None = None
        self._runner: web.AppRunner | None = None

    async def on_start(self) -> None:
        """Start the producer, then listen."""
        # aiokafka binds to the running loop, so the producer is made here, not in __init__
        self.producer = new_producer(self.settings)
        await self.producer.start()
        checks: dict[str, Check] = {"kafka": self._kafka_ready, "redis": self._redis_ready}
        if self.settings.stages:
            # a process without stages (an HTTP API alone) has no partitions to wait for
            checks["workers"] = self._workers_ready
        checks["stages"] = self._stages_flowing
        if self.accept_messages:
            app = edge_app(self.settings, checks, publish=self._publish, publish_link=self._publish_link,
                           redis=lambda: self.pipeline.redis, policy=self.pipeline.current_policy)
        else:
            app = build_app(self.settings, checks)
        self._runner = await serve(app, self.settings.http_host, self.settings.http_port)
        log.info("http listening", extra={"address": ", ".join(
            f"http://{host}:{port}" for host, port in self._runner.addresses)})

    async def on_stop(self) -> None:
        """Stop listening first so no request is accepted without a producer behind it."""
        if self._runner is not None:
            await self._runner.cleanup()
        if self.producer is not None:
            await self.producer.stop()

    async def _publish(self, topic: str, key: bytes, value: bytes) -> None:
        if self.producer is None:
            raise TransientError("the producer is not started")
        try:
            await asyncio.wait_for(self.producer.send_and_wait(topic, value, key=key), 10)
        except (KafkaError, TimeoutError) as e:
            raise TransientError(f"Kafka did not take the message: {e!r}") from e

    async def _publish_link(self, link: IdentityLink) -> None:
        topic = self.settings.topic(IDENTITY)
        await self._publish(topic, link.customer_id.encode(), encode(link))

    async def _kafka_ready(self) -> tuple[bool, str]:
        topic = self.settings.topic(INBOUND)
        if self.producer is None:
            return False, "producer not started"
        partitions = await asyncio.wait_for(self.producer.partitions_for(topic), 2)
        return bool(partitions), f"{topic}: {len(partitions or ())} partitions"

    async def _redis_ready(self) -> tuple[bool, str]:
        pong = await asyncio.wait_for(self.pipeline.redis.ping(), 2)
        return bool(pong), "PONG" if pong else "no answer"

    async def _stages_flowing(self) -> tuple[bool, str]:
        stalled = self.pipeline.stalled
        return not stalled, "; ".join(f"{k}: {v}" for k, v in stalled.items()) or "flowing"

    async def _workers_ready(self) -> tuple[bool, str]:
        assigned = self.pipeline.assigned()
        return assigned, "partitions assigned" if assigned else "waiting for partitions"


class SenderService(Service):
    """Starts every channel's sender before the stream runs, stops them after."""

    def __init__(self, channels: Channels, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.channels = channels

    async def on_start(self) -> None:
        """Connect every sender; one that cannot start is reported, and its sends fail visibly."""
        for name, sender in self.channels.senders.items():
            try:
                await sender.start()
            except (ConfigError, AuthError) as e:
                log.error("sender refused to start; its messages will fail with the reason",
                          extra={"connector": name, "reason": e.reason})

    async def on_stop(self) -> None:
        """Disconnect every sender."""
        for sender in self.channels.senders.values():
            await sender.stop()


class _Worker(faust.Worker):
    """Faust's worker with a deadline on stopping: a stop that hangs ends the process."""

    def _on_sigterm(self) -> None:
        _stop_deadline()
        super()._on_sigterm()

    def _on_sigint(self) -> None:
        _stop_deadline()
        super()._on_sigint()


def _stop_deadline() -> None:
    """End the process STOP_DEADLINE_SECONDS from now if it has not stopped by itself.

    A stop can hang while Redis or Kafka is away (a client waiting on a dead socket, a
    batch that cannot finish). Exiting without a commit loses nothing: what was not
    committed is read again by whoever takes the partitions, and claims make that safe.
    """
    def expire() -> None:
        time.sleep(STOP_DEADLINE_SECONDS)
        log.critical("stop did not finish in %ss; exiting without a commit", STOP_DEADLINE_SECONDS)
        logging.shutdown()
        os._exit(EXIT_STOP_DEADLINE)

    threading.Thread(target=expire, name="stop-deadline", daemon=True).start()


async def _check_layout(settings: Settings) -> None:
    redis = settings.new_redis(socket_timeout=10)
    try:
        await check_layout(redis, f"{settings.topic_prefix}sb", Tags(settings.kafka_partitions))
    finally:
        await redis.aclose()


def run_worker(settings: Settings, *, edge: bool) -> None:
    """Run the stream processors and the HTTP server until a signal stops them.

    The edge process (`switchboard run`) also takes messages over HTTP and runs the
    channels' inbound sources; run exactly one per mailbox/account. Workers only process.
    """
    settings.require_reply_token_key()
    logging.config.dictConfig(logging_config(settings.log_level, settings.log_json))
    if (why := compiled.complaint()) is not None:  # a checkout edited since `make compile`
        log.warning(f"{why}; until then the old code runs")
    # topics are created up front with our partitioning, never by a first produce
    asyncio.run(ensure_topics(settings))
    # keys tagged for another partition count (or not at all) would look like new customers
    asyncio.run(_check_layout(settings))
    # Faust keeps its files in the state dir (router/app.py); it creates only the last level
    (settings.state_dir / "faust").mkdir(parents=True, exist_ok=True)
    asyncio.set_event_loop(asyncio.new_event_loop())
    redis: Redis = settings.new_redis(socket_timeout=10)
    channels = configured(settings, RedisCursorStore(redis, f"{settings.topic_prefix}sb"))
    # acknowledgements are planned only for customers the channels running here can reach
    policy = PolicyHolder(settings.policy_path, vocabulary(channels.running))
    policy.load()  # a bad policy file stops the start here, naming its file, line and key
    tools = ToolBox(settings, policy)
    pipeline = Pipeline(settings, redis, channels.send_functions(), policy, tools.current)
    services: list[Service] = [
        HttpService(settings, pipeline, accept_messages=edge),
        SenderService(channels),
        tools,
        # after the senders and tools they use, so they stop first
        pipeline.stages,
    ]
    if edge:
        services += [SourceRunner(name, source, settings) for name, source in channels.sources.items()]
        probes = configured_probes(settings, target_of(settings))
        if probes and settings.probe_interval_seconds > 0:
            services.append(ProbeService(settings, probes, redis))
    worker = _Worker(
        pipeline.app,
        *services,
        loglevel=settings.log_level,
        logging_config=logging_config(settings.log_level, settings.log_json),
        quiet=True,
        redirect_stdouts=False,
    )
    # Faust's terminal spinner would set the root logger to DEBUG at WARNING and above:
    # every debug call would then build a record only to drop it
    worker.spinner = None
    # what exists now lives as long as the process: moved out of the collector's sight, a
    # full collection scans only what batches left behind (~80 ms → a few ms a pause here)
    gc.collect()
    gc.freeze()
    worker.execute_from_commandline()
