"""Kafka plumbing shared by the HTTP API, the CLI and the workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from router.settings import Settings
from schemas.errors import TransientError
from schemas.topics import ALL

__all__ = ["client_options", "ensure_topics", "new_producer"]

log = logging.getLogger(__name__)


def client_options(settings: Settings) -> dict[str, Any]:
    """Connection options every aiokafka client of ours uses (TLS/SASL from settings)."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_sasl_mechanism:
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        if settings.kafka_sasl_password is not None:
            options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


def new_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent producer that waits for all in-sync replicas; not yet started."""
    options = client_options(settings) | {
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 1,
        "compression_type": None,
    }
    return AIOKafkaProducer(**(options | overrides))


async def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create every Switchboard topic that is missing; returns the names created."""
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout)
        existing = set(await asyncio.wait_for(admin.list_topics(), timeout))
        wanted = [settings.topic(spec) for spec in ALL]
        missing = [name for name in wanted if name not in existing]
        if missing:
            # another process may create them first: that is fine
            with contextlib.suppress(TopicAlreadyExistsError):
                await asyncio.wait_for(admin.create_topics([
                    NewTopic(name, settings.kafka_partitions, settings.kafka_replication_factor)
                    for name in missing
                ]), timeout)
            log.info("created topics", extra={"topics": missing})
        return missing
    except (KafkaError, TimeoutError, OSError) as e:
        raise TransientError(f"Kafka at {settings.kafka_bootstrap} unreachable: {e!r}") from e
    finally:
        await admin.close()
