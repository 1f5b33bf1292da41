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
TARGETS = {
    "premium_sla": 0.99,
    "promises_kept": 0.95,
    "status_before_breach": 1.0,
    "duplicates": 0,
    "at_most_one_transfer": 0.95,
    "with_history": 1.0,
}
_PROMISE = re.compile(
    r"\b(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (\d{2}) (\w{3}), (\d{2}):(\d{2}) ([A-Z][A-Za-z+\-0-9]*)"
)
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    )
}


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


@dataclass
class _Day:
    """The day's conversations as the scorecard needs them."""

    rec: Recorded
    until: datetime
    routed: list[RoutedConversation]
    opening: dict[str, RoutedConversation]
    answered: dict[str, datetime]
    failures: list[str] = field(default_factory=list)


def _sla(d: _Day) -> dict[str, Any]:
    by_tier: dict[str, Counter[str]] = defaultdict(Counter)
    missed: Counter[tuple[str, str, str]] = Counter()
    for cid, r in d.opening.items():
        due, got = r.first_response_due, d.answered.get(cid)
        if due is None:
            continue
        if got is not None and got <= due:
            by_tier[r.tier]["met"] += 1
        elif got is not None or due <= d.until:
            by_tier[r.tier]["missed"] += 1
            missed[(r.queue, r.tier, r.urgency)] += 1
        else:
            by_tier[r.tier]["pending"] += 1
    sla = {
        tier: {**dict(c), "attainment": _share(c["met"], c["met"] + c["missed"])}
        for tier, c in sorted(by_tier.items())
    }
    premium = sla.get("premium", {}).get("attainment")
    if premium is not None and premium < TARGETS["premium_sla"]:
        d.failures.append(f"premium first-response SLA {premium:.1%} < 99%")
    d.failures += [
        f"first response missed: {n} in queue {q}, tier {t}, urgency {u}"
        for (q, t, u), n in missed.most_common()
    ]
    return sla


def _by_channel(d: _Day) -> dict[str, Any]:
    """First responses per channel the conversation opened on, and how they were given."""
    calls = {e.conversation_id for e in d.rec.lifecycle if e.kind == "called_back"}
    by: dict[str, Counter[str]] = defaultdict(Counter)
    for cid, r in d.opening.items():
        c = by[_channel(r)]
        c["conversations"] += 1
        got = d.answered.get(cid)
        if got is None:
            c["unanswered"] += 1
            continue
        c["called_back" if cid in calls else "answered"] += 1
        if r.first_response_due is not None:
            c["met" if got <= r.first_response_due else "missed"] += 1
    return {
        channel: {**dict(c), "attainment": _share(c["met"], c["met"] + c["missed"])}
        for channel, c in sorted(by.items())
    }


def _promises(d: _Day, zones: Sequence[ZoneInfo]) -> dict[str, Any]:
    kept = broken = still_open = 0
    where: Counter[tuple[str, str]] = Counter()
    for o in sorted((o for o in d.rec.outbound if o.kind == "acknowledgement"), key=lambda o: o.created_at):
        promise = promised_time(o.text, o.created_at, zones)
        if promise is None:
            continue
        got, r = d.answered.get(o.conversation_id), d.opening.get(o.conversation_id)
        if got is not None and got < promise + timedelta(minutes=1):  # the stated minute, to its last second
            kept += 1
        elif got is not None or promise <= d.until:
            broken += 1
            where[(r.queue if r else "?", r.tier if r else "?")] += 1
        else:
            still_open += 1
    d.failures += [
        f"promise broken: {n} acknowledgements in queue {q}, tier {t}" for (q, t), n in where.most_common()
    ]
    return {"kept": kept, "broken": broken, "open": still_open, "share_kept": _share(kept, kept + broken)}


def _channel(opening: RoutedConversation | None) -> str:
    """The channel a conversation opened on, "?" when it opened before the day was recorded."""
    return opening.message.channel if opening is not None and opening.message is not None else "?"


def _status_updates(d: _Day) -> dict[str, Any]:
    status_ids = {o.reply_id for o in d.rec.outbound if o.kind == "status_update"}
    updates: dict[str, list[datetime]] = defaultdict(list)
    for receipt in d.rec.receipts:
        if receipt.reply_id in status_ids and receipt.status == "sent":
            updates[receipt.conversation_id].append(receipt.at)
    breaches = [s for s in {s.event_id: s for s in d.rec.sla}.values() if s.kind == "breach"]
    told = [s for s in breaches if any(at <= s.at for at in updates.get(s.conversation_id, []))]
    untold = Counter(
        _channel(d.opening.get(s.conversation_id))
        for s in breaches
        if s not in told
    )
    d.failures += [
        f"breach without a status update first: {n} on channel {c}" for c, n in untold.most_common()
    ]
    return {
        "breaches": len(breaches),
        "status_update_before_breach": len(told),
        "share_status_before_breach": _share(len(told), len(breaches)),
    }


def _duplicates(d: _Day, sticky: timedelta) -> dict[str, int]:
    conversations_of: dict[str, set[str]] = defaultdict(set)
    for r in d.rec.routed:
        conversations_of[r.event_id].add(r.conversation_id)
    doubled = sum(1 for ids in conversations_of.values() if len(ids) > 1)
    ended = _first((e.at, e.conversation_id) for e in d.rec.lifecycle if e.kind in ("resolved", "closed"))
    by_customer: dict[str, list[RoutedConversation]] = defaultdict(list)
    for r in d.opening.values():
        by_customer[r.customer_id].append(r)
    parallel = 0
    for rs in by_customer.values():
        for i, later in enumerate(rs):
            # a new conversation while an earlier one was open and active within the sticky window:
            # the policy promises that such a message continues the earlier one
            for earlier in rs[:i]:
                active = max(
                    (
                        r.routed_at
                        for r in d.routed
                        if r.conversation_id == earlier.conversation_id and r.routed_at < later.routed_at
                    ),
                    default=earlier.routed_at,
                )
                if (
                    ended.get(earlier.conversation_id, d.until) > later.routed_at
                    and later.routed_at - active <= sticky
                ):
                    parallel += 1
                    break
    if doubled or parallel:
        d.failures.append(
            f"duplicates: {doubled} events in two conversations, {parallel} parallel conversations"
        )
    return {"events_in_two_conversations": doubled, "parallel_conversations": parallel}


def _transfers(d: _Day) -> dict[str, Any]:
    transfers: Counter[str] = Counter(dict.fromkeys(d.opening, 0))
    for r in d.routed:
        transfers[r.conversation_id] = max(transfers[r.conversation_id], r.transfers)
    moved = Counter(
        e.conversation_id
        for e in {e.event_id: e for e in d.rec.lifecycle}.values()
        if e.kind == "transferred"
    )
    for cid, n in moved.items():
        transfers[cid] = max(transfers[cid], n)
    at_most_one = sum(1 for n in transfers.values() if n <= 1)
    return {
        "conversations_transferred": sum(1 for n in transfers.values() if n),
        "max": max(transfers.values(), default=0),
        "share_at_most_one": _share(at_most_one, len(transfers)),
    }


def _history(d: _Day) -> dict[str, Any]:
    seen: set[str] = set()
    needing = carrying = 0
    for r in d.routed:
        if r.customer_id in seen:
            needing += 1
            carrying += any(h.direction == "in" for h in r.history)
        seen.add(r.customer_id)
    if carrying < needing:
        d.failures.append(f"history missing on {needing - carrying} of {needing} routed repeat contacts")
    return {
        "routed_after_earlier_contact": needing,
        "carrying_history": carrying,
        "share": _share(carrying, needing),
    }


def _guard(d: _Day) -> dict[str, Any]:
    receipts = d.rec.receipts
    return {
        "held": sum(1 for r in receipts if r.status == "held"),
        "sent_with_warning": sum(1 for r in receipts if r.status == "sent" and r.flags),
        "rules": dict(Counter(f.rule for r in receipts for f in r.flags)),
    }


def _after_resolution(d: _Day) -> dict[str, int]:
    kinds = Counter(e.kind for e in {e.event_id: e for e in d.rec.lifecycle}.values())
    reopened = sum(
        1 for r in d.routed for x in r.decisions if x.stage == "lifecycle" and x.outcome == "reopened"
    )
    return {
        "resolved": kinds["resolved"],
        "follow_ups_sent": kinds["follow_up_sent"],
        "reopened": reopened,
        "closed": kinds["closed"],
    }


def _tool_down(d: _Day, speed: float) -> dict[str, Any]:
    routed_at = {r.event_id: r.routed_at for r in d.routed}
    # taken over because the intended tool failed, not because it is not set up here at all
    taken = [
        h
        for h in d.rec.handoffs
        if h.status == "delivered"
        and h.destination != h.intended
        and "no agents' tool is configured" not in (h.reason or "")
    ]
    waits = sorted((h.at - routed_at[h.event_id]).total_seconds() for h in taken if h.event_id in routed_at)
    p50 = waits[len(waits) // 2] if waits else None
    worst = waits[-1] if waits else None
    return {
        "handed_to_fallback": len(taken),
        "failed_handoffs": sum(1 for h in d.rec.handoffs if h.status == "failed"),
        "seconds_to_hand_off_p50": p50,
        "seconds_to_hand_off_max": worst,
        # the dispatcher's retry deadline and breaker run on real seconds: the same wait, unstretched
        "real_seconds_p50": p50 / speed if p50 is not None else None,
        "real_seconds_max": worst / speed if worst is not None else None,
    }


def score(
    rec: Recorded,
    *,
    until: datetime,
    zones: Sequence[ZoneInfo] = (),
    speed: float = 1.0,
    sticky: timedelta = timedelta(hours=2),
) -> Scorecard:
    """The scorecard of everything recorded up to `until` (the end of the simulated day)."""
    # a transfer's handoff carries no message: the day counts customers' messages
    routed = sorted({r.event_id: r for r in rec.routed if r.message is not None}.values(),
                    key=lambda r: r.routed_at)
    opening: dict[str, RoutedConversation] = {}
    for r in routed:
        opening.setdefault(r.conversation_id, r)
    # a call back that reached the caller is their answer, as a written reply is
    answered = _first(
        (e.at, e.conversation_id) for e in rec.lifecycle if e.kind in ("agent_reply", "called_back")
    )
    d = _Day(rec, until, routed, opening, answered)
    numbers: dict[str, Any] = {
        "messages_routed": len(routed),
        "conversations": len(opening),
        "customers": len({r.customer_id for r in routed}),
        "first_response_sla": _sla(d),
        "first_response_by_channel": _by_channel(d),
        "promises": _promises(d, zones),
        **_status_updates(d),
        "duplicates": _duplicates(d, sticky),
        "transfers": _transfers(d),
        "history": _history(d),
        "guard": _guard(d),
        "after_resolution": _after_resolution(d),
        "tool_down": _tool_down(d, speed),
    }
    return Scorecard(numbers, d.failures)
