"""History: each customer's latest lines across every channel, and their recent conversations.

Keys, under a namespace `<ns>`:
- `<ns>:history:<customer id>`  sorted set of `Line` JSON scored by the entry's time, capped
  to the newest `cap` (ZADD + ZREMRANGEBYRANK); a replayed batch re-adds the same member,
  so history is not doubled by at-least-once delivery;
- `<ns>:recent:<customer id>`   hash conversation id → `ConversationSummary` JSON.

Every line and summary remembers the identity it concerns (`email:ada@example.com`), or
none for the customer as a whole (a note, a transfer). That is how history follows a
link: when an identity moves to another customer its lines and conversations move with
it, inside the same Lua script as the link (`identify.IdentityStore.link`), and an unlink
moves them back to the identity's own customer. Nothing has to remember a merge, and the
hot path reads one sorted set per customer. The alternative — a customer's history as its
own list plus those of customers merged into it — costs the hot path a second round trip
(find the merged customers, then read them) and cannot part one identity from a customer
again. Lines without an identity stay where they were written; lines that fell off the
cap are gone on both sides.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec

from schemas.identity import Identity
from schemas.routed import HistoryEntry

__all__ = [
    "CLOSED",
    "ConversationSummary",
    "HistoryStore",
    "Line",
    "open_conversation",
    "recent_contacts",
    "stale",
]

# conversation states that sticky routing must not return to
CLOSED = frozenset({"resolved", "closed"})


class Line(msgspec.Struct, frozen=True, array_like=True):
    """One history entry and the identity (`kind:value`) it concerns, if any."""

    # stored as `[identity, entry]`: identify's link script reads the identity at [1]

    identity: str | None
    entry: HistoryEntry


class ConversationSummary(msgspec.Struct, frozen=True, kw_only=True):
    """Where one of the customer's recent conversations stands: enough for sticky routing."""

    conversation_id: str
    queue: str
    status: str
    last_at: datetime
    agent: str | None = None
    transfers: int = 0
    # the identity that wrote in it; identify's link script moves the summary with it
    identity: str | None = None


_encoder = msgspec.json.Encoder()
_lines = msgspec.json.Decoder(list[Line])
_summaries = msgspec.json.Decoder(list[ConversationSummary])


def _decode_lines(raw: Sequence[bytes]) -> list[Line]:
    # one decoder call per customer, not one per line: joining is cheaper than 50 calls
    return _lines.decode(b"[" + b",".join(raw) + b"]") if raw else []


def _decode_summaries(raw: Sequence[bytes]) -> list[ConversationSummary]:
    found = _summaries.decode(b"[" + b",".join(raw) + b"]") if raw else []
    found.sort(key=lambda s: s.last_at, reverse=True)
    return found


def recent_contacts(entries: Iterable[HistoryEntry], now: datetime, window: timedelta,
                    direction: str = "in") -> int:
    """How many entries in `direction` fall inside the window before `now`."""
    since = now - window
    return sum(1 for e in entries if e.direction == direction and since <= e.at <= now)


def open_conversation(summaries: Sequence[ConversationSummary], now: datetime,
                      within: timedelta) -> ConversationSummary | None:
    """The most recently active conversation not closed and active inside `within`."""
    for s in sorted(summaries, key=lambda s: s.last_at, reverse=True):
        if now - s.last_at > within:
            return None
        if s.status not in CLOSED:
            return s
    return None


def stale(summaries: Sequence[ConversationSummary], keep: int) -> list[str]:
    """Conversation ids beyond the `keep` most recently active: the ones to forget."""
    ordered = sorted(summaries, key=lambda s: s.last_at, reverse=True)
    return [s.conversation_id for s in ordered[keep:]]


class HistoryStore:
    """Queues history and recent-conversation commands; the caller owns and runs the pipeline."""

    def __init__(self, namespace: str, *, cap: int = 50, ttl_seconds: int | None = None) -> None:
        self._history = f"{namespace}:history:"
        self._recent = f"{namespace}:recent:"
        self.cap = cap
        self._ttl = ttl_seconds

    def history_key(self, customer_id: str) -> str:
        """The sorted set of one customer's lines."""
        return self._history + customer_id

    def recent_key(self, customer_id: str) -> str:
        """The hash of one customer's recent conversations."""
        return self._recent + customer_id

    def queue_append(self, pipe: Any, customer_id: str, entries: Sequence[HistoryEntry],
                     identity: Identity | None = None) -> None:
        """Add entries about one identity, or about the customer as a whole."""
        if not entries:
            return
        who = str(identity) if identity else None
        key = self.history_key(customer_id)
        pipe.zadd(key, {_encoder.encode(Line(who, e)): e.at.timestamp() for e in entries})
        pipe.zremrangebyrank(key, 0, -self.cap - 1)
        if self._ttl:
            pipe.expire(key, self._ttl)

    def queue_read(self, pipe: Any, customer_ids: Sequence[str], limit: int) -> None:
        """Read each customer's latest `limit` lines: one command per customer."""
        for customer_id in customer_ids:
            pipe.zrange(self.history_key(customer_id), 0, limit - 1, desc=True)

    def parse_read(self, answers: Sequence[Any]) -> list[tuple[HistoryEntry, ...]]:
        """The entries, newest first, for each customer of `queue_read`, in order."""
        return [tuple(line.entry for line in _decode_lines(raw)) for raw in answers]

    def parse_lines(self, answer: Sequence[bytes]) -> list[Line]:
        """One customer's lines as `queue_read` answered them, with their identities."""
        return _decode_lines(answer)

    def queue_read_recent(self, pipe: Any, customer_ids: Sequence[str]) -> None:
        """Read each customer's recent conversations: one command per customer."""
        for customer_id in customer_ids:
            pipe.hvals(self.recent_key(customer_id))

    def parse_recent(self, answers: Sequence[Any]) -> list[list[ConversationSummary]]:
        """Each customer's recent conversations, most recently active first."""
        return [_decode_summaries(raw) for raw in answers]

    def queue_write_recent(self, pipe: Any, customer_id: str,
                           summaries: Sequence[ConversationSummary], drop: Sequence[str] = ()) -> None:
        """Upsert conversation summaries and forget `drop` (see `stale`)."""
        key = self.recent_key(customer_id)
        if summaries:
            pipe.hset(key, mapping={s.conversation_id: _encoder.encode(s) for s in summaries})
        if drop:
            pipe.hdel(key, *drop)
        if summaries and self._ttl:
            pipe.expire(key, self._ttl)
