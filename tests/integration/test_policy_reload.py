"""A running worker takes a policy edit without a restart; a broken or hostile one is refused."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.api.parse import parse as parse_api
from processors.policy.load import load_policy, parse_policy
from router.settings import Settings
from router.vocabulary import VOCABULARY
from schemas import ConfigError, RoutedConversation, decode, encode
from schemas.topics import INBOUND, ROUTED
from tests.hostile_policies import HOSTILE
from tests.kafka_tools import publish, read_all, unique_prefix, wait_drained
from tests.processes import Switchboard
from tests.waiting import POLL_SECONDS

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "whatif"
OLD = (FIXTURES / "old.yaml").read_text()  # billing words go to the billing queue
NEW = (FIXTURES / "new.yaml").read_text()  # ... to a finance queue instead
BROKEN = NEW.replace("first_response: {normal: 1h, high: 30m}", "first_response: {normal: 1 hour, high: 30m}")


@pytest.fixture
def deployment(stack: Settings) -> Settings:
    prefix = unique_prefix()
    return stack.model_copy(update={"topic_prefix": prefix, "app_id": f"{prefix}sb"})


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(OLD)
    return path


@pytest.fixture
def worker(deployment: Settings, policy_file: Path, tmp_path: Path) -> Iterator[Switchboard]:
    proc = Switchboard("worker", {"SB_TOPIC_PREFIX": deployment.topic_prefix, "SB_APP_ID": deployment.app_id,
                                  "SB_POLICY_FILE": str(policy_file),
                                  "SB_POLICY_RELOAD_SECONDS": "0.2"}, tmp_path).start()
    yield proc
    proc.stop()


def edit(path: Path, text: str) -> None:
    """Replace the file in one step, as an editor or a config deployment does."""
    edit_bytes(path, text.encode())


def edit_bytes(path: Path, raw: bytes) -> None:
    """Replace the file with these bytes in one step."""
    fresh = path.with_suffix(".tmp")
    fresh.write_bytes(raw)
    os.replace(fresh, path)


def reloads(worker: Switchboard, result: str) -> float:
    _, metrics = worker.get("/metrics")
    prefix = f'sb_policy_reloads_total{{result="{result}"}} '
    line = next((m for m in (metrics or "").splitlines() if m.startswith(prefix)), None)
    return float(line.removeprefix(prefix)) if line else 0.0


async def wait_reloads(worker: Switchboard, result: str, count: float, timeout: float = 15) -> None:
    """Wait until the worker counted `count` reloads with `result` (it looks every 0.2 s here)."""
    deadline = time.monotonic() + timeout
    while reloads(worker, result) < count:
        assert worker.proc is not None and worker.proc.poll() is None, worker.tail_log()
        assert time.monotonic() < deadline, f"no {result} reload: {worker.tail_log()}"
        await asyncio.sleep(POLL_SECONDS)


async def route(deployment: Settings, sender: str, text: str) -> RoutedConversation:
    """Publish one API message, wait until it is routed, and return its routed conversation."""
    message = parse_api(json.dumps({"sender": sender, "text": text}).encode())
    await publish(deployment, deployment.topic(INBOUND), [(message.thread_key.encode(), encode(message))])
    await wait_drained(deployment)
    records = await read_all(deployment, deployment.topic(ROUTED))
    routed = [decode(x.value, RoutedConversation) for x in records]
    [mine] = [r for r in routed if r.event_id == message.event_id]
    return mine


def refusals(worker: Switchboard) -> list[dict[str, object]]:
    events = [json.loads(line) for line in worker.log_path.read_text().splitlines() if line.startswith("{")]
    return [e for e in events if e.get("msg") == "policy change refused; the previous policy stays in force"]


async def test_a_good_edit_routes_the_next_message_and_a_bad_one_is_refused_with_its_reason(
    deployment: Settings, policy_file: Path, worker: Switchboard
) -> None:
    pid = worker.proc.pid if worker.proc else None
    first = await route(deployment, "ada@example.com", "I was charged twice")
    assert first.queue == "billing"

    edit(policy_file, NEW)
    await wait_reloads(worker, "applied", 1)
    second = await route(deployment, "bob@example.com", "please refund my order")
    assert second.queue == "finance"
    assert any("queue=finance: keyword 'refund'" in r for d in second.decisions for r in d.reasons)

    edit(policy_file, BROKEN)
    await wait_reloads(worker, "refused", 1)
    with pytest.raises(ConfigError) as expected:
        parse_policy(BROKEN, str(policy_file), VOCABULARY)
    [refused] = refusals(worker)
    assert refused["reason"] == expected.value.reason
    assert str(refused["reason"]).startswith(f"{policy_file}:6 tiers.premium.first_response.normal: ")
    third = await route(deployment, "cy@example.com", "where is my invoice?")
    assert third.queue == "finance", "the refused edit replaced the policy in force"

    # the fixed file is taken up again; all along it was the same process
    edit(policy_file, OLD)
    await wait_reloads(worker, "applied", 2)
    fourth = await route(deployment, "dee@example.com", "a refund please")
    assert fourth.queue == "billing"
    assert reloads(worker, "refused") == 1 and len(refusals(worker)) == 1
    assert worker.proc is not None and worker.proc.poll() is None and worker.proc.pid == pid


async def test_a_worker_survives_every_hostile_edit_and_then_takes_a_good_one(
    deployment: Settings, policy_file: Path, worker: Switchboard
) -> None:
    pid = worker.proc.pid if worker.proc else None
    assert (await route(deployment, "eve@example.com", "I was charged twice")).queue == "billing"
    for count, case in enumerate(HOSTILE, start=1):
        edit_bytes(policy_file, case.make(OLD))
        with pytest.raises(ConfigError) as expected:
            load_policy(policy_file, VOCABULARY)
        await wait_reloads(worker, "refused", count)
        assert refusals(worker)[-1]["reason"] == expected.value.reason, case.name
    assert worker.proc is not None and worker.proc.poll() is None and worker.proc.pid == pid
    # the policy in force all along routes; the next good edit is taken up
    assert (await route(deployment, "fay@example.com", "a refund please")).queue == "billing"
    edit(policy_file, NEW)
    await wait_reloads(worker, "applied", 1)
    assert (await route(deployment, "gus@example.com", "a refund please")).queue == "finance"
    assert worker.proc.poll() is None and worker.proc.pid == pid
