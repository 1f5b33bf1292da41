"""SLA clocks in Redis: one hash of clocks per customer, one sorted set of due times.

The brain reads a batch's customers' clocks with its other reads and writes them back
with its other writes; the watcher (`due`) takes what has fallen due, oldest first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from redis.asyncio import Redis

from processors.brain.sla import SlaClock
from processors.stores.bulk import queue_read_each
from schemas.identity import Identity

__all__ = ["ClockStore", "SlaEntry", "Write"]


class SlaEntry(msgspec.Struct, frozen=True, kw_only=True):
    """A conversation's clock and what is needed to tell its customer about it."""

    conversation_id: str
    customer_id: str
    channel: str
    recipient: Identity
    clock: SlaClock
    name: str | None = None
    subject: str | None = None
    # the customer's latest message id on the channel, to answer in its thread
    in_reply_to: str | None = None


@dataclass(frozen=True, slots=True)
class Write:
    """An entry to store and when it next falls due (None: nothing left to watch)."""

    entry: SlaEntry
    next_due: datetime | None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(SlaEntry)

# HSET the entries, then ZADD or ZREM their due times; KEYS = hashes, ARGV = zset,
# then per entry: field, value, score ("" = remove), member
_WRITE = """
local zset = ARGV[1]
for i, key in ipairs(KEYS) do
  local base = 2 + (i - 1) * 4
  redis.call('HSET', key, ARGV[base], ARGV[base + 1])
  if ARGV[base + 2] == '' then
    redis.call('ZREM', zset, ARGV[base + 3])
  else
    redis.call('ZADD', zset, ARGV[base + 2], ARGV[base + 3])
  end
end
return #KEYS
"""

# the due members (oldest first, at most ARGV[2]) with their entries
_DUE = """
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local out = {}
for i, member in ipairs(members) do
  local sep = string.find(member, '|', 1, true)
  local customer = string.sub(member, 1, sep - 1)
  local conversation = string.sub(member, sep + 1)
  out[i] = redis.call('HGET', ARGV[3] .. customer, conversation) or false
end
return out
"""


class ClockStore:
    """Keys `<ns>:sla:<customer>` (hash: conversation → entry) and `<ns>:sla-due` (zset)."""

    def __init__(self, namespace: str) -> None:
        self._prefix = f"{namespace}:sla:"
        self._due = f"{namespace}:sla-due"

    def queue_read(self, pipe: Any, customer_ids: Sequence[str]) -> None:
        """Queue the read of every customer's clocks: one command for the batch."""
        queue_read_each(pipe, [self._prefix + c for c in customer_ids], "HGETALL")

    def parse_read(self, answer: Sequence[Any]) -> list[dict[str, SlaEntry]]:
        """Each customer's clocks by conversation id, in the order asked."""
        out = []
        for flat in answer:
            pairs = zip(flat[::2], flat[1::2], strict=True)
            out.append({k.decode(): _decoder.decode(v) for k, v in pairs})
        return out

    def queue_write(self, pipe: Any, writes: Sequence[Write]) -> None:
        """Queue storing entries and their due times: at most one command."""
        if not writes:
            return
        args: list[Any] = [self._due]
        for w in writes:
            member = f"{w.entry.customer_id}|{w.entry.conversation_id}"
            score = "" if w.next_due is None else repr(w.next_due.timestamp())
            args += (w.entry.conversation_id, _encoder.encode(w.entry), score, member)
        pipe.eval(_WRITE, len(writes), *(self._prefix + w.entry.customer_id for w in writes), *args)

    async def due(self, redis: Redis, now: datetime, limit: int = 500) -> list[SlaEntry]:
        """The entries whose next due time has come, oldest first."""
        found = await redis.eval(_DUE, 1, self._due, repr(now.timestamp()), limit, self._prefix)
        return [_decoder.decode(raw) for raw in found if raw]
