"""Brain: thread, enrich, classify, route, start the SLA clock and acknowledge, per batch.

The one writer of a customer's state. Its batches mix customer messages
(`sb.identified.v1`) and their conversations' lifecycle events (`sb.conversation.v1`:
replies sent, notes, waiting, resolved, closed, follow-ups, transfers), both keyed by
customer; a transfer is routed again, to hand the conversation to its new team. It
reads everything the batch's customers need in one round trip (thread keys, history,
recent conversations, profiles, clocks, queue backlogs), applies messages (the
pure `route.decide`) and events (the pure `lifecycle.apply`) in batch order — later ones
see earlier ones' effects — and writes every change back in a second round trip:
history, summaries, clocks, card statuses and the lifecycle plans. That write waits for
Kafka's acknowledgement of the batch's outputs and carries the "done" marks (`confirm`),
so two round trips a batch in all, and a batch rerun after a failure is decided again
from the state before it, never from its own half-written effects.

The loop processes the next batch while this one's outputs are acknowledged, so the
state a batch leaves is carried in memory until its confirm writes it: the next batch's
customers, threads and queue backlogs start from what Redis held plus every batch
processed but not yet confirmed. A read and a confirm never run at once (one lock), so a
read sees each carried batch either in Redis or in memory, never both. A failed
confirm drops everything carried, and the loop calls `forget` before it runs any batch
again: those batches are decided again from Redis.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from processors.brain import route
from processors.brain.casefile import CaseFile
from processors.brain.handover import handover
from processors.brain.memo import Memo
from processors.brain.sla import SlaClock
from processors.brain.thread import ThreadRules
from processors.intake.dedupe import Novelty
from processors.intake.dedupe import decide as decide_claim
from processors.metrics import REDIS_ROUNDTRIPS, STAGE_LATENCY, UNREACHABLE, Tally, observe_all
from processors.policy.model import Policy
from processors.send.replies import reply_reference
from processors.stage import Output, Record, decode_records
from processors.stores.cards import CardStore, status_fields
from processors.stores.claims import Claim, ClaimStore
from processors.stores.clocks import ClockStore, Write
from processors.stores.conversations import ConversationStore
from processors.stores.directory import Directory
from processors.stores.history import LAST_AT, Append, HistoryStore, RecentWrite
from processors.stores.tags import pipeline
from processors.watch.lifecycle_watch import LifecycleSchedule, Planned
from schemas.codec import encode
from schemas.conversation import ConversationEvent
from schemas.identified import CustomerProfile, IdentifiedMessage
from schemas.ids import automatic_reply_id
from schemas.outbound import OutboundMessage
from schemas.probe import ProbeEvent, ProbeMark
from schemas.routed import RoutedConversation
from schemas.topics import CONVERSATION, OUTBOUND, PROBE, ROUTED

__all__ = ["STAGE", "Brain", "Stores", "acknowledgement_message"]

STAGE = "brain"
log = logging.getLogger(__name__)
_latency = STAGE_LATENCY.labels(STAGE)
Item = IdentifiedMessage | ConversationEvent


@dataclass(frozen=True, slots=True)
class Stores:
    """Where the brain's state lives; each only queues commands on the batch's pipelines."""

    claims: ClaimStore
    threads: ConversationStore
    history: HistoryStore
    directory: Directory
    clocks: ClockStore
    cards: CardStore
    schedule: LifecycleSchedule
    backlog_key: str
    history_limit: int = 10


@dataclass(slots=True)
class _Batch:
    """What deciding one batch accumulates beyond its customers: threads, queue backlogs."""

    threads: dict[tuple[str, str], str]
    backlog: dict[str, int]
    policy: Policy
    now: datetime
    opened: Counter[str] = field(default_factory=Counter)
    thread_writes: dict[tuple[str, str], str] = field(default_factory=dict)
    # when each routed message was received: its latency is observed once a batch
    received: list[datetime] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Carried:
    """A batch processed and not yet confirmed: which records, and the state it leaves."""

    owners: tuple[str, ...]
    customers: dict[str, CaseFile]  # carried only with a batch to write
    batch: _Batch | None  # None: nothing to write but the "done" marks


def acknowledgement_message(routed: RoutedConversation, text: str, kind: str = "acknowledgement"
                            ) -> OutboundMessage:
    """The outbound message carrying an acknowledgement, in the customer's thread."""
    message = routed.message
    if message is None:
        raise ValueError("an acknowledgement answers a message; a transfer's handoff has none")
    ref = reply_reference(message)
    return OutboundMessage(
        reply_id=automatic_reply_id(kind, routed.event_id), conversation_id=routed.conversation_id,
        channel=message.channel, recipient=message.sender, kind=kind,  # type: ignore[arg-type]
        text=text, created_at=routed.routed_at, subject=message.subject, author="switchboard",
        in_reply_to=ref.in_reply_to, references=ref.references)


class Brain:
    """Runs the brain over a batch of identified messages and lifecycle events."""

    def __init__(self, redis: Redis, stores: Stores, policy: Callable[[], Policy],
                 rules: ThreadRules, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._redis = redis
        self._stores = stores
        self._policy = policy
        self._rules = rules
        self._clock = clock
        # priorities and due times, worked out once a minute per tier, urgency and queue
        self._memo = Memo(clock)
        # the fresh claims of batches processed but not yet confirmed, by record owner
        self._unconfirmed: dict[str, Claim] = {}
        # batches processed and not yet confirmed, oldest first: each confirm writes the oldest
        self._pending: deque[_Carried] = deque()
        # a batch's read and another's confirm take turns (see the module's docstring)
        self._io = asyncio.Lock()

    def forget(self) -> None:
        """Drop the state carried from unconfirmed batches: they run again, from Redis' state."""
        self._pending.clear()

    async def process(self, records: Sequence[Record]) -> list[Output]:
        """Route messages and apply events; returns routed conversations and acknowledgements."""
        owners = _owners(records)
        outputs: list[Output] = []
        decoded = _decode(records, outputs)
        if not decoded:
            self._pending.append(_Carried(owners, {}, None))
            return outputs
        tally = Tally(STAGE)
        items, customers, threads, backlog = await self._read(decoded, tally)
        batch = _Batch(threads, backlog, self._policy(), self._clock())
        debug = log.isEnabledFor(logging.DEBUG)  # once per batch: the check is not free
        probes = {item.customer_id for item in items if isinstance(item, IdentifiedMessage) and item.probe}
        for item in items:
            customer = customers[item.customer_id]
            if isinstance(item, IdentifiedMessage) and item.probe is not None:
                outputs.append(self._probe(item, item.probe, batch))
                continue  # not counted: probes never reach the business's numbers
            if isinstance(item, ConversationEvent):
                outputs += self._event(item, customer, batch)
            else:
                outputs += self._one(item, customer, batch, debug)
            tally.passed[_channel(item)] += 1
        decided = batch.now.timestamp()
        observe_all(_latency, [max(0.0, decided - at.timestamp()) for at in batch.received])
        rest = {k: v for k, v in customers.items() if k not in probes}  # a probe leaves no trace
        # written with the "done" marks once Kafka holds the outputs: one round trip, not two
        self._pending.append(_Carried(owners, rest, batch if items and rest else None))
        tally.report()
        return outputs

    def _probe(self, identified: IdentifiedMessage, mark: ProbeMark, batch: _Batch) -> Output:
        """Decide a probe's route as a new customer's, remember nothing, report it on sb.probe.v1."""
        facts = route.Facts(profile=CustomerProfile(customer_id=identified.customer_id),
                            backlog=batch.backlog)
        queue = route.decide(identified, facts, batch.policy, self._rules, batch.now).routed.queue
        event = ProbeEvent(event_id=f"{mark.probe_id}.routed", probe_id=mark.probe_id, channel=mark.channel,
                           kind="routed", sent_at=mark.sent_at, at=batch.now, queue=queue,
                           seconds=max(0.0, (batch.now - mark.sent_at).total_seconds()))
        log.info("probe routed", extra={"event_id": identified.event_id, "probe_id": mark.probe_id,
                                        "queue": queue, "seconds": event.seconds})
        return Output(PROBE, mark.channel.encode(), encode(event))

    async def confirm(self, records: Sequence[Record]) -> None:
        """Write the batch's state and mark it done, once Kafka acknowledged its outputs.

        One round trip: the state first, then the "done" marks (processors.dedupe), so a
        Redis that loses a suffix of writes never keeps a mark without the state before it.
        A stop or crash before this leaves the claims pending: the batch is read again and
        decided afresh from the state before it.
        """
        if not self._pending or self._pending[0].owners != _owners(records):
            # never another batch's state: the loop runs the batches again, process first
            self.forget()
            raise RuntimeError("confirm of a batch other than the oldest one processed")
        carried = self._pending[0]
        # only the claims this batch made or replayed: a duplicate's claim belongs to another record
        claims = [c for r in records if (c := self._unconfirmed.pop(r.owner, None)) is not None]
        if not (claims or carried.batch):
            self._pending.popleft()
            return
        pipe = pipeline(self._redis)  # split per hash tag on a Cluster
        if carried.batch is not None:
            self._queue_write(pipe, carried.customers, carried.batch)
        if claims:
            self._stores.claims.queue_done(pipe, claims)
        async with self._io:
            try:
                await pipe.execute()
            except BaseException:
                self.forget()  # later batches started from this one's state: all run again
                raise
            self._pending.popleft()
        REDIS_ROUNDTRIPS.labels(STAGE).inc()

    async def _read(self, decoded: Sequence[tuple[Record, Item]], tally: Tally) -> tuple[
            list[Item], dict[str, CaseFile], dict[tuple[str, str], str], dict[str, int]]:
        s = self._stores
        # a replayed batch re-emits messages and events: the claim keeps each applied once
        claims = [Claim(m.event_id, r.owner) for r, m in decoded]
        items = [m for _, m in decoded]
        ids = list(dict.fromkeys(m.customer_id for m in items))
        thread_ids = list(dict.fromkeys((m.message.channel, m.message.thread_key) for m in items
                                        if isinstance(m, IdentifiedMessage)))
        pipe = pipeline(self._redis)  # split per hash tag on a Cluster
        s.claims.queue(pipe, claims)
        s.threads.queue_read_threads(pipe, thread_ids)
        s.history.queue_read(pipe, ids, s.history_limit)
        s.history.queue_read_recent(pipe, ids)
        s.directory.queue_read_profiles(pipe, ids)
        s.clocks.queue_read(pipe, ids)
        pipe.hgetall(s.backlog_key)
        async with self._io:
            claimed, known, history, recent, profiles, clocks, backlog = await pipe.execute()
            carried, carried_threads, opened = self._carried()
        REDIS_ROUNDTRIPS.labels(STAGE).inc()
        customers: dict[str, CaseFile] = {}
        for cid, profile, lines, summaries, entries in zip(
                ids, s.directory.parse_profiles(ids, profiles), s.history.parse_read(history),
                s.history.parse_recent(recent), s.clocks.parse_read(clocks), strict=True):
            kept = carried.get(cid)
            customers[cid] = kept.carried(profile, s.history_limit) if kept is not None else CaseFile(
                cid, profile, list(lines), {r.conversation_id: r for r in summaries}, entries)
        threads = {t: c for t, c in zip(thread_ids, s.threads.parse_threads(known), strict=True) if c}
        threads |= carried_threads
        fresh = []
        for claim, before, item in zip(claims, claimed, items, strict=True):
            channel = _channel(item)
            counted = not (isinstance(item, IdentifiedMessage) and item.probe)  # probes are no traffic
            if counted:
                tally.seen[channel] += 1
            verdict, reason = decide_claim(claim, before)
            if verdict is Novelty.DUPLICATE:
                if counted:
                    tally.dropped[channel] += 1
                log.info("duplicate dropped", extra={"event_id": item.event_id, "reason": reason})
            else:
                fresh.append(item)
                self._unconfirmed[claim.owner] = claim
        queues = Counter({k.decode(): int(v) for k, v in backlog.items()})
        queues.update(opened)
        return fresh, customers, threads, dict(queues)

    def _carried(self) -> tuple[dict[str, CaseFile], dict[tuple[str, str], str], Counter[str]]:
        """What the unconfirmed batches leave: customers' files, threads, backlog changes; latest wins."""
        customers: dict[str, CaseFile] = {}
        threads: dict[tuple[str, str], str] = {}
        opened: Counter[str] = Counter()
        for carried in self._pending:
            if carried.batch is not None:
                customers |= carried.customers
                threads |= carried.batch.thread_writes
                opened.update(carried.batch.opened)
        return customers, threads, opened

    def _one(self, identified: IdentifiedMessage, customer: CaseFile, batch: _Batch,
             debug: bool) -> list[Output]:
        message = identified.message
        thread = (message.channel, message.thread_key)
        facts = route.Facts(
            profile=customer.profile, history=tuple(customer.history[: self._stores.history_limit]),
            recent=sorted(customer.recent.values(), key=LAST_AT, reverse=True),
            known_thread=batch.threads.get(thread), backlog=batch.backlog)
        outcome = route.decide(identified, facts, batch.policy, self._rules, batch.now, memo=self._memo)
        routed = outcome.routed
        conversation = routed.conversation_id
        batch.threads[thread] = conversation
        batch.thread_writes[thread] = conversation
        before = customer.clocks.get(conversation)
        customer.remember(outcome, batch.policy)
        _recount(batch, before.clock if before else None, customer.clocks[conversation].clock)
        outputs = [Output(ROUTED, routed.customer_id.encode(), encode(routed))]
        if outcome.ack is not None:
            ack = acknowledgement_message(routed, outcome.ack.text)
            outputs.append(Output(OUTBOUND, conversation.encode(), encode(ack)))
        elif outcome.unreachable:
            UNREACHABLE.labels("acknowledgement", message.channel, message.sender.kind).inc()
        batch.received.append(message.received_at)
        if debug:
            log.debug("routed", extra={"event_id": routed.event_id, "conversation_id": conversation,
                                       "queue": routed.queue, "priority": routed.priority})
        return outputs

    def _event(self, event: ConversationEvent, customer: CaseFile, batch: _Batch) -> list[Output]:
        context = {"event_id": event.event_id, "conversation_id": event.conversation_id,
                   "kind": event.kind}
        before = customer.clocks.get(event.conversation_id)
        was = customer.recent.get(event.conversation_id)
        change = customer.apply(event, batch.policy)
        if change is None:
            log.warning("lifecycle event for an unknown conversation", extra=context)
            return []
        log.info("lifecycle " + event.kind, extra={**context, "reason": change.reason})
        _recount(batch, before.clock if before else None, change.entry.clock)
        if event.kind != "transferred" or change.ignored or was is None:
            return []
        # the new team hears of it now, with the case file, not when the customer next writes
        routed = handover(event, change, customer, from_queue=was.queue, policy=batch.policy,
                          now=batch.now, history_limit=self._stores.history_limit)
        return [Output(ROUTED, routed.customer_id.encode(), encode(routed))]

    def _queue_write(self, pipe: Any, customers: dict[str, CaseFile], batch: _Batch) -> None:
        s = self._stores
        appends: list[Append] = []
        recent: list[RecentWrite] = []
        clocks: list[Write] = []
        statuses: dict[str, dict[str, str | bytes]] = {}
        plans: list[Planned] = []
        for c in customers.values():
            w = c.writes(batch.policy)
            appends += w.appends
            recent.append(w.recent)
            clocks += w.clocks
            statuses |= {cid: status_fields(status) for cid, status in w.statuses.items()}
            plans += w.plans
        key = s.threads.thread_key
        s.threads.queue_write_threads(pipe, [(key(*t), c) for t, c in batch.thread_writes.items()])
        s.history.queue_append(pipe, appends)
        # summaries before plans: a watch reading in between sees the new status, not a stale plan
        s.history.queue_write_recent(pipe, recent)
        s.clocks.queue_write(pipe, clocks)
        s.cards.queue_write(pipe, statuses)
        s.schedule.queue_write(pipe, plans)
        for queue, n in batch.opened.items():
            if n:
                pipe.hincrby(s.backlog_key, queue, n)


def _waiting(clock: SlaClock) -> bool:
    """Still owed its first response: what a queue's backlog counts."""
    return not (clock.replied or clock.resolved)


def _recount(batch: _Batch, before: SlaClock | None, after: SlaClock) -> None:
    """Keep the queues' backlogs true: a first response owed counts in the queue of its clock.

    A new conversation adds one; an answer or a resolve takes it away; a transfer (sticky
    routing, an escalation's reassignment) moves it to the new queue.
    """
    was = before.queue if before is not None and _waiting(before) else None
    now = after.queue if _waiting(after) else None
    if was == now:
        return
    if was is not None:
        batch.opened[was] -= 1
        batch.backlog[was] = max(0, batch.backlog.get(was, 0) - 1)
    if now is not None:
        batch.opened[now] += 1
        batch.backlog[now] = batch.backlog.get(now, 0) + 1


def _owners(records: Sequence[Record]) -> tuple[str, ...]:
    """Which records a batch is: its state is written only by the confirm of the same batch."""
    return tuple(r.owner for r in records)


def _channel(item: Item) -> str:
    """The label a batch's counts use: the message's channel, or "lifecycle" for an event."""
    return "lifecycle" if isinstance(item, ConversationEvent) else item.message.channel


def _decode(records: Sequence[Record], outputs: list[Output]) -> list[tuple[Record, Item]]:
    """Messages and lifecycle events decoded by their topic, in the batch's order."""
    events = [r for r in records if r.topic.endswith(CONVERSATION.name)]
    messages = [r for r in records if not r.topic.endswith(CONVERSATION.name)]
    decoded: list[tuple[Record, Item]] = [
        *decode_records(messages, IdentifiedMessage, STAGE, outputs),
        *decode_records(events, ConversationEvent, STAGE, outputs)]
    order = {r.owner: i for i, r in enumerate(records)}
    return sorted(decoded, key=lambda d: order[d[0].owner])
