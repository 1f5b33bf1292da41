"""`switchboard digest` against real Kafka: a day's events read back, summarised and published."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import sys
from datetime import UTC, datetime, timedelta

import pytest

from router.cli.digest import digest, publish
from router.settings import Settings
from schemas import decode, encode
from schemas.insights import InsightDigest
from schemas.topics import CONVERSATION, DELIVERY, INSIGHTS, ROUTED, SLA, TopicSpec
from tests.conversation_events import held, lifecycle, routed, sla
from tests.kafka_tools import publish as put
from tests.kafka_tools import read_all
from tests.paths import ROOT
from tests.processes import TEST_KEY

pytestmark = pytest.mark.integration
OUTAGE = "urgency=critical: keyword 'outage' (rule outage)"
BILLING = "queue=billing: keyword 'refund'"


def moment() -> datetime:
    """The digest's "now": a whole minute, so its windows and slices are whole too."""
    # Kafka keeps records by their time, so the story happens around the real present
    return datetime.now(UTC).replace(second=0, microsecond=0)


async def record(settings: Settings, spec: TopicSpec, key: str, event: object, at: datetime) -> None:
    await put(settings, settings.topic(spec), [(key.encode(), encode(event))],
              timestamp_ms=int(at.timestamp() * 1000))


async def a_day(settings: Settings, now: datetime) -> None:
    """Four messages today, one three days ago, a breach, a held reply and a follow-up."""
    at = now - timedelta(hours=5)
    for r in (routed("ev_1", at, reasons=(OUTAGE,), sentiment=-0.8),
              routed("ev_2", at + timedelta(minutes=5), conversation="con_ev_1", channel="api",
                     sentiment=-0.2),
              routed("ev_3", at + timedelta(hours=1), reasons=(BILLING,), queue="billing", customer="cus_bob",
                     tier="premium", sentiment=0.6),
              routed("ev_4", at + timedelta(hours=2), customer="cus_cy"),
              routed("ev_old", now - timedelta(days=3), customer="cus_dee", queue="billing")):
        await record(settings, ROUTED, r.customer_id, r, r.routed_at)
        # the same record again, as after a worker's crash: counted once
        if r.event_id == "ev_1":
            await record(settings, ROUTED, r.customer_id, r, r.routed_at)
    for s in (sla("breach", "con_ev_3", now - timedelta(hours=1), customer="cus_bob"),
              sla("breach", "con_ev_old", now - timedelta(days=3) + timedelta(hours=9), customer="cus_dee")):
        await record(settings, SLA, s.customer_id, s, s.at)
    hold = held("rep_1", "con_ev_1", now - timedelta(hours=4))
    await record(settings, DELIVERY, hold.conversation_id, hold, hold.at)
    sent = lifecycle("follow_up_sent", "con_ev_4", now - timedelta(minutes=30), customer="cus_cy")
    await record(settings, CONVERSATION, sent.customer_id, sent, sent.at)
    # a record that is no event: left out and counted
    await put(settings, settings.topic(SLA), [(b"k", b"{broken")])


async def test_a_day_read_back_from_kafka(deployment: Settings) -> None:
    now = moment()
    await a_day(deployment, now)
    d = await digest(deployment, timedelta(hours=24), now)
    assert (d.since, d.until, d.generated_at) == (now - timedelta(hours=24), now, now)
    assert (d.messages, d.conversations) == (4, 3)
    assert [(c.key, c.messages) for c in d.by_intent] == [("other", 2), ("billing", 1), ("outage", 1)]
    assert [(c.key, c.messages) for c in d.by_queue] == [("general", 3), ("billing", 1)]
    assert [(c.key, c.messages) for c in d.by_channel] == [("email", 3), ("api", 1)]
    slice_of_ev_1 = d.sentiment[19]
    assert (slice_of_ev_1.messages, slice_of_ev_1.mean, slice_of_ev_1.negative) == (2, -0.5, 2)
    assert (d.repeat_customers, d.repeat_messages) == (1, 2)
    assert d.top_repeat[0].customer_id == "cus_ada"
    # three days ago is outside the window: its breach too
    assert [(b.cause, b.breaches) for b in d.breach_causes] == [
        ("first response in billing (premium/normal)", 1)]
    assert d.held == 1 and d.guard[0].rule == "telling-feelings"
    assert d.follow_ups.sent == 1
    assert d.skipped == 1
    # records from a week before the window, to explain breaches; the repeated one too
    assert d.records[ROUTED.name] == 6

    week = await digest(deployment, timedelta(days=7), now)
    assert week.messages == 5
    assert [(b.cause, b.breaches) for b in week.breach_causes] == [
        ("first response in billing (premium/normal)", 1), ("first response in billing (standard/normal)", 1)]


async def test_published_digest_is_on_the_insights_topic(deployment: Settings) -> None:
    now = moment()
    await a_day(deployment, now)
    d = await digest(deployment, timedelta(hours=24), now)
    await publish(deployment, d)
    [found] = await read_all(deployment, deployment.topic(INSIGHTS))
    assert found.key == d.digest_id.encode()
    assert decode(found.value, InsightDigest) == d


async def test_the_command_prints_csv(deployment: Settings) -> None:
    await a_day(deployment, moment())
    env = {**os.environ, "SB_TOPIC_PREFIX": deployment.topic_prefix, "SB_REPLY_TOKEN_KEY": TEST_KEY}
    run = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "router.cli", "digest", "--since", "24h", "--format", "csv",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(run.communicate(), 120)
    assert run.returncode == 0, err.decode()
    rows = list(csv.reader(io.StringIO(out.decode())))
    assert rows[0] == ["section", "key", "metric", "value"]
    assert ["queue", "billing", "messages", "1"] in rows
    assert ["guard", "telling-feelings", "held", "1"] in rows
