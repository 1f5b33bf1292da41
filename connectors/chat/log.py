"""Each chat conversation's numbered log in Redis, and the notice that wakes the sockets.

Keys, under `<ns>:chat:`:
- `<session>:log`   list of entries: an entry's number is its place in the list (from 1);
- `<session>:ids`   hash: message id (the widget's, or a reply id) → its number;
- `<session>:meta`  hash: `seen` (last number the widget displayed), `mailed` (last number
                    sent on by mail), `email`, `verified`, `conversation`;
- `mail`            sorted set: sessions whose unseen replies fall due for mail, by time;
- `events`          pub/sub channel: `<session> <number>` after every append.

Appending is one Lua call: a known id returns its number (a resend is one message), a
new one is numbered by its place, and the notice is published in the same step, so the
order sockets hear of messages is the log's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis.typing import EncodableT

from connectors.chat.frames import Entry
from schemas.errors import TransientError

__all__ = ["ChatLog", "connect"]

_APPEND = """
local known = redis.call('HGET', KEYS[2], ARGV[1])
if known then return {tonumber(known), 0} end
local seq = redis.call('RPUSH', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], seq)
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
redis.call('PUBLISH', KEYS[4], ARGV[4] .. ' ' .. seq)
return {seq, 1}
"""
_RAISE = """
local now = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > now then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) return 1 end
return 0
"""
_entry = msgspec.json.Decoder(Entry)


class ChatLog:
    """The chat channel's Redis state; every call raises TransientError while Redis is away."""

    def __init__(self, redis: Redis, namespace: str, *, ttl_seconds: int, timeout: float = 2.0) -> None:
        self.redis = redis
        self._ns = f"{namespace}:chat"
        self._ttl = ttl_seconds
        self._timeout = timeout

    @property
    def channel(self) -> str:
        """The pub/sub channel every append is announced on."""
        return f"{self._ns}:events"

    def _keys(self, session: str) -> list[str]:
        base = f"{self._ns}:{session}"
        return [f"{base}:log", f"{base}:ids", f"{base}:meta", self.channel]

    @asynccontextmanager
    async def _guard(self, what: str) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self._timeout):
                yield
        except (TimeoutError, RedisError, OSError) as e:
            raise TransientError(f"chat store unavailable ({what})") from e

    async def append(self, session: str, entry: Entry) -> tuple[int, bool]:
        """The entry's number in the session's log, and whether it is new (False: a resend)."""
        async with self._guard("append"):
            seq, new = await self.redis.eval(_APPEND, 4, *self._keys(session), entry.id,
                                             msgspec.json.encode(entry), self._ttl, session)
        return int(seq), bool(new)

    async def last(self, session: str) -> int:
        """The number of the session's newest message (0: none)."""
        async with self._guard("length"):
            return int(await self.redis.llen(self._keys(session)[0]))

    async def read(self, session: str, after: int, limit: int) -> list[tuple[int, Entry]]:
        """Up to `limit` messages numbered after `after`, oldest first."""
        async with self._guard("read"):
            raw = await self.redis.lrange(self._keys(session)[0], after, after + limit - 1)
        return [(after + 1 + i, _entry.decode(item)) for i, item in enumerate(raw)]

    async def raise_mark(self, session: str, mark: str, seq: int) -> bool:
        """Move a per-session mark (`seen`, `mailed`) up to `seq`; never down. True if it moved."""
        async with self._guard("mark"):
            return bool(await self.redis.eval(_RAISE, 1, self._keys(session)[2], mark, seq))

    async def meta(self, session: str) -> dict[str, str]:
        """The session's marks and attributes."""
        async with self._guard("meta"):
            raw = await self.redis.hgetall(self._keys(session)[2])
        return {_text(k): _text(v) for k, v in raw.items()}

    async def remember(self, session: str, **values: str) -> None:
        """Set attributes of the session (its email, the conversation it belongs to)."""
        key = self._keys(session)[2]
        fields: dict[EncodableT, EncodableT] = dict(values.items())
        async with self._guard("remember"), self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=fields)
            pipe.expire(key, self._ttl)
            await pipe.execute()

    async def mail_later(self, session: str, due: float) -> None:
        """Queue the session for a mail at `due` (epoch seconds), unless it is queued already."""
        async with self._guard("queue"):
            await self.redis.zadd(f"{self._ns}:mail", {session: due}, nx=True)

    async def due_for_mail(self, now: float, limit: int = 50) -> list[str]:
        """Sessions whose mail is due, each claimed by this caller alone (removed from the queue)."""
        key = f"{self._ns}:mail"
        async with self._guard("due"):
            found = await self.redis.zrangebyscore(key, "-inf", now, start=0, num=limit)
            claimed = []
            for member in map(_text, found):
                if await self.redis.zrem(key, member):
                    claimed.append(member)
        return claimed

    async def within_rate(self, what: str, limit: int, window_seconds: int, now: float) -> bool:
        """Count one event of `what` in the current window; False once `limit` is passed."""
        key = f"{self._ns}:rate:{what}:{int(now // window_seconds)}"
        async with self._guard("rate"), self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, window_seconds * 2)
            count, _ = await pipe.execute()
        return int(count) <= limit

    async def close(self) -> None:
        """Close the client's connections."""
        await self.redis.aclose()


def connect(url: str) -> Redis:
    """A Redis client; no I/O until the first command."""
    return Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0, health_check_interval=30)



def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
