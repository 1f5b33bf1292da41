"""Lifecycle: what a conversation event or a customer's message does to its conversation, pure.

Statuses: open ⇄ waiting_on_customer, any → resolved → closed. A customer's message
reopens a resolved conversation with the same queue and agent (sticky continues it until
it closes); a closed one is never continued. Resolving plans a follow-up ("is it really
solved?") and a close; a customer's message cancels both, and when it answers a follow-up
that went out it is the outcome: the policy's `confirm` words close the case, anything
else reopens it. The brain stores the results in its write round trip and the lifecycle
watch fires what falls due; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from msgspec.structs import replace

from processors.brain import sla
from processors.policy.model import Policy
from processors.stores.clocks import SlaEntry
from processors.stores.history import ConversationSummary
from schemas.conversation import ConversationEvent, LifecycleKind, Status
from schemas.routed import Decision, HistoryEntry

__all__ = [
    "Answer",
    "Change",
    "Due",
    "DueKind",
    "Transfer",
    "apply",
    "card_status",
    "follow_up_text",
    "on_message",
    "planned",
    "transfer_line",
]

DueKind = Literal["follow_up", "close"]
Outcome = Literal["confirmed", "not solved"]
SUMMARY_CHARS = 280
_STATUSES: dict[str, Status] = {s: s for s in ("open", "waiting_on_customer", "resolved", "closed")}


def card_status(status: str) -> Status:
    """A summary's status as a card shows it; one the card does not know reads as open."""
    return _STATUSES.get(status, "open")


@dataclass(frozen=True, slots=True)
class Due:
    """Something resolving planned, a follow-up or the close, and when it falls due."""

    kind: DueKind
    at: datetime


def _template(policy: Policy, channel: str, tier: str) -> str | None:
    follow_up = policy.lifecycle.follow_up
    by_tier = follow_up.templates.get(channel) if follow_up else None
    if by_tier is None:
        return None
    return by_tier.get(tier, by_tier.get("default"))


class _Fill(dict[str, str]):
    def __missing__(self, key: str) -> str:
        # a placeholder we do not fill stays as written: a timer must not die on a template
        return "{" + key + "}"


def follow_up_text(policy: Policy, *, channel: str, tier: str, name: str | None,
                   reference: str) -> str | None:
    """The follow-up for a channel and tier (else the channel's default), filled; None if none."""
    template = _template(policy, channel, tier)
    if template is None:
        return None
    name = (name or "").strip() or policy.acknowledge.unknown_name
    return template.format_map(_Fill(name=name, reference=reference))


def planned(at: datetime, channel: str, tier: str, policy: Policy) -> tuple[Due, ...]:
    """What resolving at `at` plans: the follow-up if the channel has one, and the close."""
    life = policy.lifecycle
    close = Due("close", at + life.close_after)
    if life.follow_up is None or _template(policy, channel, tier) is None:
        return (close,)
    return Due("follow_up", at + life.follow_up.delay), close


@dataclass(frozen=True, slots=True)
class Answer:
    """What a customer's message does to the conversation it continues, and why."""

    status: Status
    outcome: Outcome | None = None  # set when it answers a follow-up
    clock: bool = True  # the message starts or resumes the SLA clock
    cancel: bool = False  # the planned follow-up and close are dropped
    decision: Decision | None = None


_OPEN = Answer("open")  # the common answer, built once (immutable)


def on_message(before: ConversationSummary | None, text: str, *, queue: str, agent: str | None,
               policy: Policy) -> Answer:
    """A customer's message in a conversation that stood at `before` (None: a new one)."""
    if before is None or before.status not in ("waiting_on_customer", "resolved"):
        return _OPEN
    cid = before.conversation_id
    if before.status == "waiting_on_customer":
        return Answer("open", decision=Decision(stage="lifecycle", outcome="open", reasons=(
            f"resumed: {cid} was waiting on the customer, who answered; the SLA clock runs again",)))
    who = f"queue {queue}" + (f", agent {agent}" if agent else "")
    if before.follow_up_at is not None:
        confirm = policy.lifecycle.confirm
        word = confirm.find(text) if confirm else None
        if word is not None:
            return Answer("closed", "confirmed", clock=False, cancel=True, decision=Decision(
                stage="lifecycle", outcome="closed", reasons=(
                    f"closed: the customer's answer to the follow-up of {cid} confirms it is "
                    f"solved (keyword {word!r})",)))
        why = "no confirming words" if confirm else "the policy lists no confirming words"
        return Answer("open", "not solved", cancel=True, decision=Decision(
            stage="lifecycle", outcome="reopened", reasons=(
                f"reopened: the customer's answer to the follow-up of {cid} does not confirm a "
                f"fix ({why}); it continues with {who}",)))
    return Answer("open", cancel=True, decision=Decision(stage="lifecycle", outcome="reopened", reasons=(
        f"reopened: resolved conversation {cid} continues with {who}",)))


@dataclass(frozen=True, slots=True)
class Transfer:
    """A conversation moved between queues, its transfer count after the move, and the limit."""

    from_queue: str
    to_queue: str
    transfers: int
    allowed: int | None = None  # the old queue's max_transfers; None when it is gone
    escalated: bool = False  # too many transfers: escalated instead of passed on

    def words(self) -> str:
        """The move as a history line says it."""
        if self.escalated:
            return (f"escalated from {self.from_queue} to {self.to_queue}: {self.transfers} "
                    f"transfers, more than the {self.allowed} queue {self.from_queue} allows")
        limit = f" of at most {self.allowed}" if self.allowed is not None else ""
        return f"transferred from {self.from_queue} to {self.to_queue}: transfer {self.transfers}{limit}"


def transfer_line(transfer: Transfer, *, conversation_id: str, channel: str, at: datetime,
                  agent: str | None = None) -> HistoryEntry:
    """The history line that keeps a transfer (and the count so far) visible."""
    return HistoryEntry(at=at, channel=channel, conversation_id=conversation_id, direction="event",
                        summary=transfer.words(), queue=transfer.to_queue, agent=agent)


@dataclass(frozen=True, slots=True)
class Change:
    """One conversation after one lifecycle event: what to store, to add, to plan, and why."""

    summary: ConversationSummary
    entry: SlaEntry
    line: HistoryEntry | None
    reason: str
    clock_event: sla.ClockEvent | None = None
    plan: tuple[Due, ...] = ()
    cancel: bool = False  # drop what an earlier resolve planned (before `plan` is added)
    ignored: bool = False

    @property
    def status(self) -> Status:
        """The card's status after the event."""
        return card_status(self.summary.status)


@dataclass(frozen=True, slots=True)
class _Event:
    event: ConversationEvent
    summary: ConversationSummary
    entry: SlaEntry
    policy: Policy

    @property
    def was(self) -> str:
        return self.summary.status

    def ignored(self, why: str) -> Change:
        return Change(self.summary, self.entry, None, f"{self.event.kind} ignored: {why}", ignored=True)

    def line(self, direction: Literal["out", "note", "event"], text: str,
             outcome: Outcome | None = None) -> HistoryEntry:
        return HistoryEntry(at=self.event.at, channel=self.entry.channel,
                            conversation_id=self.summary.conversation_id, direction=direction,
                            summary=text[:SUMMARY_CHARS], queue=self.summary.queue,
                            agent=self.event.author or self.summary.agent, outcome=outcome)

    def clock(self, kind: sla.EventKind, entry: SlaEntry | None = None
              ) -> tuple[SlaEntry, sla.ClockEvent, str]:
        entry = entry or self.entry
        event = sla.ClockEvent(kind, self.event.at)
        clock, why = sla.apply(entry.clock, event, self.policy)
        return replace(entry, clock=clock), event, why

    def moved(self, status: Status, **changes: object) -> ConversationSummary:
        return replace(self.summary, status=status, last_at=max(self.summary.last_at, self.event.at),
                       **changes)


def _agent_reply(e: _Event) -> Change:
    entry, event, why = e.clock("agent_public_reply")
    if e.was == "waiting_on_customer":
        # the team still waits on the customer: the target the reply started stays paused
        entry, _, paused = e.clock("waiting_on_customer", entry)
        why = f"{why}; {paused}"
    summary = replace(e.summary, agent=e.event.author or e.summary.agent,
                      last_at=max(e.summary.last_at, e.event.at))
    return Change(summary, entry, e.line("out", e.event.text or "agent replied"), why, event)


def _called_back(e: _Event) -> Change:
    if e.was == "closed":
        return e.ignored("the conversation is closed")
    # the call reached the customer: it is the team's answer, as a sent reply is
    entry, event, why = e.clock("agent_public_reply")
    by = f" by {e.event.author}" if e.event.author else ""
    note = f": {e.event.text}" if e.event.text else ""
    summary = replace(e.summary, agent=e.event.author or e.summary.agent,
                      last_at=max(e.summary.last_at, e.event.at))
    return Change(summary, entry, e.line("out", f"called back{by}{note}"), f"called back; {why}", event)


def _note(e: _Event) -> Change:
    return Change(e.summary, e.entry, e.line("note", e.event.text or ""), "internal note added")


def _waiting(e: _Event) -> Change:
    if e.was != "open":
        return e.ignored(f"the conversation is {e.was}")
    entry, event, why = e.clock("waiting_on_customer")
    return Change(e.moved("waiting_on_customer"), entry,
                  e.line("event", f"open → waiting_on_customer; {why}"), why, event)


def _resolved(e: _Event) -> Change:
    if e.was in ("resolved", "closed"):
        return e.ignored(f"already {e.was}")
    entry, event, why = e.clock("resolved")
    plan = planned(e.event.at, e.entry.channel, e.entry.clock.tier, e.policy)
    words = "; ".join(f"{d.kind.replace('_', '-')} due {d.at.isoformat(timespec='seconds')}"
                      for d in plan)
    summary = e.moved("resolved", resolved_at=e.event.at, follow_up_at=None)
    return Change(summary, entry, e.line("event", f"{e.was} → resolved; {why}; {words}"),
                  f"{why}; {words}", event, plan, cancel=True)


def _closed(e: _Event) -> Change:
    if e.was == "closed":
        return e.ignored("already closed")
    entry, event, why = e.clock("resolved")
    text = f"{e.was} → closed: {e.event.text or 'closed'}"
    return Change(e.moved("closed", follow_up_at=None), entry, e.line("event", text), why, event,
                  cancel=True)


def _reopened(e: _Event) -> Change:
    if e.was != "resolved":
        return e.ignored(f"only a resolved conversation reopens; this one is {e.was}")
    by = f" by {e.event.author}" if e.event.author else ""
    line = e.line("event", f"resolved → open: reopened{by}")
    return Change(e.moved("open", follow_up_at=None), e.entry, line,
                  "reopened: the clock starts when the customer writes", cancel=True)


def _follow_up_sent(e: _Event) -> Change:
    line = e.line("out", e.event.text or "follow-up sent")
    if e.was != "resolved":
        # reopened while the follow-up was on its way: it is history, not a question pending
        return Change(e.summary, e.entry, line, f"follow-up sent while {e.was}: no answer awaited")
    summary = replace(e.summary, follow_up_at=e.event.at, last_at=max(e.summary.last_at, e.event.at))
    return Change(summary, e.entry, line, "follow-up sent: the customer's next message answers it")


def _outcome(e: _Event) -> Change:
    if e.was != "resolved" or e.summary.follow_up_at is None:
        return e.ignored("no follow-up awaits an answer")
    answer = on_message(e.summary, e.event.text or "", queue=e.summary.queue, agent=e.summary.agent,
                        policy=e.policy)
    entry, event = e.entry, None
    if answer.clock:
        entry, event, _ = e.clock("customer_message")
    reason = answer.decision.reasons[0] if answer.decision else answer.status
    return Change(e.moved(answer.status, follow_up_at=None), entry,
                  e.line("event", f"resolved → {answer.status}: {reason}", answer.outcome), reason,
                  event, cancel=True)


def _transferred(e: _Event) -> Change:
    to = e.event.queue
    if not to or to == e.summary.queue:
        return e.ignored("it names no other queue")
    if to not in e.policy.queues:  # checked where it was asked; a reload may have dropped it since
        return e.ignored(f"the policy has no queue {to!r}")
    queue = e.policy.queues.get(e.summary.queue)
    transfer = Transfer(e.summary.queue, to, e.summary.transfers + 1,
                        queue.max_transfers if queue else None)
    summary = replace(e.summary, queue=to, agent=None, transfers=transfer.transfers,
                      last_at=max(e.summary.last_at, e.event.at))
    entry = replace(e.entry, clock=replace(e.entry.clock, queue=to))
    line = transfer_line(transfer, conversation_id=e.summary.conversation_id,
                         channel=e.entry.channel, at=e.event.at, agent=e.event.author)
    return Change(summary, entry, line, transfer.words())


_HANDLERS: dict[LifecycleKind, Callable[[_Event], Change]] = {
    "agent_reply": _agent_reply,
    "note": _note,
    "waiting_on_customer": _waiting,
    "resolved": _resolved,
    "closed": _closed,
    "reopened": _reopened,
    "follow_up_sent": _follow_up_sent,
    "outcome": _outcome,
    "transferred": _transferred,
    "called_back": _called_back,
}


def apply(event: ConversationEvent, summary: ConversationSummary, entry: SlaEntry,
          policy: Policy) -> Change:
    """The conversation after `event`: its summary, clock, history line, plans, and why."""
    return _HANDLERS[event.kind](_Event(event, summary, entry, policy))
