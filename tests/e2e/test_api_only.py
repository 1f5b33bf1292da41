"""The Kubernetes topology's API pods: `switchboard run` with no stage (SB_STAGES empty).

They hold no partitions, so /readyz must not wait for any: two of them are both ready
(only one can hold the group's single leader partition), both take messages, and the
workers route what they took.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from router.settings import Settings
from schemas import RoutedConversation, decode
from schemas.topics import ROUTED
from tests.kafka_tools import read_all, wait_drained
from tests.processes import Switchboard

pytestmark = pytest.mark.e2e
Launch = Callable[..., Switchboard]


async def test_api_pods_without_stages_are_ready_and_their_messages_are_routed(
    deployment: Settings, launch: Launch
) -> None:
    apis = [launch("run", SB_STAGES=""), launch("run", SB_STAGES="")]
    for api in apis:
        status, body = api.get("/readyz")
        assert status == 200, body
        assert "workers" not in body["checks"]
    worker = launch("worker", SB_STAGES="intake,brain")
    assert worker.get("/readyz")[1]["checks"]["workers"]["ok"] is True
    taken = set()
    for n, api in enumerate(apis):
        status, body = api.post("/v1/messages", json.dumps(
            {"sender": f"api-only-{n}@example.com", "text": "Where is my order?"}).encode())
        assert status == 202, body
        taken.add(body["event_id"])

    await wait_drained(deployment)
    records = await read_all(deployment, deployment.topic(ROUTED))
    assert {decode(r.value, RoutedConversation).event_id for r in records if r.value} == taken
