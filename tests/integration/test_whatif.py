"""`switchboard whatif` against real Kafka and Redis: the comparison, and not one side effect."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from redis.asyncio import Redis

from connectors.api.parse import parse as parse_api
from processors.stores.directory import Directory, DirectoryRow
from processors.stores.history import HistoryStore
from processors.stores.identities import IdentityStore
from processors.stores.tags import Tags
from router.kafka import ensure_topics
from router.settings import Settings
from schemas import Identity, encode
from schemas.topics import INBOUND
from tests.kafka_tools import publish, unique_prefix

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "whatif"
PREMIUM = Identity(kind="email", value="vip@example.com")


@pytest.fixture
async def deployment(stack: Settings) -> Settings:
    prefix = unique_prefix()
    settings = stack.model_copy(update={"topic_prefix": prefix, "app_id": f"{prefix}sb",
                                        "policy_file": FIXTURES / "old.yaml"})
    await ensure_topics(settings)
    return settings


@pytest.fixture
async def redis(stack: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(stack.redis_dsn)
    yield client
    await client.aclose()


def api(sender: str, text: str, message_id: str) -> tuple[bytes, bytes]:
    body = {"sender": sender, "text": text, "message_id": message_id}
    message = parse_api(json.dumps(body).encode())
    return message.thread_key.encode(), encode(message)


@dataclass(frozen=True)
class Snapshot:
    """Everything whatif must leave as it found it."""

    keys: dict[bytes, bytes | None]
    ends: dict[TopicPartition, int]
    commits: dict[str, dict[TopicPartition, int]]


async def snapshot(settings: Settings, redis: Redis) -> Snapshot:
    ns = f"{settings.topic_prefix}sb"
    keys = sorted([k async for k in redis.scan_iter(match=f"{ns}:*", count=1000)])
    values = {k: await redis.dump(k) for k in keys}
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        topics = sorted(t for t in await admin.list_topics() if t.startswith(settings.topic_prefix))
        tps = [TopicPartition(d["topic"], p["partition"])
               for d in await admin.describe_topics(topics) for p in d["partitions"]]
        consumer.assign(tps)  # the consumer learns these topics' leaders at once, not one by one
        ends = await consumer.end_offsets(tps)
        # every group's commits on this deployment's topics: whatif must add none
        groups = [g for g, _ in await admin.list_consumer_groups()]
        found = await asyncio.gather(*(admin.list_consumer_group_offsets(g, partitions=tps) for g in groups))
        commits = {g: {tp: o.offset for tp, o in f.items() if o.offset >= 0}
                   for g, f in zip(groups, found, strict=True)}
        return Snapshot(values, ends, {g: c for g, c in commits.items() if c})
    finally:
        await consumer.stop()
        await admin.close()


def whatif(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SB_TOPIC_PREFIX": settings.topic_prefix, "SB_APP_ID": settings.app_id,
           "SB_POLICY_FILE": str(FIXTURES / "old.yaml")}
    return subprocess.run([sys.executable, "-m", "router.cli", "whatif", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


async def test_whatif_compares_policies_over_recorded_mail_and_changes_nothing(
    deployment: Settings, redis: Redis
) -> None:
    ns = f"{deployment.topic_prefix}sb"
    await Directory(IdentityStore(ns, HistoryStore(ns, tags=Tags(deployment.kafka_partitions)))).import_rows(
        redis, [DirectoryRow(2, PREMIUM, "premium", "Vi")], actor="test")
    topic = deployment.topic(INBOUND)
    three_days_ago = int((datetime.now(UTC) - timedelta(days=3)).timestamp() * 1000)
    await publish(deployment, topic, [api("old@example.com", "an old refund question", "w-old")],
                  timestamp_ms=three_days_ago)
    recent = [
        api("ada@example.com", "I was charged twice this month", "w-1"),
        api("bob@example.com", "please refund my last order", "w-2"),
        api("cy@example.com", "where is the invoice for March?", "w-3"),
        api("dee@example.com", "my parcel has not arrived", "w-4"),
        api("eve@example.com", "total outage in the app", "w-5"),
        api(PREMIUM.value, "how do I change my address?", "w-6"),
    ]
    await publish(deployment, topic, [*recent, recent[1]])  # the refund twice: judged once
    before = await snapshot(deployment, redis)

    started = time.monotonic()
    done = whatif(deployment, "--policy", str(FIXTURES / "new.yaml"), "--json")
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)

    assert (report["records"], report["messages"], report["skipped"]) == (7, 6, {"duplicate": 1})
    assert report["queues"] == {"general": {"old": 3, "new": 3}, "billing": {"old": 3, "new": 0},
                                "finance": {"old": 0, "new": 3}}
    assert report["queue_changed"] == 3
    assert {e["old_queue"] + ">" + e["new_queue"] for e in report["examples"]} == {"billing>finance"}
    assert all(any("queue=finance" in r for r in e["new_reasons"]) for e in report["examples"])
    # the tier came from the directory, read-only
    assert report["tier_urgency"] == {"premium/normal": {"old": 1, "new": 1},
                                      "standard/high": {"old": 1, "new": 1},
                                      "standard/normal": {"old": 4, "new": 4}}
    general = report["first_response"]["general"]
    assert (general["old"]["count"], general["old"]["p50_seconds"], general["old"]["max_seconds"]) == (
        3, 4 * 3600, 8 * 3600)
    # premium's 2h becomes 1h; with one premium message among three the p50 stays standard's 4h
    assert general["new"]["p50_seconds"] == 4 * 3600 and report["priorities"]["2"] == {"old": 1, "new": 1}
    assert report["first_response"]["finance"]["new"]["p90_seconds"] == 8 * 3600

    assert await snapshot(deployment, redis) == before, "whatif left a trace in Redis or Kafka"
    assert took < 15, f"whatif took {took:.1f}s"


async def test_since_and_limit_choose_the_window_and_tables_are_the_default(
    deployment: Settings, redis: Redis
) -> None:
    topic = deployment.topic(INBOUND)
    three_days_ago = int((datetime.now(UTC) - timedelta(days=3)).timestamp() * 1000)
    await publish(deployment, topic, [api("old@example.com", "an old refund question", "s-old")],
                  timestamp_ms=three_days_ago)
    await publish(deployment, topic, [api(f"c{n}@example.com", f"refund number {n}", f"s-{n}")
                                      for n in range(4)])
    before = await snapshot(deployment, redis)
    new = str(FIXTURES / "new.yaml")

    week = whatif(deployment, "--policy", new, "--since", "7d", "--json")
    assert week.returncode == 0, week.stderr
    assert json.loads(week.stdout)["messages"] == 5
    limited = whatif(deployment, "--policy", new, "--since", "7d", "--limit", "2", "--json")
    assert json.loads(limited.stdout)["records"] == 2

    table = whatif(deployment, "--policy", new)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith(f"whatif: 4 messages from {topic}")
    assert ["billing", "4", "0", "-4"] in [line.split() for line in lines]
    assert ["finance", "0", "4", "+4"] in [line.split() for line in lines]
    assert "queue changed: 4 of 4 messages" in lines
    assert any(line.startswith("note: each message judged as if new") for line in lines)
    assert await snapshot(deployment, redis) == before


async def test_a_policy_that_fails_validation_exits_2_before_reading_anything(
    deployment: Settings,
) -> None:
    bad = ROOT / "tests" / "fixtures" / "policy" / "unknown_key.yaml"
    done = whatif(deployment, "--policy", str(bad))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith(f"switchboard whatif: {bad}:")
    assert done.stderr.count("\n") == 1
