"""SLA clocks in Redis: one hash of clocks per customer, one sorted set of due times per tag.

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
from processors.stores.tags import UNTAGGED, Tags, pipeline, split
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

# HSET the entries, then ZADD or ZREM their due times; KEYS = per entry its tag's due zset
# and its hash; ARGV per entry: field, value, score ("" = remove), member
_WRITE = """
for i = 1, #KEYS, 2 do
  local zset, base = KEYS[i], 2 * i - 1
  redis.call('HSET', KEYS[i + 1], ARGV[base], ARGV[base + 1])
  if ARGV[base + 2] == '' then
    redis.call('ZREM', zset, ARGV[base + 3])
  else
    redis.call('ZADD', zset, ARGV[base + 2], ARGV[base + 3])
  end
end
return #KEYS / 2
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
    """Keys `<ns>:{p<N>}:sla:<customer>` (hash: conversation → entry), `<ns>:{p<N>}:sla-due` (zset).

    Each tag has its own due set, so a clock and its due time share a Cluster slot.
    """

    def __init__(self, namespace: str, tags: Tags = UNTAGGED) -> None:
        self._ns = namespace
        self._tags = tags

    def key(self, customer_id: str) -> str:
        """The hash of one customer's clocks."""
        return f"{self._ns}:{self._tags.of(customer_id)}sla:{customer_id}"

    def queue_read(self, pipe: Any, customer_ids: Sequence[str]) -> None:
        """Queue the read of every customer's clocks: one command for the batch."""
        queue_read_each(pipe, [self.key(c) for c in customer_ids], "HGETALL")

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
        tags = [self._tags.of(w.entry.customer_id) for w in writes]
        keys = [f"{self._ns}:{tag}sla:{w.entry.customer_id}" for tag, w in zip(tags, writes, strict=True)]

        def queue(pipe: Any, part: list[int]) -> None:
            # each entry beside its own tag's due set: a batch spans tags on one node too
            names: list[str] = []
            args: list[Any] = []
            for i in part:
                w = writes[i]
                names += (f"{self._ns}:{tags[i]}sla-due", keys[i])
                score = "" if w.next_due is None else repr(w.next_due.timestamp())
                args += (w.entry.conversation_id, _encoder.encode(w.entry), score,
                         f"{w.entry.customer_id}|{w.entry.conversation_id}")
            pipe.eval(_WRITE, len(names), *names, *args)
        split(pipe, keys, queue)

    async def due(self, redis: Redis, now: datetime, limit: int = 500) -> list[SlaEntry]:
        """The entries whose next due time has come, oldest first in each tag, at most `limit` a tag."""
        pipe = pipeline(redis)
        for tag in self._tags.every():
            prefix = f"{self._ns}:{tag}"
            pipe.eval(_DUE, 1, prefix + "sla-due", repr(now.timestamp()), limit, prefix + "sla:")
        return [_decoder.decode(raw) for found in await pipe.execute() for raw in found if raw]
