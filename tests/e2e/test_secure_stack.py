"""Kafka over TLS with SASL/SCRAM and ACLs, and Redis over TLS with an ACL user, as
docs/operators.md sets them up: the real edge and worker route a message through them
with exactly the documented rights, and a wrong secret or a topic outside them is refused.
Both services are this test's own (tests/secure_services.py), on loopback."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError

from router.kafka import client_options, new_producer
from router.settings import Settings
from schemas.topics import ROUTED
from tests.kafka_tools import unique_prefix
from tests.policies import example_policy
from tests.processes import Switchboard
from tests.secure_services import SecureStack, documented_acls, grant, secure_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    prefix = unique_prefix()
    with secure_stack(tmp_path_factory.mktemp("secure"), prefix) as stack:
        asyncio.run(grant(stack, documented_acls(prefix, f"{prefix}sb")))
        yield stack


async def _routed(settings: Settings, event_id: str, timeout: float = 60) -> dict[str, object]:
    """The routed conversation of `event_id`, read over SASL_SSL."""
    consumer = AIOKafkaConsumer(settings.topic(ROUTED), **client_options(settings),
                                group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    routed = json.loads(record.value or b"{}")
                    if routed.get("event_id") == event_id:
                        return dict(routed)
        raise AssertionError(f"{event_id} was never routed")
    finally:
        await consumer.stop()


def test_edge_and_worker_route_over_tls_and_scram(secured: SecureStack, tmp_path: Path) -> None:
    prefix = secured.key_prefix
    env = {**secured.environment(), "SB_TOPIC_PREFIX": prefix, "SB_APP_ID": f"{prefix}sb",
           "SB_KAFKA_PARTITIONS": "1", "SB_API_TOKENS": json.dumps(["test-token"]),
           "SB_POLICY_FILE": str(example_policy(tmp_path))}
    # the edge takes the message and dedupes it; the worker routes it: both over TLS + SCRAM
    edge = Switchboard("run", {**env, "SB_STAGES": "intake"}, tmp_path)
    worker = Switchboard("worker", {**env, "SB_STAGES": "brain"}, tmp_path)
    try:
        edge.start(timeout=90)
        worker.start(timeout=90)
        status, body = edge.post("/v1/messages", json.dumps(
            {"sender": "ada@example.com", "text": "My invoice is wrong",
             "message_id": f"secure-{uuid.uuid4().hex}"}).encode())
        assert status == 202, body
        settings = secured.settings(topic_prefix=prefix)
        routed = asyncio.run(_routed(settings, body["event_id"]))
        assert routed["queue"] == "billing"
        # the brain's state is in the ACL user's keys, under the deployment's namespace
        client = redis.Redis.from_url(secured.redis_url())
        try:
            assert any(client.scan_iter(match=f"{prefix}sb:*", count=1000))
        finally:
            client.close()
    finally:
        for proc in (worker, edge):
            if proc.proc is not None:
                assert proc.stop() == 0, proc.tail_log()


def test_a_wrong_secret_is_refused(secured: SecureStack) -> None:
    client = redis.Redis.from_url(secured.redis_url(password="not-the-password"), socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        client.ping()
    client.close()
    # the default user is off: no password, no access
    anonymous = redis.Redis.from_url(f"rediss://127.0.0.1:{secured.redis_port}/0?ssl_ca_certs={secured.ca}",
                                     socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    anonymous.close()
    wrong = secured.settings(kafka_sasl_password="not-the-password")
    with pytest.raises(KafkaError):
        asyncio.run(_produce_once(wrong, "anything"))


def test_topics_outside_the_acls_are_refused(secured: SecureStack) -> None:
    with pytest.raises(TopicAuthorizationFailedError):
        asyncio.run(_produce_once(secured.settings(), "someone-elses.topic"))


async def _produce_once(settings: Settings, topic: str) -> None:
    producer = new_producer(settings, request_timeout_ms=10_000)
    try:
        await asyncio.wait_for(producer.start(), 20)
        await asyncio.wait_for(producer.send_and_wait(topic, b"{}"), 20)
    finally:
        await producer.stop()
