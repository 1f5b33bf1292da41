"""The day's scorecard, computed from what the system recorded on its topics (pure).

Inputs are the decoded events of `sb.routed.v1`, `sb.sla.v1`, `sb.conversation.v1`,
`sb.outbound.v1`, `sb.delivery.v1` and `sb.handoff.v1`; nothing of the simulator's own
bookkeeping. A conversation's first response is its first `agent_reply` lifecycle event
(written when the reply actually reached the customer).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from schemas.conversation import ConversationEvent
from schemas.handoff import HandoffReceipt
from schemas.outbound import DeliveryReceipt, OutboundMessage
from schemas.routed import RoutedConversation
from schemas.sla import SlaEvent

__all__ = ["TARGETS", "Recorded", "Scorecard", "promised_time", "score"]

# the targets at nominal staffing
TARGETS = {"premium_sla": 0.99, "promises_kept": 0.95, "status_before_breach": 1.0, "duplicates": 0,
           "at_most_one_transfer": 0.95, "with_history": 1.0}
_PROMISE = re.compile(r"\b(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (\d{2}) (\w{3}), (\d{2}):(\d{2}) ([A-Z][A-Za-z+\-0-9]*)")
_MONTHS = {m: i + 1 for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                                          "Nov", "Dec"))}


@dataclass
class Recorded:
    """The day's records, each topic's events decoded."""

    routed: list[RoutedConversation] = field(default_factory=list)
    sla: list[SlaEvent] = field(default_factory=list)
    lifecycle: list[ConversationEvent] = field(default_factory=list)
    outbound: list[OutboundMessage] = field(default_factory=list)
    receipts: list[DeliveryReceipt] = field(default_factory=list)
    handoffs: list[HandoffReceipt] = field(default_factory=list)


@dataclass
class Scorecard:
    """Every number of the day and the explanation of each failure."""

    numbers: dict[str, Any]
    failures: list[str]

    def as_json(self) -> dict[str, Any]:
        """The scorecard as plain JSON."""
        return {"numbers": self.numbers, "failures": self.failures}


def promised_time(text: str, sent_at: datetime, zones: Sequence[ZoneInfo]) -> datetime | None:
    """The answer time an acknowledgement states ("… by Mon 07 Dec, 14:00 CET"), as an aware time."""
    m = _PROMISE.search(text)
    if m is None:
        return None
    day, month, hour, minute, abbreviation = m.groups()
    for zone in (*zones, ZoneInfo("UTC")):
        for year in (sent_at.year, sent_at.year + 1):
            try:
                at = datetime(year, _MONTHS[month], int(day), int(hour), int(minute), tzinfo=zone)
            except (KeyError, ValueError):
                continue
            if at.tzname() == abbreviation and at >= sent_at - timedelta(days=1):
                return at
    return None


def _share(good: int, total: int) -> float | None:
    return round(good / total, 4) if total else None


def _first(events: Iterable[tuple[datetime, str]]) -> dict[str, datetime]:
    first: dict[str, datetime] = {}
    for at, key in sorted(events):
        first.setdefault(key, at)
    return first


def score(rec: Recorded, *, until: datetime, zones: Sequence[ZoneInfo] = ()) -> Scorecard:
    """The scorecard of everything recorded up to `until` (the end of the simulated day)."""
    routed = sorted({r.event_id: r for r in rec.routed}.values(), key=lambda r: r.routed_at)
    opening: dict[str, RoutedConversation] = {}
    for r in routed:
        opening.setdefault(r.conversation_id, r)
    answered = _first((e.at, e.conversation_id) for e in rec.lifecycle if e.kind == "agent_reply")
    failures: list[str] = []

    # first-response SLA per tier: answered by the due time the conversation opened with
    by_tier: dict[str, Counter[str]] = defaultdict(Counter)
    missed_where: Counter[tuple[str, str, str]] = Counter()
    for cid, r in opening.items():
        due = r.first_response_due
        got = answered.get(cid)
        if due is None:
            continue
        if got is not None and got <= due:
            by_tier[r.tier]["met"] += 1
        elif got is not None or due <= until:
            by_tier[r.tier]["missed"] += 1
            missed_where[(r.queue, r.tier, r.urgency)] += 1
        else:
            by_tier[r.tier]["pending"] += 1
    sla = {tier: {**dict(c), "attainment": _share(c["met"], c["met"] + c["missed"])} for tier, c in
           sorted(by_tier.items())}

    # promises: what each acknowledgement said against the first answer
    acks = [o for o in rec.outbound if o.kind == "acknowledgement"]
    kept = broken = open_promises = 0
    broken_where: Counter[tuple[str, str]] = Counter()
    for o in sorted(acks, key=lambda o: o.created_at):
        promise = promised_time(o.text, o.created_at, zones)
        if promise is None:
            continue
        got = answered.get(o.conversation_id)
        r = opening.get(o.conversation_id)
        # the stated minute is kept through its last second
        if got is not None and got < promise + timedelta(minutes=1):
            kept += 1
        elif got is not None or promise <= until:
            broken += 1
            broken_where[(r.queue if r else "?", r.tier if r else "?")] += 1
        else:
            open_promises += 1

    # status update before breach: a sent status update of that conversation before the breach
    updates: dict[str, list[datetime]] = defaultdict(list)
    status_ids = {o.reply_id: o for o in rec.outbound if o.kind == "status_update"}
    for d in rec.receipts:
        if d.reply_id in status_ids and d.status == "sent":
            updates[d.conversation_id].append(d.at)
    channel_of = {cid: r.message.channel for cid, r in opening.items()}
    breaches = [s for s in {s.event_id: s for s in rec.sla}.values() if s.kind == "breach"]
    with_update = [s for s in breaches if any(at <= s.at for at in updates.get(s.conversation_id, []))]
    no_update_channels = Counter(channel_of.get(s.conversation_id, "?") for s in breaches
                                 if s not in with_update)

    # duplicates: an event in two conversations, or a customer with two open at once
    conversations_of_event: dict[str, set[str]] = defaultdict(set)
    for r in rec.routed:
        conversations_of_event[r.event_id].add(r.conversation_id)
    doubled_events = sum(1 for ids in conversations_of_event.values() if len(ids) > 1)
    closed_at = _first((e.at, e.conversation_id) for e in rec.lifecycle if e.kind in ("resolved", "closed"))
    parallel = 0
    by_customer: dict[str, list[RoutedConversation]] = defaultdict(list)
    for r in opening.values():
        by_customer[r.customer_id].append(r)
    for rs in by_customer.values():
        for i, later in enumerate(rs):
            if any(closed_at.get(earlier.conversation_id, until) > later.routed_at for earlier in rs[:i]):
                parallel += 1

    # transfers per conversation: the most any of its routed records or lifecycle events shows
    transfers: Counter[str] = Counter({cid: 0 for cid in opening})
    for r in routed:
        transfers[r.conversation_id] = max(transfers[r.conversation_id], r.transfers)
    moved = Counter(e.conversation_id for e in {e.event_id: e for e in rec.lifecycle}.values()
                    if e.kind == "transferred")
    for cid, n in moved.items():
        transfers[cid] = max(transfers[cid], n)
    at_most_one = sum(1 for n in transfers.values() if n <= 1)

    # history: every routed message of a customer seen before carries the earlier messages
    seen_before: dict[str, list[RoutedConversation]] = defaultdict(list)
    needing = carrying = 0
    for r in routed:
        if seen_before[r.customer_id]:
            needing += 1
            carrying += any(h.direction == "in" for h in r.history)
        seen_before[r.customer_id].append(r)

    # the reply guard
    held = sum(1 for d in rec.receipts if d.status == "held")
    warned = sum(1 for d in rec.receipts if d.status == "sent" and d.flags)
    guard_rules = Counter(f.rule for d in rec.receipts for f in d.flags)

    # after resolution
    kinds = Counter(e.kind for e in {e.event_id: e for e in rec.lifecycle}.values())
    reopened = sum(1 for r in routed for d in r.decisions if d.stage == "lifecycle" and d.outcome == "reopened")

    # hand-offs while a tool was down: taken over by a fallback, and how long it took
    fallback = [h for h in rec.handoffs if h.status == "delivered" and h.destination != h.intended]
    routed_at = {r.event_id: r.routed_at for r in routed}
    handoff_secs = sorted((h.at - routed_at[h.event_id]).total_seconds() for h in fallback
                          if h.event_id in routed_at)
    failed_handoffs = sum(1 for h in rec.handoffs if h.status == "failed")

    numbers: dict[str, Any] = {
        "messages_routed": len(routed), "conversations": len(opening), "customers": len(by_customer),
        "first_response_sla": sla,
        "promises": {"kept": kept, "broken": broken, "open": open_promises, "share_kept": _share(kept, kept + broken)},
        "breaches": len(breaches), "status_update_before_breach": len(with_update),
        "share_status_before_breach": _share(len(with_update), len(breaches)),
        "duplicates": {"events_in_two_conversations": doubled_events, "parallel_conversations": parallel},
        "transfers": {"conversations_transferred": sum(1 for n in transfers.values() if n),
                      "max": max(transfers.values(), default=0),
                      "share_at_most_one": _share(at_most_one, len(transfers))},
        "history": {"routed_after_earlier_contact": needing, "carrying_history": carrying,
                    "share": _share(carrying, needing)},
        "guard": {"held": held, "sent_with_warning": warned, "rules": dict(guard_rules)},
        "after_resolution": {"resolved": kinds["resolved"], "follow_ups_sent": kinds["follow_up_sent"],
                             "reopened": reopened, "closed": kinds["closed"]},
        "tool_down": {"handed_to_fallback": len(fallback), "failed_handoffs": failed_handoffs,
                      "seconds_to_hand_off_p50": handoff_secs[len(handoff_secs) // 2] if handoff_secs else None,
                      "seconds_to_hand_off_max": handoff_secs[-1] if handoff_secs else None},
    }
    premium = sla.get("premium", {}).get("attainment")
    if premium is not None and premium < TARGETS["premium_sla"]:
        failures.append(f"premium first-response SLA {premium:.1%} < 99%")
    for (queue, tier, urgency), n in missed_where.most_common():
        failures.append(f"first response missed: {n} in queue {queue}, tier {tier}, urgency {urgency}")
    for (queue, tier), n in broken_where.most_common():
        failures.append(f"promise broken: {n} acknowledgements in queue {queue}, tier {tier}")
    for channel, n in no_update_channels.most_common():
        failures.append(f"breach without a status update first: {n} on channel {channel}")
    if doubled_events or parallel:
        failures.append(f"duplicates: {doubled_events} events in two conversations, {parallel} parallel conversations")
    if needing and carrying < needing:
        failures.append(f"history missing on {needing - carrying} of {needing} routed repeat contacts")
    return Scorecard(numbers, failures)
