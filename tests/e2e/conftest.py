from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from router.settings import Settings
from tests.emulators.twilio import TwilioEmulator
from tests.emulators.x import XEmulator
from tests.integration.email.conftest import Mailbox
from tests.kafka_tools import unique_prefix
from tests.policies import example_policy
from tests.processes import Switchboard, free_port
from tests.receivers.smtp import Inbox


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


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    """An SMTP server keeping what it is sent, and its port."""
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
async def mailbox(stack: Settings) -> AsyncIterator[Mailbox]:
    """A fresh IMAP folder of the local Dovecot's support user, dropped afterwards."""
    box = Mailbox(stack.imap_port, f"sb-e2e-{uuid.uuid4().hex[:12]}")
    await box.create()
    yield box
    await box.delete()


@pytest.fixture
async def x() -> AsyncIterator[XEmulator]:
    """The X API emulator, on a free loopback port."""
    emulator = await XEmulator().start()
    yield emulator
    await emulator.stop()


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioEmulator]:
    """The Twilio API emulator, on a free loopback port."""
    emulator = await TwilioEmulator().start()
    yield emulator
    await emulator.stop()
