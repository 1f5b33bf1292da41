"""What the customer and the agents saw in one scenario, from the event log and the receivers.

An item belongs to the scenario it was made in; an effect (a routed record, a mail at
the sink, a receipt, a crash) to the scenario whose time window it happened in, so a
re-read caused by one scenario is counted there and not where the message was first sent.
What reached people is read at the receiving servers: the SMTP sink (customers' replies
by the reply id in their Message-ID, team-mailbox handoffs by delivery id) and the
agents' webhook (by delivery id).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from bench.faults.faults import Fault, Rig, Scenario, recovered_at
from bench.faults.load import Item, Ledger
from schemas.ids import delivery_id, mail_nonce

__all__ = ["MUST_BE_ZERO", "Counts", "Received", "Window", "count"]

# the counts that fail the run when not zero (but where a scenario may double by design)
MUST_BE_ZERO = ("lost", "duplicate_conversations", "sent_twice", "replies_lost", "crashes")
DOUBLES = ("duplicate_conversations", "sent_twice")
# where the suite's policy hands conversations: the webhook, and its fallback the team mailbox
WEBHOOK, FALLBACK = "helpdesk-webhook", "support-mailbox"
EXAMPLES = 5


@dataclass(frozen=True)
class Window:
    """A scenario's time: from its load's start to the next scenario's (wall clock)."""

    start: float
    end: float

    def __contains__(self, moment: float) -> bool:
        return self.start <= moment < self.end


@dataclass
class Received:
    """What the receiving servers got: each customer reply's arrivals, each handoff's first."""

    replies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    deliveries: dict[str, float] = field(default_factory=dict)  # delivery id or mail nonce → first

    @classmethod
    def of(cls, rig: Rig) -> Received:
        """Index the sink's mails and the webhook's deliveries."""
        seen = cls()
        for mail in rig.smtp.mails:
            if mail.to_customer:
                # a plain reply id rides in the Message-ID as it is; any other, as its nonce
                local = mail.nonce or mail.message_id
                seen.replies[rig.journal.by_nonce.get(local, local)].append(mail.at)
            elif mail.nonce:
                seen.deliveries.setdefault(mail.nonce, mail.at)
        for d in rig.webhook.deliveries:
            seen.deliveries.setdefault(d.delivery_id, d.at + rig.clock_offset)
        return seen

    def handed_at(self, event_id: str) -> float | None:
        """When a routed message first reached its team: the webhook, or the fallback mailbox."""
        source = f"routed:{event_id}"
        moments = [self.deliveries.get(delivery_id(source, WEBHOOK)),
                   self.deliveries.get(mail_nonce(delivery_id(source, FALLBACK)))]
        return min((m for m in moments if m is not None), default=None)


@dataclass
class Counts:
    """One scenario's row."""

    scenario: str
    title: str
    faults: int
    api: int
    mail: int
    replies: int
    not_accepted: int
    lost: int
    duplicate_conversations: int
    sent_twice: int
    replies_lost: int
    crashes: int
    uncertain: int
    uncertain_unsent: int
    failed: int
    rerouted: int
    receipts_missing: int
    not_handed: int
    handoff_receipts_missing: int
    first_s: float | None
    drained_s: float | None
    may_double: bool
    faults_seen: list[dict[str, object]] = field(default_factory=list)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def failures(self) -> list[str]:
        """The must-be-zero counts that are not, by name."""
        return [name for name in MUST_BE_ZERO if getattr(self, name)
                and not (self.may_double and name in DOUBLES)]


def count(rig: Rig, scenario: Scenario, window: Window, *, faults: list[Fault], ledger: Ledger,
          run_prefix: str) -> Counts:
    """Count one scenario from everything the run saw."""
    journal, seen = rig.journal, Received.of(rig)
    items = ledger.of(scenario.name)
    taken = [i for i in items if i.accepted_at is not None]
    inbound = [i for i in taken if i.kind != "reply"]
    lost = [i.key for i in inbound if i.key not in journal.routed]
    doubled, rerouted = _routed_again(rig, window, run_prefix)
    twice = [f"{reply} x{len(times)}" for reply, times in seen.replies.items()
             if len(times) > 1 and sorted(times)[1] in window]
    receipts = [(reply, status) for at, reply, status in journal.receipt_records if at in window]
    uncertain = [reply for reply, status in receipts if status == "uncertain"]
    unsent = [reply for reply in uncertain if reply not in seen.replies]
    replies_lost = [reply for reply, status in receipts if status == "sent" and reply not in seen.replies]
    missing_receipts = [reply for reply, (at, _) in journal.outbound.items()
                        if at in window and reply not in journal.receipts]
    events = {i.key: {event for _, _, event in journal.routed.get(i.key, ())} for i in inbound}
    not_handed = [key for key, ids in events.items() if ids and all(seen.handed_at(e) is None for e in ids)]
    no_handoff_receipt = [key for key, ids in events.items() if ids and not any(
        status == "delivered" for e in ids for _, _, status, _ in journal.handoffs.get(e, ()))]
    crashes = [c for c in rig.supervisor.crashes if c.at in window]
    firsts = [_first(rig, scenario, f) for f in faults]
    drains = [_drained(rig, seen, scenario, f, taken) for f in faults]
    return Counts(
        scenario=scenario.name, title=scenario.title, faults=len(faults),
        api=sum(i.kind == "api" for i in taken), mail=sum(i.kind == "mail" for i in taken),
        replies=sum(i.kind == "reply" for i in taken), not_accepted=len(items) - len(taken),
        lost=len(lost), duplicate_conversations=len(doubled), sent_twice=len(twice),
        replies_lost=len(replies_lost), crashes=len(crashes), uncertain=len(uncertain),
        uncertain_unsent=len(unsent), failed=sum(status == "failed" for _, status in receipts),
        rerouted=rerouted, receipts_missing=len(missing_receipts), not_handed=len(not_handed),
        handoff_receipts_missing=len(no_handoff_receipt),
        first_s=_worst(firsts), drained_s=None if None in drains else _worst(drains),
        may_double=scenario.may_double,
        faults_seen=[{"fault": f.note, "seconds": round(f.ended - f.began, 1),
                      "first_s": None if first is None else round(first, 1),
                      "drained_s": None if drained is None else round(drained, 1)}
                     for f, first, drained in zip(faults, firsts, drains, strict=True)],
        examples={name: values[:EXAMPLES] for name, values in {
            "lost": lost, "duplicate_conversations": doubled, "sent_twice": twice,
            "replies_lost": replies_lost, "uncertain": uncertain, "uncertain_unsent": unsent,
            "receipts_missing": missing_receipts, "not_handed": not_handed,
            "handoff_receipts_missing": no_handoff_receipt,
            "crashes": [f"{c.role} exited {c.returncode}:\n{c.log_tail}" for c in crashes],
        }.items() if values})


def _routed_again(rig: Rig, window: Window, run_prefix: str) -> tuple[list[str], int]:
    """Messages of this run given a second conversation in the window, and re-routed records."""
    doubled, again = [], 0
    for native, records in rig.journal.routed.items():
        if not native.startswith(run_prefix) or len(records) < 2:
            continue
        ordered = sorted(records, key=lambda r: r[1])
        first = ordered[0][0]
        later = [r for r in ordered[1:] if r[1] in window]
        again += len(later)
        if any(conversation != first for conversation, _, _ in later):
            doubled.append(f"{native}: {sorted({r[0] for r in ordered})}")
    return doubled, again


def _first(rig: Rig, scenario: Scenario, fault: Fault) -> float | None:
    moment = recovered_at(rig, scenario.signal, fault.ended)
    return None if moment is None else moment - fault.ended


def _watched(scenario: Scenario, item: Item) -> bool:
    """Whether the scenario's signal follows this kind of item."""
    if scenario.signal == "mailed":
        return item.kind == "reply"
    return item.kind == "mail" if scenario.signal == "mail-routed" else item.kind != "reply"


def _done_at(rig: Rig, seen: Received, scenario: Scenario, item: Item) -> float | None:
    """When an item was done, as the scenario's signal sees it; None when not (yet)."""
    journal = rig.journal
    if scenario.signal == "mailed":
        return min((at for _, at in journal.receipts.get(item.key, ())), default=None)
    routed = journal.routed.get(item.key, ())
    if scenario.signal == "handed":
        return min((at for _, _, event in routed if (at := seen.handed_at(event)) is not None),
                   default=None)
    return min((at for _, at, _ in routed), default=None)


def _drained(rig: Rig, seen: Received, scenario: Scenario, fault: Fault,
             taken: Iterable[Item]) -> float | None:
    """Seconds from the fault's end until everything taken before it was done; None if never."""
    worst = 0.0
    for item in taken:
        if item.accepted_at is None or item.accepted_at > fault.ended or not _watched(scenario, item):
            continue
        done = _done_at(rig, seen, scenario, item)
        if done is None:
            return None
        worst = max(worst, done - fault.ended)
    return worst


def _worst(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(max(known), 1) if known else None
