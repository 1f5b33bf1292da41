"""Synthetic probes of the pushed and social channels end to end: the chat socket, the voice webhooks
signed as Twilio signs them, and a mention posted on the local X by a second account of ours.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect
from redis.asyncio import Redis

from connectors.twitter.webhook import PATH
from router.settings import Settings
from schemas import RoutedConversation, decode
from schemas.topics import HANDOFF, OUTBOUND, ROUTED, SLA
from tests.browser import ARTEFACTS, open_page
from tests.e2e.test_phone import PUBLIC
from tests.e2e.test_probes import has, until_verdicts
from tests.emulators.twilio import OUR_NUMBER, TwilioEmulator
from tests.emulators.x import XEmulator
from tests.kafka_tools import read_all
from tests.processes import ROOT, Switchboard
from tests.waiting import until

pytestmark = pytest.mark.e2e
Launch = Callable[..., Switchboard]
PROBER = "1500000000000000001"
WAIT_MS = 90_000


def x_env(x: XEmulator, *, poll: bool) -> dict[str, str]:
    """Our support account, read by polling (or only by its webhook), and the probe account beside it."""
    token, secret = x.user(PROBER, "acme_probe")
    return {"SB_X": json.dumps({
        "account_id": x.account, "handle": x.handle, "consumer_key": x.consumer_key,
        "consumer_secret": x.consumer_secret, "access_token": x.access_token,
        "access_token_secret": x.access_token_secret, "base_url": x.base_url, "poll": poll,
        "probe": {"access_token": token, "access_token_secret": secret, "interval_seconds": 1}})}


def phone_env(twilio: TwilioEmulator) -> dict[str, str]:
    return {"SB_PHONE": json.dumps({"account_sid": twilio.account_sid, "auth_token": twilio.auth_token,
                                    "public_base_url": PUBLIC, "from_number": OUR_NUMBER,
                                    "api_base_url": twilio.base_url})}


async def test_chat_phone_and_x_probes_pass_and_never_reach_agents(
        deployment: Settings, launch: Launch, x: XEmulator, twilio: TwilioEmulator) -> None:
    router = launch("run", SB_CHAT="{}", **phone_env(twilio), **x_env(x, poll=True),
                    SB_PROBE_INTERVAL_SECONDS="1", SB_PROBE_TIMEOUT_SECONDS="60")
    found = await until_verdicts(
        deployment, lambda f: all(has("passed", c)(f) for c in ("chat", "phone", "x")),
        "the chat, phone and X probes never all passed", timeout=150)
    routed = {v.channel for v in found if v.kind == "routed"}
    assert {"chat", "phone", "x"} <= routed

    # one round on demand, as an operator runs it
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "router.cli", "probe", *("--channel", "chat"),
                         *("--channel", "phone"), *("--channel", "x")],
        cwd=ROOT, capture_output=True, text=True, timeout=150,
        env={**router.env, "SB_PROBE_TIMEOUT_SECONDS": "90"})
    assert done.returncode == 0, done.stdout + done.stderr
    printed = sorted((p["channel"], p["kind"]) for p in map(json.loads, done.stdout.splitlines()))
    assert printed == [("chat", "passed"), ("phone", "passed"), ("x", "passed")]

    # the probe account's mentions were deleted once routed; our account never answered one
    # (the emulator lets only a post's author delete it)
    await until(lambda: len(x.deleted) >= 2, "the probe posts were not deleted")
    assert x.sent == [], "an acknowledgement or reply went to a probe"
    assert twilio.messages == [], "a text went to the probe's caller"
    # probe traffic is nobody's case: nothing routed, handed to agents, acknowledged or clocked
    for topic in (ROUTED, HANDOFF, OUTBOUND, SLA):
        assert await read_all(deployment, deployment.topic(topic)) == [], topic.name
    _, metrics = router.get("/metrics")
    for channel in ("chat", "phone", "x"):
        assert f'sb_probe_seconds_count{{channel="{channel}"}}' in metrics
        assert f'sb_messages_in_total{{channel="{channel}",stage="intake"}}' not in metrics


async def test_one_of_two_edges_probes_a_silent_x_red_on_both_and_first_replies_by_handle_and_agent(
        deployment: Settings, launch: Launch, x: XEmulator, tmp_path: Path) -> None:
    # no polling, and X delivers to no webhook here: the probe's mention is never read
    env = {"SB_CHAT": "{}", **x_env(x, poll=False), "SB_PROBE_INTERVAL_SECONDS": "1",
           "SB_PROBE_TIMEOUT_SECONDS": "3"}
    edges = [launch("run", **env), launch("run", **env)]
    await until_verdicts(deployment, lambda f: has("silent", "x")(f) and has("passed", "chat")(f),
                         "no silent X probe beside a passing chat probe", timeout=120)
    assert not x.deleted, "a silent probe's post stays, for an operator to look at"
    # one edge holds each channel's lease and probes it; the other only watches
    lease = Redis.from_url(deployment.redis_dsn)
    try:
        holder = (await lease.get(f"{deployment.topic_prefix}sb:probe:lease:x") or b"").decode()
    finally:
        await lease.aclose()
    [prober] = [e for e in edges if e.proc is not None and f":{e.proc.pid}:" in holder]
    [router] = [e for e in edges if e is not prober]
    await until(lambda: said(router, "another edge probes this channel", "x"), "the other stood not back")
    assert said(prober, "probing this channel", "x") and not said(router, "probing this channel", "x")
    # a customer's mention, delivered by X's webhook, answered by maria
    mention = x.mention("My parcel never arrived")
    status, _ = await x.deliver(router.url + PATH, x.envelope("post.mention.create", mention))
    assert status == 200
    records = await until_records(deployment)
    conversation = decode(records[0].value, RoutedConversation).conversation_id
    status, answer = await router.reply(conversation, "Sorry, it ships today.", author="maria")
    assert status == 202, answer

    # the dashboard of the edge that does not probe X shows it red: verdicts come from the topic
    async with open_page() as page:
        await page.goto(router.url + "/dashboard")
        await page.get_by_label("API token").fill("test-token")
        await page.get_by_role("button", name="Show").click()
        connectors = page.get_by_test_id("connectors")
        await expect(connectors.get_by_role("row", name="x")).to_contain_text("down", timeout=WAIT_MS)
        x_row = connectors.get_by_role("row", name="x")
        await expect(x_row.locator(".pill")).to_have_class("pill down")
        await expect(x_row.locator('td[data-col="probe"] .bad')).to_have_text("silent")
        await expect(connectors.get_by_role("row", name="chat")).not_to_contain_text("down")
        handle = f"x:@{x.handle}"
        await expect(page.get_by_test_id("accounts").get_by_role("row", name=handle)).to_contain_text(
            "1", timeout=WAIT_MS)
        pair = page.get_by_test_id("account-agents").get_by_role("row", name=f"{handle} \N{MIDDLE DOT} maria")
        await expect(pair).to_contain_text("1")
        await page.screenshot(path=str(ARTEFACTS / "dashboard-probes.png"), full_page=True)


def said(edge: Switchboard, message: str, channel: str) -> bool:
    """Whether the edge's log has `message` about `channel`."""
    lines = edge.log_path.read_text(errors="replace").splitlines()
    logged = [json.loads(line) for line in lines if line.startswith("{")]
    return any(m.get("msg") == message and m.get("channel") == channel for m in logged)


async def until_records(settings: Settings) -> list[Any]:
    """The routed topic once the customer's mention is on it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 90
    while not (records := await read_all(settings, settings.topic(ROUTED))):
        assert loop.time() < deadline, "the customer's mention was never routed"
        await asyncio.sleep(0.2)
    return records
