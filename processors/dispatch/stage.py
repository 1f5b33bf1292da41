"""Dispatch: routed conversations, reply receipts and SLA notices, to the agents' tools.

Reads `sb.routed.v1` (a routed message: the card is written, the message delivered to
its queue's destinations, or to where the conversation already is), `sb.delivery.v1` (a
send outcome, so a held, failed or flagged reply shows in the agent's tool) and
`sb.sla.v1` (a one-line notice); the record's topic suffix says which. Each delivery's
outcome is a HandoffReceipt on `sb.handoff.v1`; one that no destination took is also a
dead letter, an error log and `switchboard_handoff_failed_total{destination}`: the alert.

At least once, with an id. Every (item, destination) is claimed in Redis
(`delivering:<record>`) before a tool is called and marked `delivered:<record>|<where>`
or `failed:<record>|<reason>` after, so a replayed batch delivers nothing twice; the same
record read again after a restart gives its receipts again (they may not have reached
Kafka), another record of the same item gives nothing. A claim still
`delivering:` means a worker died mid-delivery; unlike a message to a customer
(processors.send, at most once) it is delivered again, because an agent seeing a
conversation twice beats never seeing it, and with the same delivery id
(`X-Switchboard-Delivery`), which receivers dedupe on. Each item's chosen destinations
are saved with its claim, so a replay goes where the first attempt went even if the
conversation has moved since.

Three Redis round trips per batch, whatever its size: claim the items and read their
cards; write cards, save the plans and claim the deliveries; record the outcomes, thread
references and the way back from each tool thread to its conversation. Deliveries run
concurrently across conversations and in order within one, so a follow-up finds the
thread its first message opened.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from redis.asyncio import Redis

from processors.dispatch.breaker import Breakers
from processors.dispatch.deliver import Courier, Outcome, Retry
from processors.dispatch.items import Item, receipt_item, routed_item, sla_item
from processors.dispatch.outcome import (
    HANDOFF_FAILED,
    HANDOFF_FALLBACK,
    STAGE,
    Result,
    Target,
    channel_of,
    context,
    handoff_for,
    outputs_for,
)
from processors.dispatch.plan import (
    HandoffAction,
    Plan,
    applied,
    delivery_result,
    delivery_verdict,
    plan_batch,
    recorded,
)
from processors.dispatch.tools import HandoffTarget
from processors.metrics import BATCH_SIZE, DEADLETTERED, REDIS_ROUNDTRIPS, Tally
from processors.policy.model import Policy
from processors.stage import Output, Record, dead_letter, decode_records
from processors.stores.bulk import queue_claim_many, queue_set_many
from processors.stores.cards import CardStore, card_fields, thread_fields
from schemas.conversation import ConversationCard
from schemas.ids import delivery_id
from schemas.outbound import DeliveryReceipt
from schemas.routed import RoutedConversation
from schemas.sla import SlaEvent
from schemas.topics import DELIVERY, ROUTED, SLA

__all__ = ["HANDOFF_FAILED", "HANDOFF_FALLBACK", "STAGE", "DispatchStage"]

log = logging.getLogger(__name__)
_READERS: tuple[tuple[str, type[Any], Callable[[Record, Any], Item]], ...] = (
    (ROUTED.name, RoutedConversation, routed_item),
    (DELIVERY.name, DeliveryReceipt, receipt_item),
    (SLA.name, SlaEvent, sla_item),
)
_MAX_REASON = 500


@dataclass(slots=True)
class _Run:
    """One conversation's deliveries in a batch and the thread references to store after."""

    conversation: str
    done: list[Result]
    threads: dict[str, str]


class DispatchStage:
    """Hands a batch's items to the agents' tools; the Faust agent only moves bytes."""

    def __init__(self, redis: Redis, tools: Callable[[], Mapping[str, HandoffTarget]],
                 policy: Callable[[], Policy], *, namespace: str, ttl_seconds: int,
                 cards: CardStore, thread_ttl_seconds: int,
                 retry: Retry | None = None, breaker_threshold: int = 5, breaker_cool_down: float = 30.0,
                 concurrency: int = 16, clock: Callable[[], float] = time.monotonic) -> None:
        self._redis = redis
        self._tools = tools
        self._policy = policy
        self._prefix = f"{namespace}:handoff:"
        self._ttl = ttl_seconds
        self._cards = cards
        self._thread_ttl = thread_ttl_seconds
        self.breakers = Breakers(breaker_threshold, breaker_cool_down, clock)
        self._courier = Courier(self.breakers, retry, clock=clock)
        self._limit = asyncio.Semaphore(concurrency)

    async def process(self, records: Sequence[Record]) -> list[Output]:
        """Deliver one batch; returns handoff receipts and dead letters."""
        BATCH_SIZE.labels(STAGE).observe(len(records))
        outputs: list[Output] = []
        items = _decode(records, outputs)
        if not items:
            return outputs
        policy = self._policy()
        plans, cards = await self._plan(items, policy)
        targets = await self._claim(plans)
        tools = self._tools()
        runs = await asyncio.gather(*(self._conversation(c, of, cards.get(c), policy, tools)
                                      for c, of in _by_conversation(plans, targets).items()))
        await self._record(runs)
        self._report(plans, targets, runs)
        now = datetime.now(UTC)
        for done in (d for run in runs for d in run.done):
            outputs += outputs_for(done, now)
        return outputs

    def _item_key(self, source: str) -> str:
        return f"{self._prefix}item:{source}"

    def _delivery_key(self, source: str, destination: str) -> str:
        return self._prefix + delivery_id(source, destination)

    async def _plan(self, items: Sequence[Item], policy: Policy
                    ) -> tuple[list[Plan], dict[str, ConversationCard | None]]:
        """Round trip 1: claim every item and read every card of the batch."""
        conversations = sorted({i.conversation_id for i in items})
        pipe = self._redis.pipeline(transaction=False)
        queue_claim_many(pipe, [self._item_key(i.source) for i in items],
                         [f"pending:{i.record.owner}" for i in items], self._ttl)
        self._cards.queue_read(pipe, conversations)
        previous, raw = await pipe.execute()
        REDIS_ROUNDTRIPS.labels(STAGE).inc()
        cards = dict(zip(conversations, self._cards.parse_read(raw), strict=True))
        return plan_batch(items, previous, cards, policy, datetime.now(UTC)), cards

    async def _claim(self, plans: Sequence[Plan]) -> list[Target]:
        """Round trip 2: write the cards, save each new plan, claim every delivery."""
        wanted = [(p, d) for p in plans if p.skip is None for d in p.intended]
        pipe = self._redis.pipeline(transaction=False)
        if wanted:  # first, so its answer is the first
            queue_claim_many(pipe, [self._delivery_key(p.item.source, d) for p, d in wanted],
                             [f"delivering:{p.item.record.owner}" for p, _ in wanted], self._ttl)
        # a conversation's last card of the batch is the one that counts
        self._cards.queue_write(pipe, {p.item.conversation_id: card_fields(p.card)
                                       for p in plans if p.write_card and p.card is not None})
        for p in plans:
            if p.forget:
                pipe.hdel(self._cards.key(p.item.conversation_id), *(f"dest:{n}" for n in p.forget))
        saved = [(self._item_key(p.item.source), applied(p.intended)) for p in plans if p.new]
        if saved:
            queue_set_many(pipe, saved, self._ttl)
        if not len(pipe):
            return []
        answers = await pipe.execute()
        REDIS_ROUNDTRIPS.labels(STAGE).inc()
        previous = answers[0] if wanted else []
        return [Target(p, d, *delivery_verdict(before, p.item.record.owner), previous=before)
                for (p, d), before in zip(wanted, previous, strict=True)]

    async def _conversation(self, conversation: str, plans: Sequence[tuple[Plan, list[Target]]],
                            stored: ConversationCard | None, policy: Policy,
                            tools: Mapping[str, HandoffTarget]) -> _Run:
        """One conversation's deliveries, in order, each seeing the threads the last one opened."""
        threads: dict[str, str] = dict(stored.destinations) if stored is not None else {}
        baseline = dict(threads)
        done: list[Result] = []
        async with self._limit:
            for plan, targets in plans:
                if plan.transfer:  # the old queue's threads were dropped from the card
                    threads, baseline = {}, {}
                reached: dict[str, str] = {}
                for target in targets:
                    if target.verdict is HandoffAction.DONE:
                        log.info("duplicate delivery skipped", extra=context(plan, target.destination,
                                                                               target.reason))
                        continue
                    if target.verdict is HandoffAction.REPEAT and target.previous is not None:
                        done.append(Result(target, _repeated(target.destination, target.previous)))
                        continue
                    outcome = await self._courier.deliver(
                        partial(handoff_for, plan, threads), target.destination, policy.destinations,
                        tools, reached)
                    done.append(Result(target, outcome))
                    if outcome.delivered:
                        # a tool that answers "" keeps the thread it gave before
                        threads[outcome.actual] = outcome.thread or threads.get(outcome.actual, "")
                        reached[outcome.actual] = threads[outcome.actual]
        changed = {n: ref for n, ref in threads.items() if baseline.get(n) != ref}
        return _Run(conversation, done, changed)

    async def _record(self, runs: Sequence[_Run]) -> None:
        """Round trip 3: final claims, thread references, and the way back from each thread."""
        finals: list[tuple[str, str | bytes]] = []
        back: list[tuple[str, str | bytes]] = []
        threads: dict[str, Mapping[str, str | bytes]] = {}
        for run in runs:
            for d in run.done:
                o, item = d.outcome, d.target.plan.item
                owner = item.record.owner
                if o.delivered:
                    done_there = delivery_result(True, owner, o.actual)
                    finals.append((self._delivery_key(item.source, o.intended), done_there))
                    if o.actual != o.intended:
                        finals.append((self._delivery_key(item.source, o.actual), done_there))
                    if o.thread:
                        back.append((self._cards.tool_thread_key(o.actual, o.thread), item.conversation_id))
                else:
                    finals.append((self._delivery_key(item.source, o.intended),
                                   delivery_result(False, owner, (o.reason or "")[:_MAX_REASON])))
            if run.threads:
                threads[run.conversation] = thread_fields(run.threads)
        if not finals:
            return
        pipe = self._redis.pipeline(transaction=False)
        queue_set_many(pipe, finals, self._ttl)
        self._cards.queue_write(pipe, threads)
        if back:
            queue_set_many(pipe, back, self._thread_ttl)
        await pipe.execute()
        REDIS_ROUNDTRIPS.labels(STAGE).inc()

    def _report(self, plans: Sequence[Plan], targets: Sequence[Target], runs: Sequence[_Run]) -> None:
        tally = Tally(STAGE)
        for p in plans:
            tally.seen[channel_of(p)] += 1
            if p.skip == "repeated in one batch":
                tally.dropped[channel_of(p)] += 1
            elif p.skip is not None:
                log.info("nothing to deliver", extra={"event_id": p.item.event_id,
                                                      "conversation_id": p.item.conversation_id,
                                                      "reason": p.skip})
        for t in targets:
            if t.verdict is HandoffAction.DONE:
                tally.dropped[channel_of(t.plan)] += 1
        for d in (d for run in runs for d in run.done):
            if d.outcome.delivered:
                tally.passed[channel_of(d.target.plan)] += 1
        tally.report()


def _repeated(destination: str, previous: bytes) -> Outcome:
    """The outcome a restarted record's own earlier result recorded, for its receipt again."""
    delivered, detail = recorded(previous)
    return Outcome(intended=destination, actual=detail if delivered else destination, delivered=delivered,
                   attempts=0, thread="", reason=None if delivered else detail)


def _decode(records: Sequence[Record], outputs: list[Output]) -> list[Item]:
    """Each record as an item of its topic's kind, in order; the rest to the dead letters."""
    items = []
    for record in records:
        reader = next((r for r in _READERS if record.topic.endswith(r[0])), None)
        if reader is None:
            outputs.append(dead_letter(record, f"dispatch does not read topic {record.topic}", stage=STAGE))
            DEADLETTERED.labels(STAGE, "unknown").inc()
            continue
        _, model, make = reader
        items += [make(r, value) for r, value in decode_records([record], model, STAGE, outputs)]
    return items


def _by_conversation(plans: Sequence[Plan], targets: Sequence[Target]
                     ) -> dict[str, list[tuple[Plan, list[Target]]]]:
    """Each conversation's plans in batch order, with their claimed targets."""
    of_plan: dict[int, list[Target]] = {}
    for t in targets:
        of_plan.setdefault(id(t.plan), []).append(t)
    grouped: dict[str, list[tuple[Plan, list[Target]]]] = {}
    for p in plans:
        if p.skip is None:
            grouped.setdefault(p.item.conversation_id, []).append((p, of_plan.get(id(p), [])))
    return grouped
