"""Held items: a pushed channel's message kept in Redis until its last callback or its deadline.

One hash per key (`state`, and the `message` while it waits) and one sorted set of
deadlines. Every change is one Lua call, so two edges, or a callback racing the timer,
see one order. Accepting is publish-then-mark: a key is marked settled or released only
after Kafka has its message, and while a message is on its way its deadline is pushed a
lease ahead, so a process killed in between leaves it for the next tick of any edge —
which publishes it again with the same event id, a duplicate intake drops. Nothing is
lost, and nothing reaches routing twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import cast

from redis.asyncio import Redis

from connectors.routes import HoldState

__all__ = ["HeldStore", "run_timer"]

log = logging.getLogger(__name__)

# keep `message` unless the key is final (or held, when ARGV[5] is 0); returns the state before
_HOLD = """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'settled' or state == 'released' then return state end
if state == 'held' and ARGV[5] == '0' then return state end
redis.call('HSET', KEYS[1], 'state', 'held', 'message', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return state or 'new'
"""
# mark the key final, unless what it holds is no longer the message just accepted
_DONE = """
if redis.call('HGET', KEYS[1], 'message') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[3])
redis.call('HDEL', KEYS[1], 'message')
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""
# the keys past their deadline and their messages, each leased for a while
_DUE = """
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, m in ipairs(members) do
  local message = redis.call('HGET', ARGV[4] .. m, 'message')
  if message then
    redis.call('ZADD', KEYS[1], ARGV[2], m)
    out[#out + 1] = m
    out[#out + 1] = message
  else
    redis.call('ZREM', KEYS[1], m)
  end
end
return out
"""


class HeldStore:
    """The Redis side of `Edge.hold` and `Edge.settle`; times are unix seconds."""

    def __init__(self, namespace: str, *, ttl_seconds: int, lease_seconds: float = 30.0,
                 cluster: bool = False) -> None:
        # on a Redis Cluster every held key shares one hash tag, so each call stays in one
        # slot (few keys, short-lived); one node keeps the names it always had (decision 0022)
        tag = "{held}:" if cluster else ""
        self._prefix = f"{namespace}:{tag}held:"
        self._due = f"{namespace}:{tag}held-due"
        self._ttl = ttl_seconds
        self.lease = lease_seconds

    async def hold(self, redis: Redis, key: str, message: bytes, until: float, *,
                   replace: bool = True) -> HoldState:
        """Keep `message` under `key` until `until`, unless the key is final (or held, without `replace`)."""
        state = await redis.eval(_HOLD, 2, self._prefix + key, self._due, key, message, until, self._ttl,
                                 int(replace))
        return cast(HoldState, state.decode() if isinstance(state, bytes) else state)

    async def done(self, redis: Redis, key: str, message: bytes, final: HoldState) -> bool:
        """Mark `key` settled or released now that `message` is in Kafka."""
        return bool(await redis.eval(_DONE, 2, self._prefix + key, self._due, key, message, final, self._ttl))

    async def peek(self, redis: Redis, key: str) -> bytes | None:
        """The message `key` holds while it waits; None when it is new or final."""
        state, message = await redis.hmget(self._prefix + key, ["state", "message"])
        return message if state == b"held" and isinstance(message, bytes) else None

    async def due(self, redis: Redis, now: float, limit: int = 100) -> list[tuple[str, bytes]]:
        """The keys past their deadline with their messages, leased until `now + lease`."""
        flat = await redis.eval(_DUE, 1, self._due, now, now + self.lease, limit, self._prefix)
        return [(k.decode(), m) for k, m in zip(flat[::2], flat[1::2], strict=True)]


async def run_timer(tick: Callable[[], Awaitable[int]], every: float) -> None:
    """Call `tick` every `every` seconds until cancelled; a failed tick is logged, the next one runs."""
    while True:
        try:
            released = await tick()
        except Exception as e:  # noqa: BLE001 - Redis or Kafka away: what is due stays due
            log.warning("held items: release failed; retrying next tick", extra={"reason": repr(e)})
            released = 0
        if not released:
            await asyncio.sleep(every)
