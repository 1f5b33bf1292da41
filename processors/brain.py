"""Brain: thread, enrich, classify, route, start the SLA clock and acknowledge, per batch.

Reads everything the batch's customers need in one round trip (thread keys, history,
recent conversations, profiles, clocks, queue backlogs), decides each message with the
pure `route.decide` in order — later messages of the batch see earlier ones' effects —
and writes every change back in a second round trip.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from redis.asyncio import Redis

from processors import route, sla
from processors.clocks import ClockStore, SlaEntry, Write
from processors.conversations import ConversationStore
from processors.dedupe import Claim, ClaimStore, Verdict
from processors.dedupe import decide as decide_claim
from processors.directory import Directory
from processors.history import Append, ConversationSummary, HistoryStore, RecentWrite, stale
from processors.intake import Output, Record, decode_records
from processors.metrics import REDIS_ROUNDTRIPS, STAGE_LATENCY, Tally
from processors.policy_model import Policy
from processors.thread import ThreadRules, normalise_subject
from schemas.codec import encode
from schemas.identified import CustomerProfile, IdentifiedMessage
from schemas.inbound import EmailExtras, InboundMessage
from schemas.outbound import OutboundMessage
from schemas.routed import HistoryEntry, RoutedConversation
from schemas.topics import OUTBOUND, ROUTED

__all__ = ["STAGE", "Brain", "Stores", "acknowledgement_message"]

STAGE = "brain"
log = logging.getLogger(__name__)
_latency = STAGE_LATENCY.labels(STAGE)
SUMMARY_CHARS = 280
KEEP_RECENT = 20


@dataclass(frozen=True, slots=True)
class Stores:
    """Where the brain's state lives; each only queues commands on the batch's pipelines."""

    claims: ClaimStore
    threads: ConversationStore
    history: HistoryStore
    directory: Directory
    clocks: ClockStore
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
    thread_writes: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Customer:
    """One customer's state for the batch, updated as its messages are decided."""

    profile: CustomerProfile
    history: list[HistoryEntry]
    recent: dict[str, ConversationSummary]
    clocks: dict[str, SlaEntry]
    appends: list[tuple[InboundMessage, HistoryEntry]] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)


def reply_id_for(kind: str, event_id: str) -> str:
    """A deterministic id for an automatic message, so a replay claims the same one."""
    return f"{kind[:3]}_" + hashlib.blake2b(event_id.encode(), digest_size=10).hexdigest()


def acknowledgement_message(routed: RoutedConversation, text: str, kind: str = "acknowledgement"
                            ) -> OutboundMessage:
    """The outbound message carrying an acknowledgement, in the customer's thread."""
    message = routed.message
    extras = message.extras
    in_reply_to = extras.message_id if isinstance(extras, EmailExtras) else message.native_id
    references = (*extras.references, extras.message_id) if isinstance(extras, EmailExtras) else ()
    return OutboundMessage(
        reply_id=reply_id_for(kind, routed.event_id), conversation_id=routed.conversation_id,
        channel=message.channel, recipient=message.sender, kind=kind,  # type: ignore[arg-type]
        text=text, created_at=routed.routed_at, subject=message.subject, author="switchboard",
        in_reply_to=in_reply_to, references=references[-20:])


class Brain:
    """Runs the brain over a batch of identified messages."""

    def __init__(self, redis: Redis, stores: Stores, policy: Callable[[], Policy],
                 rules: ThreadRules) -> None:
        self._redis = redis
        self._stores = stores
        self._policy = policy
        self._rules = rules
        # the fresh claims of batches processed but not yet confirmed, by record owner
        self._unconfirmed: dict[str, Claim] = {}

    async def process(self, records: Sequence[Record]) -> list[Output]:
        """Route a batch; returns routed conversations and acknowledgements to send."""
        outputs: list[Output] = []
        decoded = decode_records(records, IdentifiedMessage, STAGE, outputs)
        if not decoded:
            return outputs
        tally = Tally(STAGE)
        messages, customers, threads, backlog = await self._read(decoded, tally)
        batch = _Batch(threads, backlog, self._policy(), datetime.now(UTC))
        debug = log.isEnabledFor(logging.DEBUG)  # once per batch: the check is not free
        for identified in messages:
            outputs += self._one(identified, customers[identified.customer_id], batch, debug)
            tally.passed[identified.message.channel] += 1
        if messages:
            await self._write(customers, batch)
        tally.report()
        return outputs

    async def confirm(self, records: Sequence[Record]) -> None:
        """Mark the batch done once Kafka acknowledged its outputs (see processors.dedupe)."""
        # only the claims this batch made or replayed: a duplicate's claim belongs to another record
        claims = [c for r in records if (c := self._unconfirmed.pop(r.owner, None)) is not None]
        if claims:
            pipe = self._redis.pipeline(transaction=False)
            self._stores.claims.queue_done(pipe, claims)
            await pipe.execute()
            REDIS_ROUNDTRIPS.labels(STAGE).inc()

    async def _read(self, decoded: Sequence[tuple[Record, IdentifiedMessage]], tally: Tally) -> tuple[
            list[IdentifiedMessage], dict[str, _Customer], dict[tuple[str, str], str], dict[str, int]]:
        s = self._stores
        # a replayed intake batch re-emits messages: the claim keeps each routed once
        claims = [Claim(m.event_id, r.owner) for r, m in decoded]
        messages = [m for _, m in decoded]
        ids = list(dict.fromkeys(m.customer_id for m in messages))
        thread_ids = list(dict.fromkeys((m.message.channel, m.message.thread_key) for m in messages))
        pipe = self._redis.pipeline(transaction=False)
        s.claims.queue(pipe, claims)
        s.threads.queue_read_threads(pipe, thread_ids)
        s.history.queue_read(pipe, ids, s.history_limit)
        s.history.queue_read_recent(pipe, ids)
        s.directory.queue_read_profiles(pipe, ids)
        s.clocks.queue_read(pipe, ids)
        pipe.hgetall(s.backlog_key)
        claimed, known, history, recent, profiles, clocks, backlog = await pipe.execute()
        REDIS_ROUNDTRIPS.labels(STAGE).inc()
        customers = {
            cid: _Customer(profile, list(lines), {r.conversation_id: r for r in summaries}, entries)
            for cid, profile, lines, summaries, entries in zip(
                ids, s.directory.parse_profiles(ids, profiles), s.history.parse_read(history),
                s.history.parse_recent(recent), s.clocks.parse_read(clocks), strict=True)
        }
        threads = {t: c for t, c in zip(thread_ids, s.threads.parse_threads(known), strict=True) if c}
        fresh = []
        for claim, before, message in zip(claims, claimed, messages, strict=True):
            channel = message.message.channel
            tally.seen[channel] += 1
            verdict, reason = decide_claim(claim, before)
            if verdict is Verdict.DUPLICATE:
                tally.dropped[channel] += 1
                log.info("duplicate dropped", extra={"event_id": message.event_id, "reason": reason})
            else:
                fresh.append(message)
                self._unconfirmed[claim.owner] = claim
        return fresh, customers, threads, {k.decode(): int(v) for k, v in backlog.items()}

    def _one(self, identified: IdentifiedMessage, customer: _Customer, batch: _Batch,
             debug: bool) -> list[Output]:
        message = identified.message
        thread = (message.channel, message.thread_key)
        facts = route.Facts(
            profile=customer.profile, history=tuple(customer.history[: self._stores.history_limit]),
            recent=sorted(customer.recent.values(), key=lambda r: r.last_at, reverse=True),
            known_thread=batch.threads.get(thread), backlog=batch.backlog)
        outcome = route.decide(identified, facts, batch.policy, self._rules, batch.now)
        routed = outcome.routed
        conversation = routed.conversation_id
        batch.threads[thread] = conversation
        batch.thread_writes[self._stores.threads.thread_key(*thread)] = conversation
        if outcome.new_conversation:
            batch.opened[routed.queue] += 1
            batch.backlog[routed.queue] = batch.backlog.get(routed.queue, 0) + 1
        self._remember(customer, routed, batch.policy)
        outputs = [Output(ROUTED, routed.customer_id.encode(), encode(routed))]
        if outcome.ack is not None:
            ack = acknowledgement_message(routed, outcome.ack.text)
            outputs.append(Output(OUTBOUND, conversation.encode(), encode(ack)))
        _latency.observe(max(0.0, batch.now.timestamp() - message.received_at.timestamp()))
        if debug:
            log.debug("routed", extra={"event_id": routed.event_id, "conversation_id": conversation,
                                       "queue": routed.queue, "priority": routed.priority})
        return outputs

    def _remember(self, customer: _Customer, routed: RoutedConversation, policy: Policy) -> None:
        message = routed.message
        conversation = routed.conversation_id
        entry = HistoryEntry(at=message.received_at, channel=message.channel,
                             conversation_id=conversation, direction="in",
                             summary=message.text[:SUMMARY_CHARS], queue=routed.queue, agent=routed.agent)
        customer.history.insert(0, entry)
        customer.appends.append((message, entry))
        before = customer.recent.get(conversation)
        # a reply without a subject of its own keeps the conversation's
        subject = normalise_subject(message.subject) or (before.subject if before else "")
        customer.recent[conversation] = ConversationSummary(
            conversation_id=conversation, queue=routed.queue, status="open",
            last_at=message.received_at, agent=routed.agent, transfers=routed.transfers,
            identity=str(message.sender),
            subject=subject)
        existing = customer.clocks.get(conversation)
        clock = existing.clock if existing else sla.SlaClock(
            tier=routed.tier, urgency=routed.urgency, queue=routed.queue)
        clock, _ = sla.apply(clock, sla.ClockEvent("customer_message", message.received_at), policy)
        extras = message.extras
        customer.clocks[conversation] = SlaEntry(
            conversation_id=conversation, customer_id=routed.customer_id, channel=message.channel,
            recipient=message.sender, clock=clock, name=routed.customer_name,
            subject=message.subject,
            in_reply_to=extras.message_id if isinstance(extras, EmailExtras) else message.native_id)
        customer.touched.add(conversation)

    async def _write(self, customers: dict[str, _Customer], batch: _Batch) -> None:
        s = self._stores
        appends: list[Append] = []
        recent: list[RecentWrite] = []
        clocks: list[Write] = []
        for cid, c in customers.items():
            by_identity: dict[str, list[HistoryEntry]] = defaultdict(list)
            senders = {str(m.sender): m.sender for m, _ in c.appends}
            for m, entry in c.appends:
                by_identity[str(m.sender)].append(entry)
            appends += [Append(cid, entries, senders[i]) for i, entries in by_identity.items()]
            touched = [c.recent[t] for t in c.touched]
            recent.append(RecentWrite(cid, touched, stale(list(c.recent.values()), KEEP_RECENT)))
            clocks += [Write(c.clocks[t], sla.next_due(c.clocks[t].clock, batch.policy)) for t in c.touched]
        pipe = self._redis.pipeline(transaction=False)
        s.threads.queue_write_threads(pipe, list(batch.thread_writes.items()))
        s.history.queue_append(pipe, appends)
        s.history.queue_write_recent(pipe, recent)
        s.clocks.queue_write(pipe, clocks)
        for queue, n in batch.opened.items():
            pipe.hincrby(s.backlog_key, queue, n)
        await pipe.execute()
        REDIS_ROUNDTRIPS.labels(STAGE).inc()
