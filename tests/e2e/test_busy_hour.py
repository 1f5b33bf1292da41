"""A busy hour through `switchboard run`: ~100 customers, mail and API, tiers, repeats, cross-channel."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from router.settings import Settings
from schemas import Identity, RoutedConversation, decode
from schemas.ids import customer_id_for
from schemas.topics import INBOUND, ROUTED
from tests.kafka_tools import publish, read_all, wait_drained
from tests.processes import Switchboard
from tests.traffic import Traffic, busy_hour

pytestmark = pytest.mark.e2e
Launch = Callable[..., Switchboard]
RANK = {"enterprise": 0, "premium": 1, "standard": 2}


def post_all(sb: Switchboard, bodies: list[bytes]) -> list[tuple[int, dict[str, str]]]:
    """POST every body to /v1/messages, eight at a time, as a busy API client would."""
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda body: sb.post("/v1/messages", body), bodies))


async def send(deployment: Settings, sb: Switchboard, traffic: Traffic) -> None:
    """Mail straight onto the inbound topic (as the email connector puts it), the API over HTTP, at once."""
    mail = asyncio.create_task(publish(deployment, deployment.topic(INBOUND), list(traffic.records("email"))))
    api = [s for s in [*traffic.sent, *traffic.repeats] if s.channel == "api"]
    answers = await asyncio.to_thread(post_all, sb, [s.body for s in api if s.body])
    await mail
    assert [(status, body.get("event_id")) for status, body in answers] == [
        (202, s.message.event_id) for s in api]


async def test_a_busy_hour_is_routed_once_each_in_one_conversation_with_history_and_tiers(
    deployment: Settings, launch: Launch
) -> None:
    started = time.monotonic()
    traffic = busy_hour(deployment.topic_prefix.rstrip("-"))
    assert 300 <= len(traffic.sent) <= 600 and traffic.repeats
    sb = launch("run")
    status, counts = sb.post("/v1/customers/import", traffic.directory_csv(),
                             headers={"Content-Type": "text/csv"})
    assert status == 200, counts
    assert counts["tiers_set"] == sum(1 for c in traffic.customers if c.tier)
    await send(deployment, sb, traffic)
    await wait_drained(deployment)

    records = sorted(await read_all(deployment, deployment.topic(ROUTED)), key=lambda r: r.offset)
    routed = [decode(r.value, RoutedConversation) for r in records]
    # every event routed exactly once: repeats on either channel were dropped
    times = Counter(r.event_id for r in routed)
    assert set(times) == set(traffic.by_event()) and max(times.values()) == 1
    _, metrics = sb.get("/metrics")
    for channel in ("email", "api"):
        repeats = sum(1 for s in traffic.repeats if s.channel == channel)
        assert f'sb_messages_deduplicated_total{{channel="{channel}",stage="intake"}} {repeats}.0' in metrics

    planned = traffic.by_event()
    mine: dict[str, list[RoutedConversation]] = defaultdict(list)  # per customer, in routing order
    for r in routed:
        customer = planned[r.event_id].customer
        assert r.customer_id == customer_id_for(Identity(kind="email", value=customer.address))
        assert r.tier == (customer.tier or "standard"), "the directory's tier did not reach routing"
        mine[customer.address].append(r)

    # one conversation per customer, on every channel they used, and nobody else's
    conversations = {address: {r.conversation_id for r in rs} for address, rs in mine.items()}
    assert all(len(ids) == 1 for ids in conversations.values()), conversations
    assert len({next(iter(ids)) for ids in conversations.values()}) == len(traffic.customers)

    # every routed message carries the customer's earlier messages, from both channels
    for address, rs in mine.items():
        for i, r in enumerate(rs):
            earlier = {(e.message.channel, e.message.text) for e in rs[:i]}
            carried = {(h.channel, h.summary) for h in r.history if h.direction == "in"}
            assert carried == earlier, f"{address} message {i}: history {carried} != {earlier}"
    both = [c for c in traffic.customers if len(c.channels) == 2]
    for c in both:
        last = mine[c.address][-1]
        assert {last.message.channel, *(h.channel for h in last.history)} == {"email", "api"}

    # at the same urgency a higher tier is always ahead (priority 1 is the most pressing)
    by_urgency: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for r in routed:
        by_urgency[r.urgency][r.tier].add(r.priority)
    compared = 0
    for urgency, tiers in by_urgency.items():
        for high, low in (("enterprise", "premium"), ("premium", "standard")):
            if tiers[high] and tiers[low]:
                assert max(tiers[high]) < min(tiers[low]), (urgency, high, tiers[high], low, tiers[low])
                compared += 1
    assert compared >= 4, f"too few urgencies shared between tiers: {dict(by_urgency)}"
    assert time.monotonic() - started < 60
