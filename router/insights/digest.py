"""The digest of a window, pure: what the routed, SLA, conversation and delivery events say.

Read from `sb.routed.v1`, `sb.sla.v1`, `sb.conversation.v1` and `sb.delivery.v1`
(decision 0011: the digest has no producer of its own in the pipeline).

- *intent*: Switchboard has no intent model; a message's intents are what the policy
  recognised in its words — the urgency rules that fired on a keyword (`outage`,
  `security`) and the queue a keyword chose (`billing`); "other" when none did.
- *repeat contacts*: customers with more than one message in the window.
- *breach causes*: breaches grouped by queue, target and tier/urgency of the conversation.
- *held replies*: receipts `held` by the reply guard, by rule (and `sent` ones it warned of).
- *follow-up outcomes*: follow-ups sent; answers that confirmed (closed) or did not
  (reopened); conversations closed for want of an answer.
Each event counts once (by its id) and only when its own time falls in the window.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from schemas.conversation import ConversationEvent
from schemas.insights import (
    BreachCause,
    Count,
    FollowUps,
    GuardRule,
    InsightDigest,
    RepeatContact,
    SentimentPoint,
)
from schemas.outbound import DeliveryReceipt
from schemas.routed import RoutedConversation
from schemas.sla import SlaEvent

__all__ = ["NEGATIVE", "Events", "intents", "summarise"]

NEGATIVE = -0.05  # VADER's line between neutral and negative
TOP = 10
_RULE = re.compile(r"keyword '[^']*'.*\(rule ([\w.-]+)")
_QUEUE = re.compile(r"^queue=([\w.-]+): .*keyword '")
Event = RoutedConversation | SlaEvent | ConversationEvent | DeliveryReceipt


@dataclass(slots=True)
class Events:
    """The window's events, each once."""

    routed: list[RoutedConversation] = field(default_factory=list)
    sla: list[SlaEvent] = field(default_factory=list)
    lifecycle: list[ConversationEvent] = field(default_factory=list)
    receipts: list[DeliveryReceipt] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)

    def add(self, event: Event) -> None:
        """Keep an event unless one with its id was kept already."""
        if isinstance(event, RoutedConversation):
            # a transfer's handoff is no customer message: its `transferred` event counts it
            if event.message is not None and self._new("r:" + event.event_id):
                self.routed.append(event)
        elif isinstance(event, SlaEvent):
            if self._new("s:" + event.event_id):
                self.sla.append(event)
        elif isinstance(event, ConversationEvent):
            if self._new("c:" + event.event_id):
                self.lifecycle.append(event)
        elif self._new(f"d:{event.reply_id}:{event.status}"):
            self.receipts.append(event)

    def _new(self, key: str) -> bool:
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


def intents(routed: RoutedConversation) -> tuple[str, ...]:
    """What the policy recognised in a message's words: keyword rules and keyword queues."""
    found: list[str] = []
    for reason in routed.reasons:
        for pattern in (_RULE, _QUEUE):
            if (m := pattern.search(reason)) and m.group(1) not in found:
                found.append(m.group(1))
    return tuple(found) or ("other",)


def _counts(counter: Counter[str]) -> tuple[Count, ...]:
    return tuple(Count(key=k, messages=n) for k, n in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


def _sentiment(routed: Sequence[RoutedConversation], since: datetime, until: datetime) -> tuple[
        SentimentPoint, ...]:
    # hours for a day or two, days beyond: a trend of about 24 to 48 points either way
    step = timedelta(hours=1) if until - since <= timedelta(hours=48) else timedelta(days=1)
    slices: defaultdict[int, list[float | None]] = defaultdict(list)
    for r in routed:
        if r.message is not None:
            slices[int((r.message.received_at - since) / step)].append(r.sentiment)
    points = []
    for i in range(int((until - since) / step) + (1 if (until - since) % step else 0)):
        scores = [s for s in slices.get(i, []) if s is not None]
        points.append(SentimentPoint(start=since + i * step, messages=len(slices.get(i, [])),
                                     mean=round(sum(scores) / len(scores), 4) if scores else None,
                                     negative=sum(1 for s in scores if s <= NEGATIVE)))
    return tuple(points)


def _repeats(routed: Sequence[RoutedConversation]) -> list[RepeatContact]:
    by: defaultdict[str, list[RoutedConversation]] = defaultdict(list)
    for r in routed:
        by[r.customer_id].append(r)
    repeats = [RepeatContact(customer_id=c, messages=len(rs),
                             conversations=len({r.conversation_id for r in rs}),
                             channels=tuple(sorted({r.message.channel for r in rs if r.message})))
               for c, rs in by.items() if len(rs) > 1]
    return sorted(repeats, key=lambda r: (-r.messages, r.customer_id))


def _as_of(routed: Sequence[RoutedConversation], at: datetime) -> RoutedConversation | None:
    """The conversation as it stood at `at`: its latest message routed by then (else its first)."""
    before = [r for r in routed if r.routed_at <= at]
    return before[-1] if before else (routed[0] if routed else None)


def _breaches(sla: Iterable[SlaEvent], known: dict[str, list[RoutedConversation]]) -> list[BreachCause]:
    counts: Counter[tuple[str, str, str, str]] = Counter()
    for s in sla:
        if s.kind == "breach":
            r = _as_of(known.get(s.conversation_id, []), s.at)
            queue, tier, urgency = (r.queue, r.tier, r.urgency) if r else ("unknown",) * 3
            counts[(queue, s.target, tier, urgency)] += 1
    return [BreachCause(cause=f"{target.replace('_', ' ')} in {queue} ({tier}/{urgency})", breaches=n,
                        queue=queue, target=target, tier=tier, urgency=urgency)
            for (queue, target, tier, urgency), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def _guard(receipts: Iterable[DeliveryReceipt]) -> tuple[int, tuple[GuardRule, ...]]:
    held: Counter[str] = Counter()
    warned: Counter[str] = Counter()
    replies = 0
    for d in receipts:
        if d.status == "held":
            replies += 1
        for flag in d.flags:
            if d.status == "held" and flag.action == "hold":
                held[flag.rule] += 1
            elif d.status == "sent":
                warned[flag.rule] += 1
    rules = sorted(held.keys() | warned.keys(), key=lambda r: (-held[r], -warned[r], r))
    return replies, tuple(GuardRule(rule=r, held=held[r], warned=warned[r]) for r in rules)


def _follow_ups(routed: Iterable[RoutedConversation], lifecycle: Iterable[ConversationEvent]) -> FollowUps:
    sent = sum(1 for e in lifecycle if e.kind == "follow_up_sent")
    quiet = sum(1 for e in lifecycle if e.kind == "closed" and e.source == "lifecycle")
    confirmed = not_solved = 0
    for r in routed:
        for d in r.decisions:
            if d.stage != "lifecycle":
                continue
            if d.outcome == "closed":
                confirmed += 1
            elif d.outcome == "reopened" and any("answer to the follow-up" in x for x in d.reasons):
                not_solved += 1
    return FollowUps(sent=sent, confirmed=confirmed, not_solved=not_solved, closed_without_answer=quiet)


def summarise(events: Events, since: datetime, until: datetime, *, now: datetime,
              records: dict[str, int] | None = None, skipped: int = 0) -> InsightDigest:
    """The digest of the events whose own time falls in [since, until)."""
    def inside(at: datetime) -> bool:
        return since <= at < until

    routed = [r for r in events.routed if r.message is not None and inside(r.message.received_at)]
    # breaches are explained by their conversations, routed in the window or before it
    known: defaultdict[str, list[RoutedConversation]] = defaultdict(list)
    for r in sorted(events.routed, key=lambda r: r.routed_at):
        known[r.conversation_id].append(r)
    sla = [s for s in events.sla if inside(s.at)]
    lifecycle = [e for e in events.lifecycle if inside(e.at)]
    held, guard = _guard(d for d in events.receipts if inside(d.at))
    repeats = _repeats(routed)
    causes = _breaches(sla, known)
    return InsightDigest(
        digest_id=f"{since.isoformat()}/{until.isoformat()}", since=since, until=until, generated_at=now,
        messages=len(routed), conversations=len({r.conversation_id for r in routed}),
        by_intent=_counts(Counter(i for r in routed for i in intents(r))),
        by_queue=_counts(Counter(r.queue for r in routed)),
        by_channel=_counts(Counter(r.message.channel for r in routed if r.message)),
        sentiment=_sentiment(routed, since, until),
        repeat_customers=len(repeats), repeat_messages=sum(r.messages for r in repeats),
        top_repeat=tuple(repeats[:TOP]),
        breaches=sum(c.breaches for c in causes), breach_causes=tuple(causes[:TOP]),
        held=held, guard=guard, follow_ups=_follow_ups(routed, lifecycle),
        records=dict(records or {}), skipped=skipped)
