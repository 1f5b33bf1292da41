"""Dispatch: routed conversations, reply receipts and SLA notices, to the agents' tools.

Reads `sb.routed.v1` (a routed message: the card is written, the message delivered to
its queue's destinations, or to where the conversation already is), `sb.delivery.v1` (a
send outcome, so a held, failed or flagged reply shows in the agent's tool) and
`sb.sla.v1` (a one-line notice); the record's topic suffix says which. Each delivery's
outcome is a HandoffReceipt on `sb.handoff.v1`; one that no destination took is also a
dead letter, an error log and `switchboard_handoff_failed_total{destination}`: the alert.

At least once, with an id. Every (item, destination) is claimed in Redis before a tool
is called (`delivering:<record>` in the item's ledger, `ledger:<conversation>|<source>`) and marked
`delivered:<record>|<where>` or `failed:<record>|<reason>` after, so a replayed batch
delivers nothing twice; the same record read again after a restart gives its receipts
again (they may not have reached Kafka), another record of the same item gives nothing.
A claim still `delivering:` means a worker died mid-delivery; unlike a message to a
customer (processors.send, at most once) it is delivered again, because an agent seeing
a conversation twice beats never seeing it, and with the same delivery id
(`X-Switchboard-Delivery`), which receivers dedupe on. Each item's chosen destinations
are saved in its ledger with its claims, so a replay goes where the first attempt went
even if the conversation has moved since.

Two Redis round trips per batch, whatever its size (processors.dispatch.ledger): one
script reads the cards and, for each new item, chooses its destinations, writes its card
and saves its plan with its deliveries claimed; after the deliveries, one write records
the outcomes, thread references and the way back from each tool thread to its
conversation. What the script leaves to Python (a card it cannot read) costs one more
round trip, still before any delivery. Every key is tagged by its conversation, the
card's tag (a tool thread's way back by the thread), and on a Redis Cluster each call
is split per tag, still one pipeline a round trip (decision 0021).
Deliveries run concurrently across conversations and in order within one, so a
follow-up finds the thread its first message opened.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import msgspec
from redis.asyncio import Redis

from processors.dispatch.breaker import Breakers
from processors.dispatch.deliver import Courier, Outcome, Retry
from processors.dispatch.items import Item, receipt_item, routed_item, sla_item
from processors.dispatch.ledger import Answer, Ledger, policy_blob
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
    delivery_result,
    delivery_verdict,
    plan_batch,
    recorded,
)
from processors.dispatch.tools import HandoffTarget
from processors.metrics import BATCH_SIZE, DEADLETTERED, REDIS_ROUNDTRIPS, Tally
from processors.policy.model import Policy
from processors.stage import Output, Record, dead_letter, decode_records
from processors.stores.bulk import queue_hset_many, queue_set_many
from processors.stores.cards import CardStore, card_fields, thread_fields
from processors.stores.tags import pipeline
from schemas.conversation import ConversationCard
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
_card = msgspec.json.Decoder(ConversationCard).decode


@dataclass(slots=True)
class _Repair:
    """What the first round trip left to Python: written in one more, before any delivery."""

    ledgers: dict[str, Mapping[str, str | bytes]] = field(default_factory=dict)
    cards: dict[str, Mapping[str, str | bytes]] = field(default_factory=dict)
    forget: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.ledgers or self.cards or self.forget)


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
        self._ttl = ttl_seconds
        self._cards = cards
        self._ledger = Ledger(namespace, cards.tags, ttl_seconds, cards.ttl_seconds)
        self._blob: tuple[Policy, bytes] | None = None
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
        plans, cards, targets = await self._claim(items, policy)
        tools = self._tools()
        runs = await asyncio.gather(*(self._conversation(c, of, cards.get(c), policy, tools)
                                      for c, of in _by_conversation(plans, targets).items()))
        await self._record(runs)
        self._report(plans, targets, runs)
        now = datetime.now(UTC)
        for done in (d for run in runs for d in run.done):
            outputs += outputs_for(done, now)
        return outputs

    def _policy_blob(self, policy: Policy) -> bytes:
        if self._blob is None or self._blob[0] is not policy:
            self._blob = (policy, policy_blob(policy))
        return self._blob[1]

    async def _claim(self, items: Sequence[Item], policy: Policy
                     ) -> tuple[list[Plan], dict[str, ConversationCard | None], list[Target]]:
        """Round trip 1: read the cards; plan, write the cards and claim every delivery of what is new.

        The script plans in Redis; the batch is planned again here from the cards it read,
        and whatever the script left or got wrong is written before any delivery (one more
        round trip, rarely).
        """
        now = datetime.now(UTC)
        pipe = pipeline(self._redis)
        conversations = self._ledger.queue_plan(pipe, items, card_key=self._cards.key, policy=policy,
                                                blob=self._policy_blob(policy), now=now)
        index = {c: n for n, c in enumerate(conversations)}
        [raw] = await pipe.execute()
        REDIS_ROUNDTRIPS.labels(STAGE).inc()
        before, wrote, answers = self._ledger.parse(raw)
        cards = dict(zip(conversations, self._cards.parse_read(before), strict=True))
        plans = plan_batch(items, [a.saved_plan() for a in answers], cards, policy, now)
        fix = _Repair()
        for plan, answer in zip(plans, answers, strict=True):
            self._check(plan, answer, fix)
        last = {p.item.conversation_id: p.card for p in plans if p.write_card and p.card is not None}
        left = {p.item.conversation_id for p, a in zip(plans, answers, strict=True) if a.state == "later"}
        for conversation, card in last.items():
            written = wrote[index[conversation]]
            if written is None or _card(written) != card:
                if conversation not in left:
                    log.error("the Redis planner's card differs from dispatch's; the card is written again",
                              extra={"conversation_id": conversation})
                fix.cards[conversation] = card_fields(card)
        states: dict[str, Mapping[str, bytes | None]] = {
            p.item.source: a.deliveries or {}
            for p, a in zip(plans, answers, strict=True) if a.state == "seen"}
        if fix:
            await self._repair(fix)
        return plans, cards, [
            Target(p, d, *delivery_verdict(previous, p.item.record.owner), previous=previous)
            for p in plans if p.skip is None for d in p.intended
            for previous in (states.get(p.item.source, {}).get(d),)]

    def _check(self, plan: Plan, answer: Answer, fix: _Repair) -> None:
        """Note what the script left to Python, or planned otherwise than Python did."""
        item = plan.item
        if answer.state == "seen":
            # a ledger without its plan or a claim (its hash expired mid-batch): claim what is missing
            if answer.plan is None or (plan.skip is None and any(
                    d not in (answer.deliveries or {}) for d in plan.intended)):
                fix.ledgers[self._ledger.key(item.conversation_id, item.source)] = {
                    **self._ledger.claims(plan.intended, item.record.owner),
                    **{f"d:{d}": v for d, v in (answer.deliveries or {}).items()}}
        elif plan.new and (answer.state == "later" or answer.plan != plan.intended):
            if answer.state != "later":
                log.error("the Redis planner disagreed with dispatch's plan; the plan is saved again",
                          extra={"event_id": item.event_id, "conversation_id": item.conversation_id,
                                 "reason": f"script {answer.plan}, python {plan.intended}"})
            fix.ledgers[self._ledger.key(item.conversation_id, item.source)] = self._ledger.claims(
                plan.intended, item.record.owner)
            if plan.forget:
                fix.forget.append((item.conversation_id, plan.forget))

    async def _repair(self, fix: _Repair) -> None:
        """Round trip 1b, before any delivery: what the script left to Python."""
        pipe = pipeline(self._redis)
        if fix.ledgers:
            queue_hset_many(pipe, fix.ledgers, self._ttl, replace=True)
        self._cards.queue_write(pipe, fix.cards)
        for conversation, names in fix.forget:
            pipe.hdel(self._cards.key(conversation), *(f"dest:{n}" for n in names))
        await pipe.execute()
        REDIS_ROUNDTRIPS.labels(STAGE).inc()
        log.info("dispatch planned part of a batch again", extra={
            "reason": f"{len(fix.ledgers)} ledgers, {len(fix.cards)} cards written from Python"})

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
        """Round trip 2: the deliveries' outcomes, thread references, and the way back from each thread."""
        finals: dict[str, dict[str, str | bytes]] = {}
        back: list[tuple[str, str | bytes]] = []
        threads: dict[str, Mapping[str, str | bytes]] = {}
        for run in runs:
            for d in run.done:
                o, item = d.outcome, d.target.plan.item
                owner = item.record.owner
                ledger = finals.setdefault(self._ledger.key(item.conversation_id, item.source), {})
                if o.delivered:
                    done_there = delivery_result(True, owner, o.actual)
                    ledger[f"d:{o.intended}"] = ledger[f"d:{o.actual}"] = done_there
                    if o.thread:
                        back.append((self._cards.tool_thread_key(o.actual, o.thread), item.conversation_id))
                else:
                    ledger[f"d:{o.intended}"] = delivery_result(False, owner, (o.reason or "")[:_MAX_REASON])
            if run.threads:
                threads[run.conversation] = thread_fields(run.threads)
        if not finals:
            return
        pipe = pipeline(self._redis)
        queue_hset_many(pipe, finals, self._ttl)
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
