from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from router.settings import Settings
from tests.kafka_tools import unique_prefix
from tests.policies import example_policy
from tests.processes import Switchboard


@pytest.fixture
def deployment(stack: Settings) -> Settings:
    """Settings of a deployment with topics and a consumer group no other test shares."""
    prefix = unique_prefix()
    return stack.model_copy(update={"topic_prefix": prefix, "app_id": f"{prefix}sb"})


@pytest.fixture
def launch(deployment: Settings, tmp_path: Path) -> Iterator[object]:
    """Start `switchboard run|worker` processes of this deployment; all stopped at the end.

    They run the example policy always open, so nothing they say depends on the hour.
    """
    started: list[Switchboard] = []
    env = {"SB_TOPIC_PREFIX": deployment.topic_prefix, "SB_APP_ID": deployment.app_id,
           "SB_API_TOKENS": json.dumps(["test-token"]),
           "SB_POLICY_FILE": str(example_policy(tmp_path))}

    def start(command: str = "worker", **extra_env: str) -> Switchboard:
        proc = Switchboard(command, {**env, **extra_env}, tmp_path).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.stop()
