"""The Faust app: topics and the thin agents that feed stream batches to the stages.

A batch is acknowledged to Kafka only when the agent moves on to the next one, and
Faust acknowledges a batch whose agent *crashed* as if it had been processed. So no
exception may leave an agent: a stage that fails (Redis or Kafka away, or a bug) runs
the same batch again after a backoff, for as long as it takes, while readiness names
the stalled stage. Claims make the rerun safe: records that claimed their events are
processed again, never dropped. Faust also acknowledges a take's events when its agent
is *stopped*, so a stop waits a grace period for the batch in flight and, if it cannot
finish (Redis or Kafka away), ends the process without a commit: the batch is read again
by whoever takes the partition. Timers get the same treatment as stages: a failed tick
is logged and the next one tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import faust
from redis.asyncio import Redis

from processors.brain.stage import Brain, Stores
from processors.dispatch.stage import DispatchStage
from processors.dispatch.tools import HandoffTarget
from processors.intake.stage import Intake
from processors.metrics import CONSUMER_LAG, STAGE_RETRIES
from processors.policy.model import Policy
from processors.send.stage import SendFn, SendStage
from processors.stage import Output, Record
from processors.stores.cards import CardStore
from processors.stores.claims import ClaimStore
from processors.stores.clocks import ClockStore
from processors.stores.conversations import ConversationStore
from processors.stores.directory import Directory
from processors.stores.history import HistoryStore
from processors.stores.identities import IdentityStore
from processors.watch.lifecycle_watch import LifecycleSchedule, LifecycleWatch
from processors.watch.sla_watch import SlaWatch
from router.policy_watch import PolicyHolder
from router.settings import Settings
from schemas.topics import CONVERSATION, DELIVERY, IDENTIFIED, INBOUND, OUTBOUND, ROUTED, SLA, TopicSpec

__all__ = ["Pipeline"]

log = logging.getLogger(__name__)
Process = Callable[[Sequence[Record]], Awaitable[list[Output]]]
Confirm = Callable[[Sequence[Record]], Awaitable[None]]
RETRY_CAP_SECONDS = 30.0
# how long a stop waits for a batch in flight; and the exit code when it cannot finish
STOP_GRACE_SECONDS = 10.0
EXIT_UNFINISHED = 75


class Pipeline:
    """The Faust app with its agents, and the Redis client they share."""

    def __init__(self, settings: Settings, redis: Redis, senders: Mapping[str, SendFn],
                 policy: PolicyHolder, tools: Callable[[], Mapping[str, HandoffTarget]]) -> None:
        self.settings = settings
        self.redis = redis
        self.policy = policy
        # stage → why its batch is being run again; empty while every stage flows
        self.stalled: dict[str, str] = {}
        self.app = faust.App(
            settings.app_id,
            broker=f"kafka://{settings.kafka_bootstrap}",
            broker_credentials=_credentials(settings),
            store="memory://",
            web_enabled=False,
            autodiscover=False,
            key_serializer="raw",
            value_serializer="raw",
            topic_partitions=settings.kafka_partitions,
            topic_allow_declare=True,  # for Faust's own leader topic; ours exist already
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            broker_commit_every=settings.batch_size,
            broker_commit_interval=1.0,
            broker_session_timeout=settings.kafka_session_timeout_seconds,
            broker_heartbeat_interval=settings.kafka_session_timeout_seconds / 4,
            stream_buffer_maxsize=max(4096, settings.batch_size * 4),
            # Faust's own files go under the state dir, never into the current directory
            datadir=str(settings.state_dir / "faust" / "{conf.name}-data"),
        )
        ns = f"{settings.topic_prefix}sb"
        history = HistoryStore(ns, cap=settings.history_cap)
        identities = IdentityStore(ns, history)
        clocks = ClockStore(ns)
        schedule = LifecycleSchedule(ns)
        cards = CardStore(ns, settings.conversation_ttl_seconds)
        self.intake = Intake(redis, ClaimStore(namespace=ns, ttl_seconds=settings.dedupe_ttl_seconds),
                             identities, settings.thread_rules.token_key, settings.our_domains,
                             cards=cards)
        self.brain = Brain(redis, Stores(
            claims=ClaimStore(namespace=f"{ns}:routed", ttl_seconds=settings.dedupe_ttl_seconds),
            threads=ConversationStore(ns, settings.conversation_ttl_seconds), history=history,
            directory=Directory(identities), clocks=clocks,
            cards=cards, schedule=schedule,
            backlog_key=f"{ns}:backlog",
            history_limit=settings.history_attached), self.current_policy, settings.thread_rules)
        self.send = SendStage(redis, senders, namespace=ns, ttl_seconds=settings.dedupe_ttl_seconds,
                              policy=self.current_policy, cards=cards, rates=settings.send_rates)
        self.dispatch = DispatchStage(redis, tools, self.current_policy, namespace=ns,
                                      ttl_seconds=settings.dedupe_ttl_seconds, cards=cards,
                                      thread_ttl_seconds=settings.conversation_ttl_seconds)
        self.watch = SlaWatch(redis, clocks, self.current_policy)
        self.lifecycle = LifecycleWatch(redis, schedule, history, clocks, self.current_policy)
        stages = set(settings.stages)
        if "intake" in stages:
            self._agent("intake", INBOUND, self.intake.process)
        if "brain" in stages:
            # one writer per customer: messages and their conversations' events, co-partitioned
            self._agent("brain", IDENTIFIED, self.brain.process, self.brain.confirm, also=(CONVERSATION,))
        if "send" in stages:
            self._agent("send", OUTBOUND, self.send.process)
        if "dispatch" in stages:
            # agents hear of new messages, of their replies' fate and of SLA warnings in one place
            self._agent("dispatch", ROUTED, self.dispatch.process, also=(DELIVERY, SLA))
        self.app.timer(interval=5.0)(self._report_lag)
        self.app.timer(interval=2.0)(self._reload_policy)
        # one worker watches the clocks, so each SLA event fires once
        self.app.timer(interval=settings.sla_tick_seconds, on_leader=True)(self._watch_sla)
        self.app.timer(interval=settings.sla_tick_seconds, on_leader=True)(self._watch_lifecycle)

    def current_policy(self) -> Policy:
        """The policy in force right now."""
        return self.policy.current

    async def _reload_policy(self) -> None:
        async with self._tick("policy reload"):
            # off the loop: reading and checking a large (bounded) file must not delay the stream
            await asyncio.to_thread(self.policy.reload_if_changed)

    async def _watch_sla(self) -> None:
        async with self._tick("sla watch"):
            await self._produce(await self.watch.tick(datetime.now(UTC)))

    async def _watch_lifecycle(self) -> None:
        # produces before it settles what it took: a tick that dies is fired again, not lost
        async with self._tick("lifecycle watch"):
            await self.lifecycle.tick(datetime.now(UTC), self._produce)

    @contextlib.asynccontextmanager
    async def _tick(self, name: str) -> AsyncIterator[None]:
        """A timer's tick: a failure is logged and counted, and the next tick tries again."""
        try:
            yield
        except Exception as e:  # noqa: BLE001 - a timer that raises would stop the whole worker
            STAGE_RETRIES.labels(name, type(e).__name__).inc()
            log.warning("tick failed; the next one tries again", extra={"timer": name, "error": repr(e)})

    def _agent(self, name: str, spec: TopicSpec, process: Process, confirm: Confirm | None = None,
               *, also: tuple[TopicSpec, ...] = ()) -> None:
        """A thin agent: take a batch (of `spec` and `also`), let the stage process it, produce."""
        settings = self.settings
        topic = self.app.topic(settings.topic(spec), *(settings.topic(s) for s in also),
                               key_type=bytes, value_type=bytes)

        async def agent(stream: Any) -> None:
            async for events in stream.take_events(
                settings.batch_size, within=settings.batch_within_seconds
            ):
                batch = asyncio.ensure_future(self._until_done(name, events, process, confirm))
                try:
                    await asyncio.shield(batch)
                except asyncio.CancelledError:
                    await _finish_or_exit(name, batch)
                    raise

        self.app.agent(topic, name=name)(agent)

    async def _until_done(self, name: str, events: list[Any], process: Process,
                          confirm: Confirm | None) -> None:
        """Run one batch until its outputs are in Kafka; never raise but to stop."""
        attempt = 0
        while True:
            try:
                await self._run_batch(events, process, confirm)
            except Exception as e:  # noqa: BLE001 - leaving the agent would acknowledge the batch
                attempt += 1
                delay = min(RETRY_CAP_SECONDS, 0.2 * 2 ** min(attempt, 10)) * random.uniform(0.5, 1.0)
                STAGE_RETRIES.labels(name, type(e).__name__).inc()
                self.stalled[name] = f"{type(e).__name__} on attempt {attempt}: {str(e)[:200]}"
                log.warning("stage failed; the same batch runs again", extra={
                    "stage": name, "attempt": attempt, "retry_in": round(delay, 2), "error": repr(e)})
                await asyncio.sleep(delay)
                continue
            if self.stalled.pop(name, None) is not None:
                log.info("stage recovered", extra={"stage": name, "attempts": attempt + 1})
            return

    async def _run_batch(self, events: list[Any], process: Process, confirm: Confirm | None) -> None:
        records = [
            Record(e.message.topic, e.message.partition, e.message.offset, e.message.value)
            for e in events
        ]
        await self._produce(await process(records))
        if confirm is not None:
            # shielded: a stop signal must not cut between "Kafka has it" and "done"
            await asyncio.shield(confirm(records))

    async def _produce(self, outputs: Sequence[Output]) -> None:
        producer = self.app.producer
        pending = [
            await producer.send(self.settings.topic(o.topic), o.key, o.value, None, None, None)
            for o in outputs
        ]
        # the batch's offsets are acked when this returns: Kafka must hold the outputs first
        await asyncio.gather(*pending)

    async def _report_lag(self) -> None:
        async with self._tick("lag report"):
            await self._measure_lag()

    async def _measure_lag(self) -> None:
        consumer = self.app.consumer
        assigned = consumer.assignment()
        if not assigned:
            return
        highwaters = await consumer.highwaters(*assigned)
        for tp, end in highwaters.items():
            # Faust keeps committed offsets in a private map, with no public view of it
            committed = getattr(consumer, "_committed_offset", {}).get(tp)
            CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, end - (committed or 0)))

    def assigned(self) -> bool:
        """True once this worker holds at least one partition."""
        try:
            return bool(self.app.consumer.assignment())
        except Exception:  # noqa: BLE001 - no consumer yet means not assigned
            return False


async def _finish_or_exit(stage: str, batch: asyncio.Future[None]) -> None:
    """A stop in the middle of a batch: let it finish, or end the process before it is acknowledged.

    Faust acknowledges a take's events whenever the agent leaves it — stopped, cancelled
    or crashed — and a worker commits what was acknowledged on its way out. A batch whose
    outputs are not in Kafka must never be committed, so one that cannot finish within
    the grace (Redis or Kafka away) ends the process at once, without a commit: its
    records are read again by whoever takes the partition, and claims make that safe.
    """
    try:
        await asyncio.wait_for(asyncio.shield(batch), STOP_GRACE_SECONDS)
        return
    except BaseException:  # noqa: BLE001 - a second cancel or an error: the batch did not finish
        pass
    log.critical("stopping with a batch unfinished; exiting without a commit, it will be read again",
                 extra={"stage": stage})
    logging.shutdown()
    os._exit(EXIT_UNFINISHED)


def _credentials(settings: Settings) -> Any:
    if not settings.kafka_sasl_mechanism:
        return None
    password = settings.kafka_sasl_password
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=password.get_secret_value() if password else None,
        mechanism=settings.kafka_sasl_mechanism,
    )
