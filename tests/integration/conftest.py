"""What integration tests share: a deployment of their own on the shared Kafka, topics made."""

from __future__ import annotations

import pytest

from router.kafka import ensure_topics
from router.settings import Settings
from tests.kafka_tools import unique_prefix


@pytest.fixture
async def deployment(stack: Settings) -> Settings:
    """Settings with a topic prefix and consumer group no other test shares, every topic created.

    Modules that need more (a policy file, another namespace) define their own.
    """
    prefix = unique_prefix()
    settings = stack.model_copy(update={"topic_prefix": prefix, "app_id": f"{prefix}sb"})
    await ensure_topics(settings)
    return settings
