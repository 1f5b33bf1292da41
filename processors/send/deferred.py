"""Replies a channel asked to send later: kept in Redis until due, then on `sb.outbound.v1` again.

A sender that cannot send now but knows when it can (a 24-hour cap that resets at a
known time) returns a `deferred` receipt with `retry_at`; no channel is named here. The
send stage then writes the reply's claim as `deferred:<record>|<epoch>|<reason>` and, in
the same round trip, schedules the message: a sorted set of reply ids by due time and a
hash of their encoded messages, so a worker restart loses nothing (both keys carry the
tag `{deferred}`: one Cluster slot for the scripts that read both). Every send worker's
timer `lease`s the due ones (moved a lease ahead, so two workers do not both take them),
produces them to the outbound topic and `forget`s them once Kafka has them. A lease that
lapses (the worker died in between) is taken again; the copy it makes is one more record
of the same reply id, and the claim lets only one of them send.

The claim rule (`TAKE_DUE`): a key is taken when empty, when it holds a `queued:` claim
(an attempt that never sent) or a `deferred:` one whose time has come by the stage's
clock (passed in, never Redis' own). Before then, the record that deferred it gets its
receipt again and any other record is a duplicate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from processors.stores.results import Result, result

__all__ = ["DEFERRED", "TAKE_DUE", "Deferrals", "Leased", "deferral_keys", "deferred_result", "due_of"]

DEFERRED = "deferred"

# CLAIM_MANY, also taking over `queued:` claims (ARGV[2]) and `deferred:` ones due by ARGV[3];
# returns what each key held before
TAKE_DUE = """
local ttl, weak, now = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local out = {}
for i, key in ipairs(KEYS) do
  local previous = redis.call('GET', key)
  local take = not previous or string.sub(previous, 1, #weak) == weak
  if not take then
    local due = string.match(previous, '^deferred:[^|]*|([0-9.]+)|')
    take = due ~= nil and tonumber(due) <= now
  end
  if take and ttl > 0 then
    redis.call('SET', key, ARGV[i + 3], 'EX', ttl)
  elseif take then
    redis.call('SET', key, ARGV[i + 3])
  end
  out[i] = previous or false
end
return out
"""

# the due replies (score <= ARGV[1]), at most ARGV[3], re-scored to the lease's end ARGV[2]
_LEASE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local body = redis.call('HGET', KEYS[2], id)
  if body then
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    table.insert(out, id)
    table.insert(out, body)
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
"""

# drop each reply still leased at ARGV[1]: one deferred again meanwhile keeps its new time
_FORGET = """
local n = 0
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[1]) then
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i])
    n = n + 1
  end
end
return n
"""


def deferral_keys(namespace: str) -> tuple[str, str]:
    """The schedule (sorted set) and the messages (hash) of a namespace's deferred replies."""
    return f"{namespace}:{{deferred}}:due", f"{namespace}:{{deferred}}:messages"


def deferred_result(owner: str, due: float, reason: str | None) -> str:
    """The claim of a reply deferred by `owner` until `due` (epoch seconds), with why."""
    return result(DEFERRED, owner, f"{due:.3f}|{reason or ''}")


def due_of(done: Result) -> tuple[float, str] | None:
    """When a deferred claim is due and why it waits; None for any other result."""
    if done.status != DEFERRED:
        return None
    due, _, reason = done.detail.partition("|")
    try:
        return float(due), reason
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Leased:
    """Due replies taken by one worker until `until` (epoch seconds): reply id → encoded message."""

    until: float
    messages: tuple[tuple[str, bytes], ...]


class Deferrals:
    """The schedule of deferred replies of one namespace, in Redis."""

    def __init__(self, namespace: str, *, lease_seconds: float = 60.0, batch: int = 200) -> None:
        self.schedule, self.bodies = deferral_keys(namespace)
        self._lease = lease_seconds
        self._batch = batch

    def queue_schedule(self, pipe: Any, items: Sequence[tuple[str, float, bytes]]) -> None:
        """Queue the scheduling of (reply id, due epoch, encoded message) items on a pipeline."""
        if not items:
            return
        pipe.hset(self.bodies, mapping={reply_id: body for reply_id, _, body in items})
        pipe.zadd(self.schedule, {reply_id: due for reply_id, due, _ in items})

    async def lease(self, redis: Redis, now: float) -> Leased:
        """Take the replies due at `now` for one lease; nobody else takes them until it lapses."""
        until = round(now + self._lease, 3)
        raw = await redis.eval(_LEASE, 2, self.schedule, self.bodies, now, until, self._batch)
        pairs = [(raw[i].decode(), bytes(raw[i + 1])) for i in range(0, len(raw), 2)]
        return Leased(until, tuple(pairs))

    async def forget(self, redis: Redis, leased: Leased) -> int:
        """Drop leased replies now that Kafka has them again; returns how many."""
        if not leased.messages:
            return 0
        return int(await redis.eval(_FORGET, 2, self.schedule, self.bodies, leased.until,
                                    *(reply_id for reply_id, _ in leased.messages)))

    async def pending(self, redis: Redis) -> int:
        """How many replies wait for their time."""
        return int(await redis.zcard(self.schedule))
