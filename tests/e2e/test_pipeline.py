"""The first pipeline end to end, with real Kafka, Redis and `switchboard` processes."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Callable

import pytest

from bench.workload import Workload
from connectors.api.parse import parse as parse_api
from router.settings import Settings
from schemas import DeadLetter, InboundMessage, RoutedConversation, decode, encode
from schemas.topics import DEADLETTER, INBOUND, ROUTED
from tests.kafka_tools import publish, read_all, wait_drained
from tests.processes import Switchboard

pytestmark = pytest.mark.e2e
Launch = Callable[..., Switchboard]


def messages(n: int) -> list[tuple[bytes, bytes]]:
    work = Workload("e2e")
    return [work.next() for _ in range(n)]


async def routed_ids(settings: Settings) -> Counter[str]:
    records = await read_all(settings, settings.topic(ROUTED))
    return Counter(decode(r.value, RoutedConversation).event_id for r in records)


async def test_unique_messages_are_routed_once_repeats_dropped_malformed_dead_lettered(
    deployment: Settings, launch: Launch
) -> None:
    unique = messages(60)
    repeats = unique[:15] + unique[40:45]
    malformed = (b"k", b'{"event_id": "ev_x", "channel": 42')
    launch("worker")
    await publish(deployment, deployment.topic(INBOUND), [*unique[:30], malformed, *repeats,
                                                          *unique[30:]])
    await wait_drained(deployment)

    routed = await routed_ids(deployment)
    expected = {decode(v, InboundMessage).event_id for _, v in unique}
    assert set(routed) == expected
    assert max(routed.values()) == 1, "a message was routed twice"
    # this deployment has no agents' tools, so dispatch sets routed messages aside too
    letters = [letter for r in await read_all(deployment, deployment.topic(DEADLETTER))
               if (letter := decode(r.value, DeadLetter)).stage == "intake"]
    assert len(letters) == 1
    assert letters[0].original == malformed[1]
    assert "not a valid InboundMessage" in letters[0].reason
    assert letters[0].source_topic == deployment.topic(INBOUND)


async def test_routed_conversation_carries_decision_reasons(
    deployment: Settings, launch: Launch
) -> None:
    launch("worker")
    await publish(deployment, deployment.topic(INBOUND), messages(1))
    await wait_drained(deployment)
    [record] = await read_all(deployment, deployment.topic(ROUTED))
    routed = decode(record.value, RoutedConversation)
    assert [d.stage for d in routed.decisions] == [
        "dedupe", "identify", "thread", "enrich", "classify", "route", "acknowledge"]
    assert routed.queue == "general"
    assert any("queue=general" in r for r in routed.reasons)
    assert record.key == routed.customer_id.encode()
    assert routed.first_response_due is not None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["graceful", "killed"])
async def test_worker_stopped_mid_stream_loses_nothing(
    deployment: Settings, launch: Launch, sig: signal.Signals
) -> None:
    batch = messages(5000)
    expected = {decode(v, InboundMessage).event_id for _, v in batch}
    # small batches keep the first worker busy long enough to be stopped part-way
    first = launch("worker", SB_BATCH_SIZE="5")
    await publish(deployment, deployment.topic(INBOUND), batch)
    deadline = time.monotonic() + 60
    while len(routed := await routed_ids(deployment)) < 50:
        assert first.proc is not None and first.proc.poll() is None, first.tail_log()
        assert time.monotonic() < deadline, "the first worker routed nothing"
    first.stop(sig)
    assert len(routed) < len(expected), "the worker finished before it could be stopped"
    launch("worker")
    await wait_drained(deployment)

    routed = await routed_ids(deployment)
    assert set(routed) == expected, f"{len(expected - set(routed))} messages lost"
    if sig is signal.SIGTERM:
        # a graceful stop commits what it routed: nothing is routed twice
        assert max(routed.values()) == 1


def api_message(sender: str, text: str, **fields: str) -> tuple[bytes, bytes]:
    message = parse_api(json.dumps({"sender": sender, "text": text, **fields}).encode())
    return message.thread_key.encode(), encode(message)


async def test_messages_thread_into_conversations_across_batches(
    deployment: Settings, launch: Launch
) -> None:
    launch("worker")
    topic = deployment.topic(INBOUND)
    await publish(deployment, topic, [api_message("ada@example.com", "my parcel is late",
                                                  thread_id="order-1")])
    await wait_drained(deployment)
    await publish(deployment, topic, [
        # the same customer again, minutes later, in other words: the same case
        api_message("ada@example.com", "any news?"),
        api_message("bob@example.com", "my parcel is late", thread_id="order-2"),
    ])
    await wait_drained(deployment)
    routed = [decode(r.value, RoutedConversation) for r in
              await read_all(deployment, deployment.topic(ROUTED))]
    by_text = {r.message.text: r for r in routed if r.message.sender.value == "ada@example.com"}
    ada_first, ada_again = by_text["my parcel is late"], by_text["any news?"]
    bob = next(r for r in routed if r.message.sender.value == "bob@example.com")
    assert ada_again.conversation_id == ada_first.conversation_id
    route = next(d for d in ada_again.decisions if d.stage == "route")
    assert any(ada_first.conversation_id in r for r in route.reasons), route.reasons
    assert ada_again.history and ada_again.history[0].summary == "my parcel is late"
    assert bob.conversation_id != ada_first.conversation_id
