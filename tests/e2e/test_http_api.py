"""`switchboard run`: messages POSTed to the HTTP API come out routed; bad input gets a 4xx."""

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


def body(**fields: object) -> bytes:
    return json.dumps({"sender": "ada@example.com", "text": "my order never arrived", **fields}).encode()


async def test_posted_message_comes_out_routed(deployment: Settings, launch: Launch) -> None:
    sb = launch("run")
    status, accepted = sb.post("/v1/messages", body(subject="Order 1234", message_id="m-1"))
    assert status == 202, accepted
    await wait_drained(deployment)
    [record] = await read_all(deployment, deployment.topic(ROUTED))
    routed = decode(record.value, RoutedConversation)
    assert routed.event_id == accepted["event_id"]
    assert routed.message.subject == "Order 1234"
    assert routed.message.sender.value == "ada@example.com"


async def test_bad_input_gets_a_clear_4xx_and_the_line_keeps_flowing(
    deployment: Settings, launch: Launch
) -> None:
    sb = launch("run")
    cases = [
        (body(), None, 401, "unauthorized"),
        (body(), "wrong-token", 401, "unauthorized"),
        (b"this is not json", "test-token", 400, "bad_json"),
        (b'{"text": "no sender"}', "test-token", 422, "invalid"),
        (body(sender="not an address"), "test-token", 422, "invalid"),
        (body(text=""), "test-token", 422, "invalid"),
        (b"x" * (10 * 1024 * 1024), "test-token", 413, "too_large"),
    ]
    for raw, token, status, code in cases:
        got, answer = sb.post("/v1/messages", raw, token=token)
        assert (got, answer["error"]["code"]) == (status, code), answer
        assert answer["error"]["message"]
    # after all of that, the server is alive and a good message still flows
    status, accepted = sb.post("/v1/messages", body(message_id="after-bad-input"))
    assert status == 202
    await wait_drained(deployment)
    routed = [decode(r.value, RoutedConversation).event_id
              for r in await read_all(deployment, deployment.topic(ROUTED))]
    assert routed == [accepted["event_id"]]
    _, metrics = sb.get("/metrics")
    assert 'sb_api_rejected_total{code="too_large"} 1.0' in metrics
    assert 'sb_messages_out_total{channel="api",stage="intake"} 1.0' in metrics


async def test_health_readiness_and_metrics(launch: Launch) -> None:
    sb = launch("run")
    assert sb.get("/healthz") == (200, {"status": "ok"})
    status, ready = sb.get("/readyz")
    assert status == 200 and ready["ready"]
    assert set(ready["checks"]) == {"kafka", "redis", "workers", "stages"}
    _, metrics = sb.get("/metrics")
    for name in ("sb_messages_in_total", "sb_stage_latency_seconds", "sb_consumer_lag"):
        assert f"# TYPE {name}" in metrics


async def test_a_worker_serves_no_message_intake(launch: Launch) -> None:
    worker = launch("worker")
    status, answer = worker.post("/v1/messages", body())
    assert status == 404
    assert answer["error"]["code"] == "not_found"


async def test_a_tier_set_over_the_api_routes_the_next_message_ahead(
    deployment: Settings, launch: Launch
) -> None:
    sb = launch("run")
    assert sb.post("/v1/messages", body(message_id="t-1"))[0] == 202
    await wait_drained(deployment)
    [first] = [decode(r.value, RoutedConversation) for r in
               await read_all(deployment, deployment.topic(ROUTED))]
    assert first.tier == "standard"
    status, answer = sb.post(f"/v1/customers/{first.customer_id}/tier",
                             json.dumps({"tier": "premium"}).encode(), method="PUT")
    assert status == 200, answer
    assert sb.post("/v1/messages", body(message_id="t-2", text="still waiting"))[0] == 202
    await wait_drained(deployment)
    routed = [decode(r.value, RoutedConversation) for r in
              await read_all(deployment, deployment.topic(ROUTED))]
    second = next(r for r in routed if r.message.native_id == "t-2")
    assert second.tier == "premium" and second.priority < first.priority
    status, customer = sb.get(f"/v1/customers/{first.customer_id}")
    assert status == 200 and customer["tier"] == "premium"
