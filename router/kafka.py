"""Kafka plumbing shared by the HTTP API, the CLI and the workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from router.settings import Settings
from schemas.errors import ConfigError, TransientError
from schemas.topics import ALL

__all__ = ["client_options", "ensure_topics", "leader_topic", "new_producer", "ssl_context"]

log = logging.getLogger(__name__)


def client_options(settings: Settings) -> dict[str, Any]:
    """Connection options every aiokafka client of ours uses (TLS/SASL from settings)."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.kafka_sasl_mechanism:
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        if settings.kafka_sasl_password is not None:
            options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for SSL and SASL_SSL: brokers verified by name against the CA given."""
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    cafile = settings.kafka_ssl_cafile
    try:
        context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"cannot read the CA bundle: {e}", where="environment SB_KAFKA_SSL_CAFILE") from e
    if settings.kafka_ssl_certfile and settings.kafka_ssl_keyfile:
        try:
            context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"cannot read the client certificate or key: {e}",
                              where="environment SB_KAFKA_SSL_CERTFILE") from e
    return context


async def _led(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    """Return once every partition of these new topics has a leader (creation is asynchronous)."""
    # a client that uses a topic before this sees UNKNOWN_TOPIC_OR_PARTITION
    while True:
        described = await admin.describe_topics(names)
        if all(not d["error_code"] and d["partitions"] and all(p["leader"] >= 0 for p in d["partitions"])
               for d in described):
            return
        await asyncio.sleep(0.05)


def new_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent producer that waits for all in-sync replicas; not yet started."""
    options = client_options(settings) | {
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 1,
        "compression_type": None,
        "max_batch_size": settings.kafka_batch_bytes,
    }
    return AIOKafkaProducer(**(options | overrides))


def leader_topic(settings: Settings) -> str:
    """The one-partition topic whose owner is the Faust app's leader (it runs the SLA watches)."""
    return f"{settings.app_id}-__assignor-__leader"


async def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create every Switchboard topic that is missing, and the leader's; returns the names created."""
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout)
        existing = set(await asyncio.wait_for(admin.list_topics(), timeout))
        # Faust would create the leader's topic itself and subscribe before it had a leader
        # (aiokafka logs that as an error); made here, it is ready before the app starts
        wanted = {settings.topic(spec): settings.kafka_partitions for spec in ALL}
        wanted[leader_topic(settings)] = 1
        missing = [name for name in wanted if name not in existing]
        if missing:
            # another process may create them first: that is fine
            with contextlib.suppress(TopicAlreadyExistsError):
                await asyncio.wait_for(admin.create_topics([
                    NewTopic(name, wanted[name], settings.kafka_replication_factor) for name in missing
                ]), timeout)
            await asyncio.wait_for(_led(admin, missing), timeout)
            log.info("created topics", extra={"topics": missing})
        return missing
    except (KafkaError, TimeoutError, OSError) as e:
        raise TransientError(f"Kafka at {settings.kafka_bootstrap} unreachable: {e!r}") from e
    finally:
        await admin.close()
