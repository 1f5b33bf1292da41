"""Two `switchboard worker`s in one consumer group; one is killed -9 mid-stream, the other takes over.

What a hard kill may and may not do is decision 0003: nothing is ever lost; a true
duplicate (another record with the same event id) is never routed; the one brain batch
that was in flight — produced, not yet marked done — may be routed again by the worker
that takes over, with the same event and conversation ids. The kill's redelivery is only
as large as what the dead worker had not committed, and may leave no trace when it died
before its batch's claims; so a second, deterministic redelivery follows: the group is
rewound to the start of every topic and a fresh worker reads it all again, routing
nothing a second time.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest

from router.loop import group_of
from router.settings import Settings
from schemas import RoutedConversation, decode
from schemas.topics import IDENTIFIED, INBOUND, ROUTED
from tests.kafka_tools import publish, read_all, rewind, wait_drained
from tests.processes import Switchboard
from tests.traffic import busy_hour
from tests.waiting import POLL_SECONDS

pytestmark = pytest.mark.e2e
Launch = Callable[..., Switchboard]
BATCH = 25
# small batches keep both workers busy long enough for one to die part-way;
# the shortest session timeout Settings allow makes the survivor take over soon
WORKER_ENV = {"SB_BATCH_SIZE": str(BATCH), "SB_KAFKA_SESSION_TIMEOUT_SECONDS": "6"}


def routed_by(worker: Switchboard) -> float:
    """How many messages a worker's brain has routed, from its /metrics."""
    _, metrics = worker.get("/metrics")
    line = next((m for m in (metrics or "").splitlines()
                 if m.startswith("sb_messages_out_total{") and 'stage="brain"' in m), None)
    return float(line.rsplit(" ", 1)[1]) if line else 0.0


def dropped_by_brain(worker: Switchboard) -> list[dict[str, Any]]:
    """The duplicates a worker's brain dropped, from its JSON log."""
    events = [json.loads(line) for line in worker.log_path.read_text(errors="replace").splitlines()
              if line.startswith("{")]
    return [e for e in events
            if e.get("msg") == "duplicate dropped" and e.get("logger") == "processors.brain.stage"]


async def test_two_workers_share_the_stream_a_killed_one_loses_nothing_and_redelivery_routes_nothing_twice(
    deployment: Settings, launch: Launch
) -> None:
    traffic = busy_hour(deployment.topic_prefix.rstrip("-"), customers=1000, repeat_every=10)
    expected = set(traffic.by_event())
    first = launch("worker", **WORKER_ENV)
    second = launch("worker", **WORKER_ENV)
    await publish(deployment, deployment.topic(INBOUND), list(traffic.records()))

    # both hold partitions and route; then one dies without a chance to commit anything
    deadline = time.monotonic() + 60
    while min(routed_by(first), routed_by(second)) < 2 * BATCH:
        assert first.proc is not None and first.proc.poll() is None, first.tail_log()
        assert time.monotonic() < deadline, "the two workers did not both route"
        await asyncio.sleep(POLL_SECONDS)
    first.stop(signal.SIGKILL)
    routed_at_kill = len(await read_all(deployment, deployment.topic(ROUTED)))
    assert routed_at_kill < len(expected), "the stream ended before a worker could be killed"
    await wait_drained(deployment)

    copies: dict[str, list[RoutedConversation]] = defaultdict(list)
    for record in await read_all(deployment, deployment.topic(ROUTED)):
        routed = decode(record.value, RoutedConversation)
        copies[routed.event_id].append(routed)
    assert set(copies) == expected, f"{len(expected - set(copies))} messages lost"
    doubled = {e: c for e, c in copies.items() if len(c) > 1}
    # the repeats published twice are never among them, unless in the dead worker's in-flight
    # batch, which alone may come again: one batch, routed alike, twice at most
    assert len(doubled) <= BATCH, f"{len(doubled)} events routed twice"
    assert all(len(c) == 2 and c[0].conversation_id == c[1].conversation_id for c in doubled.values())
    assert len({c[0].routed_at for c in doubled.values()}) <= 1, "more than one batch was routed again"

    # every record delivered again, to a worker that never saw any of it: nothing is routed again
    assert second.stop() == 0
    await rewind(deployment, group_of(deployment, "intake"), deployment.topic(INBOUND))
    await rewind(deployment, group_of(deployment, "brain"), deployment.topic(IDENTIFIED))
    third = launch("worker")
    await wait_drained(deployment)
    again = await read_all(deployment, deployment.topic(ROUTED))
    assert len(again) == sum(len(c) for c in copies.values()), "a redelivered message was routed again"
    dropped = dropped_by_brain(third)
    assert {e["event_id"] for e in dropped} == expected
