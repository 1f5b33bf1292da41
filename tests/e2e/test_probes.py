"""Synthetic probes end to end: through the real mail path and the API, judged, and never a customer."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from router.settings import Settings
from schemas import RoutedConversation, decode
from schemas.probe import ProbeEvent, make_marker
from schemas.topics import HANDOFF, OUTBOUND, PROBE, ROUTED, SLA
from tests.e2e.mail_stack import SUPPORT, SUPPORT_PASSWORD, MailStack, mail_stack  # noqa: F401 - the fixture
from tests.kafka_tools import read_all
from tests.processes import ROOT, TEST_KEY, Switchboard
from tests.waiting import POLL_SECONDS

pytestmark = pytest.mark.e2e
Launch = Callable[..., Switchboard]


async def verdicts(settings: Settings) -> list[ProbeEvent]:
    return [decode(r.value, ProbeEvent) for r in await read_all(settings, settings.topic(PROBE))]


async def until_verdicts(settings: Settings, wanted: Callable[[list[ProbeEvent]], bool], what: str,
                         timeout: float = 90) -> list[ProbeEvent]:
    deadline = time.monotonic() + timeout
    while not wanted(found := await verdicts(settings)):
        assert time.monotonic() < deadline, f"{what}; verdicts so far: {[(v.channel, v.kind) for v in found]}"
        await asyncio.sleep(POLL_SECONDS * 10)
    return found


def metric(text: str, series: str) -> float:
    """The value of one series in a /metrics text."""
    [value] = [line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(series + " ")]
    return float(value)


def has(kind: str, channel: str) -> Callable[[list[ProbeEvent]], bool]:
    return lambda found: any((v.channel, v.kind) == (channel, kind) for v in found)


async def test_probes_pass_through_email_and_api_and_never_reach_agents(
    deployment: Settings, launch: Launch, mail_stack: MailStack,  # noqa: F811
) -> None:
    env = {**mail_stack.channel(), "SB_PROBE_INTERVAL_SECONDS": "1"}
    router = launch("run", **env)
    found = await until_verdicts(deployment, lambda f: has("passed", "email")(f) and has("passed", "api")(f),
                                 "the scheduled probes never passed")
    routed = [v for v in found if v.kind == "routed"]
    assert routed and all(v.queue == "general" and v.seconds is not None for v in routed)

    # one round on demand, as an operator runs it
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "router.cli", "probe"], cwd=ROOT, capture_output=True,
        text=True, timeout=120, env={**router.env, "SB_PROBE_TIMEOUT_SECONDS": "60"})
    assert done.returncode == 0, done.stdout + done.stderr
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    assert sorted((p["channel"], p["kind"]) for p in printed) == [("api", "passed"), ("email", "passed")]
    # a routed probe's mail is deleted from the support mailbox: at most the one in flight is there
    passed = sum((v.channel, v.kind) == ("email", "passed") for v in await verdicts(deployment))
    in_mailbox = [m for m in mail_stack.inbox(SUPPORT, SUPPORT_PASSWORD) if b"Switchboard probe" in m]
    assert passed >= 2 and len(in_mailbox) <= 1, (passed, len(in_mailbox))

    _, metrics = router.get("/metrics")
    assert 'sb_probe_seconds_count{channel="email"}' in metrics
    assert 'sb_probe_seconds_count{channel="api"}' in metrics
    # probe traffic is nobody's case: nothing routed, handed to agents, acknowledged or clocked
    for topic in (ROUTED, HANDOFF, OUTBOUND, SLA):
        assert await read_all(deployment, deployment.topic(topic)) == [], topic.name
    # nor counted by the stages (the channel's own counters see probes arrive, as channel traffic)
    for stage in ("intake", "brain"):
        assert f'sb_messages_in_total{{channel="api",stage="{stage}"}}' not in metrics
        assert f'sb_messages_in_total{{channel="email",stage="{stage}"}}' not in metrics
    assert 'sb_source_messages_total{connector="email",kind="message"}' in metrics


async def test_a_mailbox_read_too_rarely_makes_the_email_probe_silent_and_slowness_is_reported(
    deployment: Settings, launch: Launch, mail_stack: MailStack,  # noqa: F811
) -> None:
    # IMAP polled once an hour, without IDLE: the probe's mail waits in the mailbox unread
    env = {**mail_stack.channel(idle=False, poll_seconds=3600), "SB_PROBE_INTERVAL_SECONDS": "1",
           "SB_PROBE_TIMEOUT_SECONDS": "4", "SB_PROBE_SLOW_SECONDS": "0.000001"}
    router = launch("run", **env)
    found = await until_verdicts(deployment, lambda f: has("silent", "email")(f) and has("slow", "api")(f),
                                 "no silent email probe and no slow api probe")
    silent = next(v for v in found if (v.channel, v.kind) == ("email", "silent"))
    assert silent.reason == "not routed within 4s" and silent.seconds is None
    _, metrics = router.get("/metrics")
    assert metric(metrics, 'sb_probe_failures_total{channel="email",kind="silent"}') >= 1
    assert metric(metrics, 'sb_probe_failures_total{channel="api",kind="slow"}') >= 1
    # (counted from 0, so an alert's increase() sees the first failure)
    assert metric(metrics, 'sb_probe_failures_total{channel="api",kind="failed"}') == 0


async def test_a_forged_stale_or_misplaced_marker_is_an_ordinary_customer_message(
    deployment: Settings, launch: Launch, tmp_path: Path,
) -> None:
    router = launch("run", SB_PROBE_INTERVAL_SECONDS="0")
    now = datetime.now(UTC)
    key = TEST_KEY.encode()
    markers = {
        "forged": make_marker(f"prb_{uuid.uuid4().hex[:20]}", "api", now, b"a key the customer guessed"),
        "stale": make_marker(f"prb_{uuid.uuid4().hex[:20]}", "api", now - timedelta(hours=2), key),
        "misplaced": make_marker(f"prb_{uuid.uuid4().hex[:20]}", "email", now, key),
    }
    for name, marker in markers.items():
        body = {"sender": f"{name}@example.com", "text": f"Please ignore my order {marker}"}
        status, answer = router.post("/v1/messages", json.dumps(body).encode())
        assert status == 202, answer
    deadline = time.monotonic() + 60
    while len(routed := await read_all(deployment, deployment.topic(ROUTED))) < len(markers):
        assert time.monotonic() < deadline, f"{len(routed)} of {len(markers)} routed"
        await asyncio.sleep(POLL_SECONDS)
    senders = sorted(decode(r.value, RoutedConversation).message.sender.value for r in routed)
    assert senders == sorted(f"{name}@example.com" for name in markers)
    assert await verdicts(deployment) == []
    _, metrics = router.get("/metrics")  # counted as customers, in the form the probe test looks for
    assert 'sb_messages_in_total{channel="api",stage="intake"} 3.0' in metrics
