"""History: each customer's latest lines across every channel, and their recent conversations.

Keys, under a namespace `<ns>`:
- `<ns>:{p<N>}:history:<customer id>`  sorted set of `Line` JSON scored by the entry's time, capped
  to the newest `cap`; a replayed batch re-adds the same member, so at-least-once delivery
  does not double history;
- `<ns>:{p<N>}:recent:<customer id>`   hash conversation id → `ConversationSummary` JSON.

Every line and summary remembers the identity it concerns (`email:ada@example.com`), or
none for the customer as a whole (a note, a transfer). That is how history follows a
link: when an identity moves to another customer its lines and conversations move with
it, inside the same Lua script as the link (`IdentityStore.link`), and an unlink
moves them back to the identity's own customer. Nothing has to remember a merge, and the
hot path reads one sorted set per customer. Reads and writes of a whole batch are each one
Lua call per hash tag (processors.stores.tags). The alternative — a customer's history as its
own list plus those of customers merged into it — costs the hot path a second round trip
(find the merged customers, then read them) and cannot part one identity from a customer
again. Lines without an identity stay where they were written; lines that fell off the
cap are gone on both sides.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any

import msgspec

from processors.stores.bulk import queue_read_each
from processors.stores.tags import UNTAGGED, Tags, split
from schemas.identity import Identity
from schemas.routed import HistoryEntry

__all__ = [
    "CLOSED",
    "LAST_AT",
    "Append",
    "ConversationSummary",
    "HistoryStore",
    "Line",
    "RecentWrite",
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
    # normalised subject (processors.thread.normalise_subject): the weakest threading hint
    subject: str = ""
    # when it was last resolved: follow-up and close ids derive from it, so replays match
    resolved_at: datetime | None = None
    # when the follow-up went out, until the customer answers it (processors.lifecycle)
    follow_up_at: datetime | None = None


# sorts conversations by when they last moved: in C, not a lambda per element (every routed message sorts)
LAST_AT = attrgetter("last_at")
_encoder = msgspec.json.Encoder()
_lines = msgspec.json.Decoder(list[Line])
_summaries = msgspec.json.Decoder(list[ConversationSummary])


def _decode_lines(raw: Sequence[bytes]) -> list[Line]:
    # one decoder call per customer, not one per line: joining is cheaper than 50 calls
    return _lines.decode(b"[" + b",".join(raw) + b"]") if raw else []


def _decode_summaries(raw: Sequence[bytes]) -> list[ConversationSummary]:
    found = _summaries.decode(b"[" + b",".join(raw) + b"]") if raw else []
    found.sort(key=LAST_AT, reverse=True)
    return found


def recent_contacts(entries: Iterable[HistoryEntry], now: datetime, window: timedelta,
                    direction: str = "in") -> int:
    """How many entries in `direction` fall inside the window before `now`."""
    since = now - window
    return sum(1 for e in entries if e.direction == direction and since <= e.at <= now)


def open_conversation(summaries: Sequence[ConversationSummary], now: datetime,
                      within: timedelta) -> ConversationSummary | None:
    """The most recently active conversation not closed and active inside `within`."""
    for s in sorted(summaries, key=LAST_AT, reverse=True):
        if now - s.last_at > within:
            return None
        if s.status not in CLOSED:
            return s
    return None


def stale(summaries: Sequence[ConversationSummary], keep: int) -> list[str]:
    """Conversation ids beyond the `keep` most recently active: the ones to forget."""
    ordered = sorted(summaries, key=LAST_AT, reverse=True)
    return [s.conversation_id for s in ordered[keep:]]


@dataclass(frozen=True, slots=True)
class Append:
    """New entries for one customer, about one of its identities or the customer as a whole."""

    customer_id: str
    entries: Sequence[HistoryEntry]
    identity: Identity | None = None


@dataclass(frozen=True, slots=True)
class RecentWrite:
    """Conversation summaries to upsert for one customer, and conversation ids to forget."""

    customer_id: str
    summaries: Sequence[ConversationSummary] = ()
    drop: Sequence[str] = ()


# One call per batch, not one command per customer: the client's cost of packing and
# reading hundreds of small commands is what a batch would otherwise pay for.
# ARGV: the command and its arguments after the key, e.g. ZRANGE 0 49 REV
# ARGV: cap, ttl (0: none), then per key: n, n (score, member) pairs
_APPEND_EACH = """
local cap, ttl, at = tonumber(ARGV[1]), tonumber(ARGV[2]), 3
for _, key in ipairs(KEYS) do
  local n = tonumber(ARGV[at])
  for j = 1, n do redis.call('ZADD', key, ARGV[at + 2 * j - 1], ARGV[at + 2 * j]) end
  at = at + 2 * n + 1
  redis.call('ZREMRANGEBYRANK', key, 0, -cap - 1)
  if ttl > 0 then redis.call('EXPIRE', key, ttl) end
end
return #KEYS
"""
# ARGV: ttl (0: none), then per key: n, n (field, value) pairs, m, m fields to delete
_WRITE_RECENT_EACH = """
local ttl, at = tonumber(ARGV[1]), 2
for _, key in ipairs(KEYS) do
  local n = tonumber(ARGV[at])
  for j = 1, n do redis.call('HSET', key, ARGV[at + 2 * j - 1], ARGV[at + 2 * j]) end
  at = at + 2 * n + 1
  local m = tonumber(ARGV[at])
  for j = 1, m do redis.call('HDEL', key, ARGV[at + j]) end
  at = at + m + 1
  if ttl > 0 and n > 0 then redis.call('EXPIRE', key, ttl) end
end
return #KEYS
"""


class HistoryStore:
    """Queues history and recent-conversation commands, one per batch; the caller runs the pipeline."""

    def __init__(self, namespace: str, *, cap: int = 50, ttl_seconds: int | None = None,
                 tags: Tags = UNTAGGED) -> None:
        self._ns = namespace
        self.tags = tags
        self.cap = cap
        self._ttl = ttl_seconds or 0

    def history_key(self, customer_id: str) -> str:
        """The sorted set of one customer's lines."""
        return f"{self._ns}:{self.tags.of(customer_id)}history:{customer_id}"

    def recent_key(self, customer_id: str) -> str:
        """The hash of one customer's recent conversations."""
        return f"{self._ns}:{self.tags.of(customer_id)}recent:{customer_id}"

    def queue_append(self, pipe: Any, appends: Sequence[Append]) -> None:
        """Add a batch's entries: at most one command, none when there is nothing to add."""
        appends = [a for a in appends if a.entries]
        if not appends:
            return
        keys = [self.history_key(a.customer_id) for a in appends]

        def queue(pipe: Any, part: list[int]) -> None:
            args: list[Any] = [self.cap, self._ttl]
            for i in part:
                who = str(appends[i].identity) if appends[i].identity else None
                args.append(len(appends[i].entries))
                for e in appends[i].entries:
                    args += (e.at.timestamp(), _encoder.encode(Line(who, e)))
            pipe.eval(_APPEND_EACH, len(part), *(keys[i] for i in part), *args)
        split(pipe, keys, queue)

    def queue_read(self, pipe: Any, customer_ids: Sequence[str], limit: int) -> None:
        """Read each customer's latest `limit` lines: one command for the batch."""
        queue_read_each(pipe, [self.history_key(c) for c in customer_ids], "ZRANGE", 0, limit - 1, "REV")

    def parse_read(self, answer: Sequence[Any]) -> list[tuple[HistoryEntry, ...]]:
        """The entries, newest first, for each customer of `queue_read`, in order."""
        return [tuple(line.entry for line in _decode_lines(raw)) for raw in answer]

    def parse_lines(self, answer: Sequence[Any]) -> list[list[Line]]:
        """Each customer's lines as `queue_read` answered, with the identity of each."""
        return [_decode_lines(raw) for raw in answer]

    def queue_read_recent(self, pipe: Any, customer_ids: Sequence[str]) -> None:
        """Read each customer's recent conversations: one command for the batch."""
        queue_read_each(pipe, [self.recent_key(c) for c in customer_ids], "HVALS")

    def parse_recent(self, answer: Sequence[Any]) -> list[list[ConversationSummary]]:
        """Each customer's recent conversations, most recently active first."""
        return [_decode_summaries(raw) for raw in answer]

    def queue_write_recent(self, pipe: Any, writes: Sequence[RecentWrite]) -> None:
        """Upsert summaries and forget `drop` (see `stale`): at most one command for the batch."""
        writes = [w for w in writes if w.summaries or w.drop]
        if not writes:
            return
        keys = [self.recent_key(w.customer_id) for w in writes]

        def queue(pipe: Any, part: list[int]) -> None:
            args: list[Any] = [self._ttl]
            for i in part:
                args.append(len(writes[i].summaries))
                for summary in writes[i].summaries:
                    args += (summary.conversation_id, _encoder.encode(summary))
                args += (len(writes[i].drop), *writes[i].drop)
            pipe.eval(_WRITE_RECENT_EACH, len(part), *(keys[i] for i in part), *args)
        split(pipe, keys, queue)
