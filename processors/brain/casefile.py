"""A customer's case file for one brain batch: what Redis held, changed in batch order.

The brain reads every customer of a batch once; each routed message (`remember`) and each
lifecycle event (`apply`) changes the file, later ones seeing what earlier ones did; then
the brain writes every file back in one round trip (`writes`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter

from msgspec.structs import replace

from processors.brain import lifecycle, route, sla
from processors.brain.thread import normalise_subject
from processors.policy.model import Policy
from processors.send.replies import reply_reference
from processors.stores.clocks import SlaEntry, Write
from processors.stores.history import Append, ConversationSummary, RecentWrite, stale
from processors.watch.lifecycle_watch import Planned
from schemas.conversation import ConversationEvent, Status
from schemas.identified import CustomerProfile
from schemas.identity import Identity
from schemas.routed import HistoryEntry

__all__ = ["CaseFile", "Writes"]

SUMMARY_CHARS = 280
KEEP_RECENT = 20
_PLANNED: tuple[lifecycle.DueKind, ...] = ("follow_up", "close")
_AT = attrgetter("at")


@dataclass(frozen=True, slots=True)
class Writes:
    """Everything one case file stores back."""

    appends: list[Append]
    recent: RecentWrite
    clocks: list[Write]
    statuses: dict[str, Status]
    plans: list[Planned]


@dataclass(slots=True)
class CaseFile:
    """One customer's state for the batch, updated as its messages and events are applied."""

    customer_id: str
    profile: CustomerProfile
    history: list[HistoryEntry]
    recent: dict[str, ConversationSummary]
    clocks: dict[str, SlaEntry]
    # new lines, each with the identity it concerns (None: the customer as a whole)
    appends: list[tuple[Identity | None, HistoryEntry]] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)
    # (conversation, kind) → when it falls due, None to cancel
    plans: dict[tuple[str, lifecycle.DueKind], datetime | None] = field(default_factory=dict)

    def carried(self, profile: CustomerProfile, history_limit: int) -> CaseFile:
        """The file as Redis will hold it once its writes land: where the next batch starts while they fly.

        Read back, the history is the newest `history_limit` lines by time and the summaries
        lose the stale ones; the profile is the one just read (intake keeps it, not the brain).
        """
        gone = set(stale(list(self.recent.values()), KEEP_RECENT))
        history = sorted(self.history, key=_AT, reverse=True)[:history_limit]
        return CaseFile(self.customer_id, profile, history,
                        {c: s for c, s in self.recent.items() if c not in gone}, dict(self.clocks))

    def _add(self, identity: Identity | None, entry: HistoryEntry) -> None:
        self.history.insert(0, entry)
        self.appends.append((identity, entry))

    def _cancel(self, conversation: str) -> None:
        for kind in _PLANNED:
            self.plans[(conversation, kind)] = None

    def remember(self, outcome: route.Outcome, policy: Policy) -> None:
        """A routed message: its history lines, its conversation's summary, clock and plans."""
        routed, answer = outcome.routed, outcome.answer
        message = routed.message
        if message is None:
            raise ValueError("a routed message without its message: only a transfer's handoff has none")
        conversation = routed.conversation_id
        if outcome.transfer is not None:
            self._add(None, lifecycle.transfer_line(
                outcome.transfer, conversation_id=conversation, channel=message.channel,
                at=message.received_at))
        self._add(message.sender, HistoryEntry(
            at=message.received_at, channel=message.channel, conversation_id=conversation,
            direction="in", summary=message.text[:SUMMARY_CHARS], queue=routed.queue,
            agent=routed.agent, outcome=answer.outcome))
        before = self.recent.get(conversation)
        # a reply without a subject of its own keeps the conversation's
        subject = normalise_subject(message.subject) or (before.subject if before else "")
        self.recent[conversation] = ConversationSummary(
            conversation_id=conversation, queue=routed.queue, status=answer.status,
            last_at=message.received_at, agent=routed.agent, transfers=routed.transfers,
            identity=str(message.sender), subject=subject)
        existing = self.clocks.get(conversation)
        clock = existing.clock if existing else sla.SlaClock(
            tier=routed.tier, urgency=routed.urgency, queue=routed.queue)
        if clock.queue != routed.queue:  # transferred: the new team's calendar and chain apply
            clock = replace(clock, queue=routed.queue)
        if answer.clock:
            clock, _ = sla.apply(clock, sla.ClockEvent("customer_message", message.received_at), policy)
        self.clocks[conversation] = SlaEntry(
            conversation_id=conversation, customer_id=routed.customer_id, channel=message.channel,
            recipient=message.sender, clock=clock, name=routed.customer_name, subject=message.subject,
            in_reply_to=reply_reference(message).in_reply_to)
        if answer.cancel:
            self._cancel(conversation)
        self.touched.add(conversation)

    def apply(self, event: ConversationEvent, policy: Policy) -> lifecycle.Change | None:
        """A lifecycle event; None when the conversation is not (or no longer) known here."""
        conversation = event.conversation_id
        summary, entry = self.recent.get(conversation), self.clocks.get(conversation)
        if summary is None or entry is None:
            return None
        change = lifecycle.apply(event, summary, entry, policy)
        if change.ignored:
            return change
        self.recent[conversation] = change.summary
        self.clocks[conversation] = change.entry
        if change.line is not None:
            self._add(None, change.line)
        if change.cancel:
            self._cancel(conversation)
        for due in change.plan:
            self.plans[(conversation, due.kind)] = due.at
        self.touched.add(conversation)
        return change

    def writes(self, policy: Policy) -> Writes:
        """What to store back: lines by identity, touched summaries, clocks, statuses, plans."""
        by_identity: dict[Identity | None, list[HistoryEntry]] = defaultdict(list)
        for identity, entry in self.appends:
            by_identity[identity].append(entry)
        touched = [self.recent[t] for t in self.touched]
        return Writes(
            appends=[Append(self.customer_id, entries, i) for i, entries in by_identity.items()],
            recent=RecentWrite(self.customer_id, touched, stale(list(self.recent.values()), KEEP_RECENT)),
            clocks=[Write(self.clocks[t], sla.next_due(self.clocks[t].clock, policy)) for t in self.touched],
            statuses={s.conversation_id: lifecycle.card_status(s.status) for s in touched},
            plans=[Planned(self.customer_id, c, kind, at) for (c, kind), at in self.plans.items()])
