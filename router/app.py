"""The worker: the stages as batch loops beside a Faust app that runs the leader's timers.

The stages run as plain consume loops (router/loop.py): fetch, process, produce, commit,
shaped like the raw pipe. Faust remains the application shell — worker lifecycle,
signals, leader election for the SLA and lifecycle watches — so each SLA event fires on
one worker. A failed timer tick is logged and the next one tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
from redis.asyncio import Redis

from processors.brain.stage import Brain, Stores
from processors.dispatch.stage import DispatchStage
from processors.dispatch.tools import HandoffTarget
from processors.intake.stage import Intake
from processors.metrics import STAGE_RETRIES
from processors.policy.model import Policy
from processors.send.stage import SendFn, SendStage
from processors.stage import Output
from processors.stores.cards import CardStore
from processors.stores.claims import ClaimStore
from processors.stores.clocks import ClockStore
from processors.stores.conversations import ConversationStore
from processors.stores.directory import Directory
from processors.stores.history import HistoryStore
from processors.stores.identities import IdentityStore
from processors.stores.tags import Tags
from processors.watch.lifecycle_watch import LifecycleSchedule, LifecycleWatch
from processors.watch.sla_watch import SlaWatch
from router.kafka import ssl_context
from router.loop import Stages
from router.policy_watch import PolicyHolder
from router.settings import Settings
from schemas.topics import CONVERSATION, DELIVERY, IDENTIFIED, INBOUND, OUTBOUND, ROUTED, SLA, TopicSpec

__all__ = ["STAGE_TOPICS", "Pipeline"]

log = logging.getLogger(__name__)
# what each stage reads, its consumer group's topics
STAGE_TOPICS: dict[str, tuple[TopicSpec, ...]] = {
    "intake": (INBOUND,),
    # one writer per customer: messages and their conversations' events, co-partitioned
    "brain": (IDENTIFIED, CONVERSATION),
    "send": (OUTBOUND,),
    # agents hear of new messages, of their replies' fate and of SLA warnings in one place
    "dispatch": (ROUTED, DELIVERY, SLA),
}


class Pipeline:
    """The stages, their loops, the Faust app that runs the timers, and the Redis client they share."""

    def __init__(self, settings: Settings, redis: Redis, senders: Mapping[str, SendFn],
                 policy: PolicyHolder, tools: Callable[[], Mapping[str, HandoffTarget]]) -> None:
        self.settings = settings
        self.redis = redis
        self.policy = policy
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
        tags = Tags(settings.kafka_partitions)  # decision 0021: a customer's keys in its partition's slot
        history = HistoryStore(ns, cap=settings.history_cap, tags=tags)
        identities = IdentityStore(ns, history)
        clocks = ClockStore(ns, tags)
        schedule = LifecycleSchedule(ns)
        cards = CardStore(ns, settings.conversation_ttl_seconds, tags)
        claims = ClaimStore(namespace=ns, ttl_seconds=settings.dedupe_ttl_seconds, tags=tags)
        self.intake = Intake(redis, claims, identities, settings.thread_rules.token_key, settings.our_domains,
                             cards=cards)
        self.brain = Brain(redis, Stores(
            claims=ClaimStore(namespace=f"{ns}:routed", ttl_seconds=settings.dedupe_ttl_seconds, tags=tags),
            threads=ConversationStore(ns, settings.conversation_ttl_seconds, tags), history=history,
            directory=Directory(identities), clocks=clocks,
            cards=cards, schedule=schedule,
            backlog_key=f"{ns}:backlog",
            history_limit=settings.history_attached), self.current_policy, settings.thread_rules)
        self.send = SendStage(redis, senders, namespace=ns, ttl_seconds=settings.dedupe_ttl_seconds,
                              policy=self.current_policy, cards=cards, rates=settings.send_rates,
                              max_defer=timedelta(seconds=settings.send_max_defer_seconds))
        self.dispatch = DispatchStage(redis, tools, self.current_policy, namespace=ns,
                                      ttl_seconds=settings.dedupe_ttl_seconds, cards=cards,
                                      thread_ttl_seconds=settings.conversation_ttl_seconds)
        self.watch = SlaWatch(redis, clocks, self.current_policy)
        self.lifecycle = LifecycleWatch(redis, schedule, history, clocks, self.current_policy)
        self.stages = Stages(settings)
        self.stalled = self.stages.stalled
        work = {"intake": (self.intake.process, None, None),
                "brain": (self.brain.process, self.brain.confirm, self.brain.forget),
                "send": (self.send.process, None, None), "dispatch": (self.dispatch.process, None, None)}
        for stage in settings.stages:
            process, confirm, forget = work[stage]
            self.stages.add(stage, [settings.topic(spec) for spec in STAGE_TOPICS[stage]], process, confirm,
                            forget)
        self.app.timer(interval=settings.policy_reload_seconds)(self._reload_policy)
        if "send" in settings.stages:
            # every send worker: a lease keeps two from taking the same due reply
            self.app.timer(interval=settings.send_deferred_tick_seconds)(self._redeliver)
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

    async def _redeliver(self) -> None:
        async with self._tick("deferred replies"):
            await self.send.redeliver(self._produce)

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

    async def _produce(self, outputs: Sequence[Output]) -> None:
        producer = self.app.producer
        pending = [
            await producer.send(self.settings.topic(o.topic), o.key, o.value, None, None, None)
            for o in outputs
        ]
        # the batch's offsets are acked when this returns: Kafka must hold the outputs first
        await asyncio.gather(*pending)

    def assigned(self) -> bool:
        """True once every stage loop of this worker has joined its group."""
        return self.stages.assigned()


def _credentials(settings: Settings) -> Any:
    """Faust's view of the security protocol: it derives the protocol from the credentials' kind."""
    context = ssl_context(settings)
    if not settings.kafka_sasl_mechanism:
        return faust.SSLCredentials(context) if context is not None else None
    password = settings.kafka_sasl_password
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=password.get_secret_value() if password else None,
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=context,
    )
