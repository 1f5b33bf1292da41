"""What a benchmark run made: each run deletes its topics and its Redis keys, so runs do not pile up.

A backlog run leaves ~100,000 customers' state; left in the development Redis, runs
grew it to millions of keys and gigabytes that its append-only file rewrote under the
next runs, skewing them.
"""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient

from router.settings import Settings

__all__ = ["delete_run"]


async def delete_run(settings: Settings, prefix: str) -> None:
    """Delete every topic and Redis key whose name starts with `prefix`."""
    redis = settings.new_redis()
    try:
        doomed_keys = [k async for k in redis.scan_iter(match=f"{prefix}*", count=10_000)]
        for at in range(0, len(doomed_keys), 10_000):
            await redis.unlink(*doomed_keys[at:at + 10_000])
    finally:
        await redis.aclose()
    await _delete_topics(settings, prefix)


async def _delete_topics(settings: Settings, prefix: str) -> None:
    """Delete every topic whose name starts with `prefix` (a run makes dozens of partitions)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        doomed = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()
