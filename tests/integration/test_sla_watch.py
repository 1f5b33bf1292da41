"""The SLA watcher against real Redis: warn and breach fire once each, escalation follows."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from processors.brain import sla
from processors.policy.load import parse_policy
from processors.stores.clocks import ClockStore, SlaEntry, Write
from processors.watch.sla_watch import SlaWatch
from router.settings import Settings
from router.vocabulary import VOCABULARY
from schemas import Identity, SlaEvent, decode
from schemas.topics import SLA

pytestmark = pytest.mark.integration

POLICY = parse_policy("""
default_tier: standard
tiers:
  standard: {rank: 1, first_response: {normal: 1m, high: 1m}, next_response: {normal: 1m, high: 1m}}
urgency: {levels: [normal, high]}
queues:
  general: {match: {channels: [email]}, destinations: [helpdesk], escalation: chain}
default_queue: general
escalations:
  chain:
    - {at: breach, action: notify, target: lead}
sla: {warn_at: 0.5}
""", "short.yaml", VOCABULARY)


@pytest.fixture
async def redis(stack: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(stack.redis_dsn)
    yield client
    await client.aclose()


async def test_warn_then_breach_then_nothing_more(redis: Redis) -> None:
    clocks = ClockStore(f"t{uuid.uuid4().hex}")
    start = datetime.now(UTC) - timedelta(seconds=40)
    clock, _ = sla.apply(sla.SlaClock(tier="standard", urgency="normal", queue="general"),
                         sla.ClockEvent("customer_message", start), POLICY)
    entry = SlaEntry(conversation_id="con_1", customer_id="cus_1", channel="email",
                     recipient=Identity(kind="email", value="ada@example.com"), clock=clock)
    pipe = redis.pipeline()
    clocks.queue_write(pipe, [Write(entry, sla.next_due(clock, POLICY))])
    await pipe.execute()
    watch = SlaWatch(redis, clocks, lambda: POLICY)

    def kinds(outputs: list) -> list[str]:  # type: ignore[type-arg]
        return [decode(o.value, SlaEvent).kind for o in outputs if o.topic is SLA]

    now = datetime.now(UTC)
    # 40 s of a 1 min target: past the warning (50%) and the status-update share (default 50%)
    assert sorted(kinds(await watch.tick(now))) == ["status_update", "warn"]
    assert await watch.tick(now) == []  # fired once, never again
    later = start + timedelta(minutes=2)
    fired = await watch.tick(later)
    assert kinds(fired) == ["breach", "escalate"]
    events = [decode(o.value, SlaEvent) for o in fired if o.topic is SLA]
    escalation = next(e for e in events if e.kind == "escalate")
    assert (escalation.action, escalation.action_target) == ("notify", "lead")
    assert await watch.tick(later + timedelta(hours=1)) == []


async def test_a_resolved_conversation_fires_nothing(redis: Redis) -> None:
    clocks = ClockStore(f"t{uuid.uuid4().hex}")
    start = datetime.now(UTC) - timedelta(minutes=5)
    clock, _ = sla.apply(sla.SlaClock(tier="standard", urgency="normal", queue="general"),
                         sla.ClockEvent("customer_message", start), POLICY)
    clock, _ = sla.apply(clock, sla.ClockEvent("resolved", start + timedelta(seconds=10)), POLICY)
    assert sla.next_due(clock, POLICY) is None
    entry = SlaEntry(conversation_id="con_2", customer_id="cus_2", channel="email",
                     recipient=Identity(kind="email", value="bob@example.com"), clock=clock)
    pipe = redis.pipeline()
    clocks.queue_write(pipe, [Write(entry, None)])
    await pipe.execute()
    assert await SlaWatch(redis, clocks, lambda: POLICY).tick(datetime.now(UTC)) == []
