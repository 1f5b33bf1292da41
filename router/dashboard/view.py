"""The dashboard's snapshot: the board read at one moment, as the JSON the page draws.

Pure: the moment, the queues' backlogs (Redis) and the connectors' facts (metrics) are
given. "Today" is the local day of `now` in the board's timezone (the policy's).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from router.dashboard.board import Board, Segment, Timing

__all__ = ["SERIES_MINUTES", "ConnectorFacts", "percentile", "snapshot"]

SERIES_MINUTES = 60
_COUNTS = ("routed", "replied", "met", "missed", "warnings", "breaches", "held")


@dataclass(frozen=True, slots=True)
class ConnectorFacts:
    """What the process's metrics say of one connector; None where a metric is absent."""

    name: str
    configured: bool
    connected: bool | None = None
    probe_seconds: float | None = None
    probe_failures: float | None = None
    probe_failing: bool = False


def percentile(values: Sequence[float], percent: int) -> float | None:
    """The nearest-rank percentile, or None for no values."""
    if not values:
        return None
    ranked = sorted(values)
    return ranked[max(0, (percent * len(ranked) + 99) // 100 - 1)]


def _spread(values: Sequence[float]) -> dict[str, Any]:
    return {"count": len(values), "p50_seconds": percentile(values, 50),
            "p90_seconds": percentile(values, 90)}


def _today(counter: Mapping[tuple[date, str, str], int], today: date) -> Counter[Segment]:
    return Counter({(t, c): n for (d, t, c), n in counter.items() if d == today})


def _segments(board: Board, now: datetime, today: date) -> list[dict[str, Any]]:
    counts = {kind: _today(board.counts.get(kind, {}), today) for kind in _COUNTS}
    owed: defaultdict[Segment, list[datetime]] = defaultdict(list)
    for conv in board.conversations.values():
        if conv.owed_since is not None:
            owed[conv.segment].append(conv.owed_since)
    acks: defaultdict[Segment, list[float]] = defaultdict(list)
    for segment, timing in board.ack_latency:
        if timing.day == today:
            acks[segment].append(timing.seconds)
    keys = set(owed) | set(acks) | {k for c in counts.values() for k in c}
    rows = []
    for tier, channel in sorted(keys):
        seg = (tier, channel)
        met, missed = counts["met"][seg], counts["missed"][seg]
        rows.append({
            "tier": tier, "channel": channel,
            "waiting": len(owed[seg]),
            "oldest_wait_seconds": _age(now, min(owed[seg])) if owed[seg] else None,
            "sla": {"met": met, "missed": missed,
                    "attainment": round(met / (met + missed), 4) if met + missed else None},
            **{kind: counts[kind][seg] for kind in ("warnings", "breaches", "routed", "replied", "held")},
            "acknowledgement": _spread(acks[seg]),
        })
    return rows


def _age(now: datetime, since: datetime) -> float:
    return max(0.0, round((now - since).total_seconds(), 1))


def _queues(board: Board, now: datetime, backlog: Mapping[str, int]) -> list[dict[str, Any]]:
    owed: defaultdict[str, list[datetime]] = defaultdict(list)
    for conv in board.conversations.values():
        if conv.owed_since is not None:
            owed[conv.queue].append(conv.owed_since)
    hour_ago = now - timedelta(hours=1)
    answered = Counter(q for q, at in board.answers if hour_ago < at <= now)
    rows = []
    for queue in sorted(set(backlog) | set(owed)):
        waiting = len(owed[queue])
        rate = answered[queue]  # answers in the last hour
        rows.append({
            # owed: responses this queue owes (the topics); backlog: the brain's count of first
            # responses owed (Redis), the one acknowledgements quote; never shown below zero
            "queue": queue, "owed": waiting, "backlog": max(0, backlog.get(queue, 0)),
            "oldest_wait_seconds": _age(now, min(owed[queue])) if owed[queue] else None,
            "answered_last_hour": rate,
            # what is owed, answered at the last hour's pace; unknown while nobody answered
            "eta_seconds": round(waiting * 3600 / rate, 1) if rate else (0.0 if waiting == 0 else None),
        })
    return rows


def _first_replies(timings: Iterable[Timing], today: date, label: str) -> list[dict[str, Any]]:
    by: defaultdict[str, list[float]] = defaultdict(list)
    for t in timings:
        if t.day == today:
            by[t.key].append(t.seconds)
    return [{label: key, **_spread(values)} for key, values in sorted(by.items())]


def _accounts(timings: Sequence[Timing], today: date, names: Mapping[str, str]) -> dict[str, Any]:
    """First replies by our account (its handle where known), and by account and agent."""
    pairs: defaultdict[tuple[str, str], list[float]] = defaultdict(list)
    for t in timings:
        if t.day == today:
            pairs[(t.key, t.by)].append(t.seconds)
    return {
        "accounts": [{**row, "name": names.get(row["account"], row["account"])}
                     for row in _first_replies(timings, today, "account")],
        "account_agents": [{"account": account, "name": names.get(account, account), "agent": agent,
                            **_spread(values)} for (account, agent), values in sorted(pairs.items())],
    }


def _throughput(board: Board, now: datetime) -> dict[str, Any]:
    last = int(now.timestamp()) // 60
    minutes = list(range(last - SERIES_MINUTES + 1, last + 1))
    channels = sorted({c for m in minutes for c in board.minutes.get(m, {})})
    return {"minutes": [datetime.fromtimestamp(m * 60, now.tzinfo).isoformat() for m in minutes],
            "series": {c: [board.minutes.get(m, Counter())[c] for m in minutes] for c in channels}}


def _connectors(board: Board, facts: Sequence[ConnectorFacts], today: date) -> list[dict[str, Any]]:
    known = {f.name: f for f in facts}
    routed = _today(board.counts.get("routed", {}), today)
    messages = Counter({c: n for (_, c), n in routed.items()})
    names = sorted(set(known) | set(board.last_message) | set(board.probes))
    rows = []
    for name in names:
        f = known.get(name) or ConnectorFacts(name, configured=False)
        errors = board.channel_errors[(today, name)]
        last = board.last_message.get(name)
        probe = _probe(board, f)
        down = f.connected is False or (probe is not None and probe["failing"])
        rows.append({
            "name": name, "configured": f.configured, "connected": f.connected,
            "last_message_at": last.isoformat() if last else None,
            "messages_today": messages[name], "errors_today": errors, "probe": probe,
            "status": "down" if down else ("errors" if errors else "ok"),
        })
    return rows


def _probe(board: Board, f: ConnectorFacts) -> dict[str, Any] | None:
    """The channel's probe: its latest verdict on the topic (any edge's), else this process's metrics."""
    verdict = board.probes.get(f.name)
    if verdict is not None:
        # failing until a probe passes again: a probe an hour apart (X) stays red in between
        return {"seconds": board.probe_seconds.get(f.name), "failures": f.probe_failures,
                "failing": verdict.kind != "passed", "verdict": verdict.kind, "reason": verdict.reason,
                "at": verdict.at.isoformat()}
    if f.probe_seconds is None and f.probe_failures is None:
        return None
    return {"seconds": f.probe_seconds, "failures": f.probe_failures, "failing": f.probe_failing}


def snapshot(board: Board, now: datetime, backlog: Mapping[str, int],
             connectors: Sequence[ConnectorFacts] = (),
             account_names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Everything the page shows, at `now`; `account_names` shows our accounts by handle."""
    today = board.day(now)
    local = now.astimezone(board.zone)
    dead_today = {stage: n for (d, stage), n in sorted(board.dead_letters.items()) if d == today}
    return {
        "now": now.isoformat(), "day": today.isoformat(), "timezone": board.zone.key,
        "day_started_at": local.replace(hour=0, minute=0, second=0, microsecond=0).isoformat(),
        "segments": _segments(board, now, today),
        "queues": _queues(board, now, backlog),
        "connectors": _connectors(board, connectors, today),
        "tools": [{"destination": name, "delivered": c[(today, "delivered")], "failed": c[(today, "failed")]}
                  for name, c in sorted(board.tools.items())],
        "dead_letters": {"today": sum(dead_today.values()), "by_stage": dead_today,
                         "latest": [{"at": d.at.isoformat(), "stage": d.stage, "channel": d.channel,
                                     "reason": d.reason} for d in reversed(board.latest_dead)]},
        "agents": _first_replies(board.first_replies, today, "agent"),
        **_accounts(board.account_replies, today, account_names or {}),
        "throughput": _throughput(board, now),
    }
