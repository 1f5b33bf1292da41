"""Source checkpoints in Redis, behind the connectors' CursorStore contract."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from redis.exceptions import RedisClusterException, RedisError

from schemas.errors import TransientError

__all__ = ["RedisCursorStore"]


class RedisCursorStore:
    """Keeps each cursor under `<namespace>:cursor:<key>`; Redis persists it (AOF)."""

    def __init__(self, redis: Redis, namespace: str, timeout: float = 10.0) -> None:
        self._redis = redis
        self._prefix = f"{namespace}:cursor:"
        self._timeout = timeout

    async def load(self, key: str) -> str | None:
        """The saved cursor, or None for a source never read; TransientError while Redis is away."""
        try:
            value = await asyncio.wait_for(self._redis.get(self._prefix + key), self._timeout)
        except (RedisError, RedisClusterException, TimeoutError, OSError) as e:
            raise TransientError(f"cursor store: loading {key} failed: {type(e).__name__}") from e
        return value.decode() if isinstance(value, bytes) else value

    async def save(self, key: str, value: str) -> None:
        """Save a cursor once Kafka has everything before it; TransientError while Redis is away."""
        try:
            await asyncio.wait_for(self._redis.set(self._prefix + key, value), self._timeout)
        except (RedisError, RedisClusterException, TimeoutError, OSError) as e:
            raise TransientError(f"cursor store: saving {key} failed: {type(e).__name__}") from e
