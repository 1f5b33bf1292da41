"""The benchmarks' topics: each run deletes what it made, so runs do not pile up in Kafka."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient

from router.settings import Settings

__all__ = ["delete_topics"]


async def delete_topics(settings: Settings, prefix: str) -> None:
    """Delete every topic whose name starts with `prefix` (a run makes dozens of partitions)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        doomed = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()
