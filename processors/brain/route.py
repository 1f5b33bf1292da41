"""Route: every decision the brain makes about one identified message, composed, pure.

thread (our tokens, a known channel thread) → tier (directory) → classify (sentiment,
urgency rules) → queue (policy match, overflow, fallback) → sticky (continue, transfer,
escalate) → lifecycle (resumed, reopened, a follow-up answered) → priority and due time
(business hours) → acknowledgement. Each step adds its reasons. Everything it needs is
in `Facts`, read from Redis once per batch; nothing here does I/O, so `explain` and
`whatif` run exactly this.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import msgspec

from processors.brain import acknowledge, callback, classify, lifecycle, priority, sticky, thread
from processors.brain.memo import Memo
from processors.policy.model import Policy, choose_queue
from processors.stores.history import ConversationSummary
from schemas.identified import CustomerProfile, IdentifiedMessage
from schemas.ids import new_conversation_id
from schemas.inbound import InboundMessage
from schemas.routed import Decision, HistoryEntry, RoutedConversation

__all__ = ["Facts", "Outcome", "decide"]


class Facts(msgspec.Struct, frozen=True):
    """What Redis knew about a message's customer and thread when its batch was read."""

    profile: CustomerProfile
    history: tuple[HistoryEntry, ...] = ()
    recent: Sequence[ConversationSummary] = ()
    known_thread: str | None = None
    backlog: Mapping[str, int] = msgspec.field(default_factory=dict)


class Outcome(msgspec.Struct, frozen=True):
    """The routed conversation, and the acknowledgement to send (if any), with reasons."""

    routed: RoutedConversation
    ack: acknowledge.Ack | None
    new_conversation: bool
    # what the message does to the conversation's life, and the move between queues if any
    answer: lifecycle.Answer
    transfer: lifecycle.Transfer | None = None
    # an acknowledgement was due but the channel cannot reach the customer
    unreachable: bool = False


def _contacts(history: Sequence[HistoryEntry], window: timedelta, at: datetime) -> list[datetime]:
    since = at - window
    return [e.at for e in history if e.direction == "in" and since <= e.at < at]


SUBJECT_WINDOW = timedelta(days=7)
_NO_THREAD = Decision(stage="thread", outcome="none",
                      reasons=("no token of ours and no known channel thread",))


def _same_subject(message: InboundMessage, recent: Sequence[ConversationSummary],
                  new: sticky.StickyDecision, policy: Policy) -> sticky.StickyDecision | None:
    """The weakest hint: a live conversation of the customer's with the same subject."""
    subject = thread.normalise_subject(message.subject)
    if not subject:
        return None
    for s in recent:
        if (s.subject == subject and s.status != "closed"
                and message.received_at - s.last_at <= SUBJECT_WINDOW and s.queue in policy.queues):
            return sticky.StickyDecision(
                "continue", s.conversation_id, s.queue, s.agent, s.transfers, None,
                (*new.reasons, f"joined conversation {s.conversation_id}: same subject {subject!r} "
                 f"within {SUBJECT_WINDOW.days} days (the weakest hint)"))
    return None


def _closed_thread(stuck: sticky.StickyDecision, thread_conversation: str,
                   recent: Sequence[ConversationSummary]) -> sticky.StickyDecision | None:
    """A reply in a closed conversation's thread starts a new one (or joins a live one)."""
    if not any(s.conversation_id == thread_conversation and s.status == "closed" for s in recent):
        return None
    why = f"conversation {thread_conversation} of this thread is closed: it is not continued"
    return msgspec.structs.replace(stuck, reasons=(why, *stuck.reasons))


def _transfer(stuck: sticky.StickyDecision, before: ConversationSummary | None,
              policy: Policy) -> lifecycle.Transfer | None:
    if before is None or stuck.outcome not in ("transfer", "escalate"):
        return None
    queue = policy.queues.get(before.queue)
    return lifecycle.Transfer(before.queue, stuck.queue, stuck.transfers,
                              queue.max_transfers if queue else None, stuck.outcome == "escalate")


def decide(identified: IdentifiedMessage, facts: Facts, policy: Policy,
           rules: thread.ThreadRules, now: datetime, *, memo: Memo | None = None) -> Outcome:
    """Route one identified message; the reasons of every step travel with the result.

    `memo` reuses priorities and due times across messages (the brain's batches); the
    result is the same with or without it.
    """
    message = identified.message
    # a signal of a thread, joined or refused (another customer's); None: no signal at all
    found = thread.joined(message, thread.ThreadContext(known_thread=facts.known_thread), rules)
    threaded = None if found is None else thread.guarded(found, message,
                                                         {c.conversation_id for c in facts.recent})
    proven = threaded.conversation_id if threaded is not None and threaded.joined else None
    tier, tier_reasons = priority.tier_for(facts.profile.tier, policy)
    # tier_for explains only a fallback; a tier it found came from the directory
    tier_reasons = tier_reasons or (f"tier={tier.name}: from the customer directory",)
    window = policy.contact_window if memo is None else memo.contact_window(policy)
    judged = classify.classify(message.text, message.channel, tier.name,
                               _contacts(facts.history, window, message.received_at), policy,
                               at=message.received_at, tags=message.tags)
    fresh = choose_queue(policy, channel=message.channel, tier=tier.name, urgency=judged.urgency,
                         text=message.text, backlog=facts.backlog)
    stuck = sticky.decide(received_at=message.received_at,
                          thread_conversation=proven,
                          conversations=facts.recent, fresh=fresh, policy=policy)
    closed = _closed_thread(stuck, proven, facts.recent) if proven is not None else None
    if closed is not None:
        stuck = closed
    elif proven is not None and stuck.conversation_id is None:
        # a token or known thread proves the conversation even when its summary has expired
        stuck = sticky.StickyDecision(
            "continue", proven, fresh.queue, None, 0, None,
            (f"conversation {proven} is proven by its thread but not among recent "
             "ones: queue chosen afresh", *fresh.reasons))
    if stuck.outcome == "new" and not fresh.keyword:
        stuck = _same_subject(message, facts.recent, stuck, policy) or stuck
    # named only now: most messages continue one, and the id is a digest (a refused join's is the same)
    conversation_id = stuck.conversation_id or new_conversation_id(message.event_id)
    before = None if stuck.outcome == "new" else next(
        (s for s in facts.recent if s.conversation_id == conversation_id), None)
    answer = lifecycle.on_message(before, message.text, queue=stuck.queue, agent=stuck.agent,
                                  policy=policy)
    if memo is None:
        rank = priority.priority(tier.name, judged.urgency, policy)
        due = priority.first_response_due(message.received_at, tier.name, judged.urgency, stuck.queue,
                                          policy)
    else:
        rank = memo.priority(tier.name, judged.urgency, policy)
        due = memo.due("first_response", message.received_at, tier=tier.name, urgency=judged.urgency,
                       queue=stuck.queue, policy=policy)
    answering = callback.decide(channel=message.channel, tier=tier.name, sender=message.sender,
                                identities=facts.profile.identities, due=due.at, policy=policy)
    acked = acknowledge.acknowledgement(
        channel=message.channel, recipient=message.sender.kind, tags=message.tags, name=facts.profile.name,
        reference=conversation_id, tier=tier.name, queue=stuck.queue,
        backlog=facts.backlog.get(stuck.queue, 0), handling_time=None, due=due.at, policy=policy,
        now=now, continuing=stuck.outcome != "new")
    decisions = (
        *identified.decisions,
        _NO_THREAD if threaded is None else threaded.decision,
        Decision(stage="enrich", outcome=tier.name, reasons=(
            *tier_reasons, f"history: {len(facts.history)} earlier lines, "
            f"{len(facts.recent)} recent conversations")),
        Decision(stage="classify", outcome=judged.urgency, reasons=judged.reasons),
        Decision(stage="route", outcome=stuck.queue,
                 reasons=(*stuck.reasons, *rank.reasons, *due.reasons)),
        *((answer.decision,) if answer.decision else ()),
        *((answering.decision,) if answering.decision else ()),
        Decision(stage="acknowledge", outcome="send" if acked.ack else
                 "unreachable" if acked.unreachable else "skip", reasons=acked.reasons),
    )
    routed = RoutedConversation(
        event_id=identified.event_id, conversation_id=conversation_id,
        customer_id=identified.customer_id, queue=stuck.queue, priority=rank.number, tier=tier.name,
        urgency=judged.urgency, first_response_due=due.at, routed_at=now, message=message,
        decisions=decisions, sentiment=judged.sentiment, agent=stuck.agent,
        customer_name=facts.profile.name, identities=facts.profile.identities,
        history=facts.history, transfers=stuck.transfers, reply_mode=answering.mode,
        callback=answering.task)
    return Outcome(routed, acked.ack, stuck.outcome == "new", answer,
                   _transfer(stuck, before, policy), unreachable=acked.unreachable)
