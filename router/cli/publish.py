"""`switchboard publish`: put one test message on the inbound topic, straight to Kafka."""

from __future__ import annotations

import asyncio

from connectors.api.parse import parse
from router.kafka import ensure_topics, new_producer
from router.settings import Settings
from schemas.codec import encode
from schemas.inbound import InboundMessage
from schemas.topics import INBOUND

__all__ = ["publish"]


async def _send(settings: Settings, message: InboundMessage) -> None:
    await ensure_topics(settings)
    producer = new_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topic(INBOUND), encode(message), key=message.thread_key.encode())
    finally:
        await producer.stop()


def publish(settings: Settings, raw: bytes) -> InboundMessage:
    """Parse an API-channel JSON body and publish it; returns the message sent."""
    message = parse(raw)
    asyncio.run(_send(settings, message))
    return message
