"""What a pushed channel may tell a customer before routing: the edge's outlook on real Redis."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from redis.asyncio import Redis

from processors.policy.load import load_policy
from processors.stores.directory import Directory
from processors.stores.history import HistoryStore
from processors.stores.identities import IdentityStore
from processors.stores.tags import Tags, on_cluster
from router.edge import RouterEdge
from router.http.integrations import Integrations
from router.settings import Settings, load
from router.vocabulary import VOCABULARY
from schemas import Identity
from schemas.errors import TransientError
from schemas.ids import customer_id_for
from tests.kafka_tools import unique_prefix
from tests.paths import EXAMPLE_POLICY

pytestmark = pytest.mark.integration

POLICY = load_policy(EXAMPLE_POLICY, VOCABULARY)
# Saturday evening in Berlin: eu-support is closed until Monday 08:00, 24x7 is open
SATURDAY_EVENING = datetime(2026, 3, 7, 20, 0, tzinfo=ZoneInfo("Europe/Berlin"))
ADA = Identity(kind="email", value="ada@example.com")


async def unused(topic: str, key: bytes, value: bytes) -> None:
    raise AssertionError("an outlook publishes nothing")


def edge_for(settings: Settings, redis: Redis) -> RouterEdge:
    return RouterEdge(settings, unused, lambda: redis, lambda: POLICY, Integrations(()),
                      clock=lambda: SATURDAY_EVENING)


@pytest.fixture
def edge(stack: Settings, store: Redis) -> tuple[RouterEdge, Redis, str]:
    """The edge on the local Redis, then on a real Cluster (`store`, tests/redis_cluster.py)."""
    settings = stack.model_copy(update={"topic_prefix": unique_prefix(), "redis_cluster": on_cluster(store)})
    return edge_for(settings, store), store, f"{settings.topic_prefix}sb"


async def test_a_stranger_gets_the_default_tier_and_the_opening_time(
        edge: tuple[RouterEdge, Redis, str]) -> None:
    router, _, _ = edge
    seen = await router.outlook("email", "nobody@example.com")
    assert (seen.tier, seen.open_now) == ("standard", False)
    assert (seen.opens_text, seen.expected_text) == ("Mon 09 Mar, 08:00 CET", "Mon 09 Mar, 16:00 CET")


async def test_a_known_customer_gets_their_tier_and_its_calendar(edge: tuple[RouterEdge, Redis, str]) -> None:
    router, redis, ns = edge
    # tagged as the edge tags its keys
    identities = IdentityStore(ns, HistoryStore(ns, cap=5, tags=Tags(load().kafka_partitions)))
    customer = customer_id_for(ADA)
    await identities.link(redis, ADA, customer, evidence="test", actor="test", at=SATURDAY_EVENING)
    await Directory(identities).set_tier(redis, customer, "enterprise", "test")
    seen = await router.outlook("email", "ada@example.com")
    assert (seen.tier, seen.open_now, seen.expected_text) == ("enterprise", True, "Sat 07 Mar, 21:00 CET")
    # by mail she is written to; on the phone the policy has her called back
    assert seen.reply_mode == "text"
    phone = Identity(kind="phone", value="+4915123456789")
    await identities.link(redis, phone, customer, evidence="test", actor="test", at=SATURDAY_EVENING)
    assert (await router.outlook("phone", str(phone))).reply_mode == "callback"
    assert (await router.outlook("phone", "phone:+4917600000000")).reply_mode == "text"  # a stranger


async def test_redis_away_is_a_transient_error_that_names_no_host(stack: Settings) -> None:
    settings = stack.model_copy(update={"topic_prefix": unique_prefix()})
    redis = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    try:
        with pytest.raises(TransientError) as raised:
            await edge_for(settings, redis).outlook("email", "ada@example.com")
    finally:
        await redis.aclose()
    assert raised.value.reason == "customer store unavailable"
