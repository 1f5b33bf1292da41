"""The X channel end to end: the local X's webhook → switchboard run → Kafka → the team's webhook →
an agent's reply through the conversations API → tweepy → the local X, in the thread or by DM.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from connectors.twitter.webhook import PATH
from router.settings import Settings
from schemas import RoutedConversation, decode
from schemas.topics import ROUTED
from tests.emulators.x import ADA, XEmulator
from tests.kafka_tools import read_all
from tests.policies import example_policy
from tests.processes import Switchboard
from tests.receivers.webhook import WebhookReceiver
from tests.waiting import POLL_SECONDS, until

pytestmark = pytest.mark.e2e
Launch = Callable[..., Switchboard]
SECRET = "x-e2e-hook-secret"
T = TypeVar("T")
# a loaded 2-core machine runs several processes per test: conditions get two minutes
WAIT = 120


@pytest.fixture
async def team() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver(SECRET.encode()) as receiver:
        yield receiver


def x_env(x: XEmulator, **more: Any) -> dict[str, str]:
    return {"SB_X": json.dumps({
        "account_id": x.account, "handle": x.handle, "consumer_key": x.consumer_key,
        "consumer_secret": x.consumer_secret, "access_token": x.access_token,
        "access_token_secret": x.access_token_secret, "base_url": x.base_url, **more})}


def start(launch: Launch, x: XEmulator, team: WebhookReceiver, tmp_path: Path, **more: Any) -> Switchboard:
    """`switchboard run` with the X channel, its social queue delivering to our team's webhook."""
    policy = example_policy(tmp_path, {
        "url: http://127.0.0.1:18090/switchboard": f"url: {team.url}",
        "destinations: [slack-social]": "destinations: [helpdesk-webhook]"})
    return launch("run", **x_env(x, **more), SB_POLICY_FILE=str(policy), SB_WEBHOOK_SECRET=SECRET)


def routed(team: WebhookReceiver) -> list[dict[str, Any]]:
    return [d.body for d in team.deliveries if d.event == "conversation.routed"]


def metric(router: Switchboard, line: str) -> float:
    with urllib.request.urlopen(router.url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(row.rsplit(" ", 1)[1]) for row in text.splitlines() if row.startswith(line))


async def until_async(read: Callable[[], Awaitable[T]], done: Callable[[T], bool], what: str,
                      timeout: float = 60) -> T:
    """`until` for a check that must await: read, test, wait a poll period, by a deadline."""
    deadline = time.monotonic() + timeout
    while not done(found := await read()):
        assert time.monotonic() < deadline, what
        await asyncio.sleep(POLL_SECONDS)
    return found


async def answer(router: Switchboard, conversation: str, text: str, key: str,
                 author: str = "maria") -> dict[str, Any]:
    status, queued = router.post(f"/v1/conversations/{conversation}/replies",
                                 json.dumps({"text": text, "author": author}).encode(),
                                 headers={"Idempotency-Key": key})
    assert status == 202, queued
    return dict(queued)


async def test_a_mention_is_routed_and_answered_in_its_thread(
        launch: Launch, x: XEmulator, team: WebhookReceiver, tmp_path: Path) -> None:
    router = start(launch, x, team, tmp_path)
    assert await x.crc(router.url + PATH)
    mention = x.mention("my parcel never arrived, two weeks now")
    status, _ = await x.deliver(router.url + PATH, x.envelope("post.mention.create", mention))
    assert status == 200

    [delivered] = await until(lambda: routed(team), "the mention never reached the team", timeout=WAIT)
    message = delivered["routed"]["message"]
    assert message["sender"] == {"kind": "xid", "value": ADA} and message["tags"] == ["public"]
    assert message["extras"]["handle"] == "ada_x"
    assert message["extras"]["conversation_id"] == mention["conversation_id"]
    assert delivered["routed"]["queue"] == "social"
    # a public complaint is visibly more urgent: the policy's `public` tag rule fired
    reasons = [r for d in delivered["routed"]["decisions"] for r in d["reasons"]]
    assert any("rule public-mention" in r for r in reasons), reasons

    conversation = delivered["conversation"]["conversation_id"]
    queued = await answer(router, conversation, "Sorry Ada! A new parcel left today.", "x-1")
    [reply] = await until(lambda: [s for s in x.sent if "new parcel" in s.text], "no reply reached X",
                          timeout=WAIT)
    assert (reply.kind, reply.in_reply_to) == ("post", mention["id"])
    receipts = await until(lambda: [d.body for d in team.deliveries if d.event == "reply.receipt"
                                    and d.body["receipt"]["reply_id"] == queued["reply_id"]],
                           "no receipt for the agent", timeout=WAIT)
    assert receipts[0]["receipt"]["status"] == "sent"
    assert receipts[0]["receipt"]["provider_id"] == reply.id
    first = 'sb_first_reply_business_seconds_count{agent="maria",channel="x",queue="social"}'
    assert await until(lambda: metric(router, first) == 1, "time to first reply was not measured",
                       timeout=WAIT)

    # she answers in the thread without @mentioning us: same conversation, and X would
    # refuse a public reply to it, so the answer goes by DM; Tom answering Maria's
    # customer is warned in his tool
    follow_up = x.mention("still nothing today", reply_to=reply.id, mentions_us=False)
    status, _ = await x.deliver(router.url + PATH, x.envelope("post.reply.create", follow_up))
    assert status == 200
    both = await until(lambda: routed(team)[1:] and routed(team), "the follow-up never reached the team",
                       timeout=WAIT)
    assert both[1]["conversation"]["conversation_id"] == conversation
    await until(lambda: router.get(f"/v1/conversations/{conversation}")[1]["card"]["agent"] == "maria",
                "maria never became the conversation's agent", timeout=WAIT)
    queued = await answer(router, conversation, "Checking with the courier now.", "x-3", author="tom")
    [dm] = await until(lambda: [s for s in x.sent if s.text == "Checking with the courier now."],
                       "the answer to the follow-up never reached X", timeout=WAIT)
    assert (dm.kind, dm.recipient) == ("dm", ADA)
    [told] = await until(lambda: [d.body["receipt"] for d in team.deliveries if d.event == "reply.receipt"
                                  and d.body["receipt"]["reply_id"] == queued["reply_id"]],
                         "no receipt for tom", timeout=WAIT)
    assert [(f["rule"], f["matched"]) for f in told["flags"]] == [("collision", ["maria"])]


async def test_a_spent_rate_limit_window_is_waited_out_and_each_reply_sent_once(
        launch: Launch, x: XEmulator, team: WebhookReceiver, tmp_path: Path) -> None:
    router = start(launch, x, team, tmp_path)
    mention = x.mention("where is my refund")
    await x.deliver(router.url + PATH, x.envelope("post.mention.create", mention))
    [delivered] = await until(lambda: routed(team), "the mention never reached the team", timeout=WAIT)
    conversation = delivered["conversation"]["conversation_id"]
    await until(lambda: x.calls.count("post") >= 1, "the acknowledgement never went out", timeout=WAIT)
    x.limit("post", 1, reset_in=10)  # one answer now, the next after the window resets
    for n, text in enumerate(("Looking into it.", "Refund issued today.")):
        await answer(router, conversation, text, f"x-limit-{n}")
    await until(lambda: [s for s in x.sent if s.text == "Refund issued today."],
                "the second reply never came", timeout=WAIT)
    texts = [s.text for s in x.sent if s.kind == "post"]
    assert texts.count("Looking into it.") == 1 and texts.count("Refund issued today.") == 1
    assert metric(router, 'sb_x_rate_limit_waits_total{endpoint="post"}') >= 1


async def test_a_dm_is_answered_by_dm_and_bad_signatures_are_refused(
        launch: Launch, x: XEmulator, team: WebhookReceiver, tmp_path: Path) -> None:
    router = start(launch, x, team, tmp_path)
    dm = x.dm("my account is locked")
    envelope = x.envelope("dm.received", dm)
    before = metric(router, 'sb_x_webhook_total{outcome="bad_signature"}')
    status, body = await x.deliver(router.url + PATH, envelope, signature="sha256=" + "A" * 43 + "=")
    assert status == 401 and body["error"]["code"] == "bad_signature"
    assert metric(router, 'sb_x_webhook_total{outcome="bad_signature"}') == before + 1
    status, _ = await x.deliver(router.url + PATH, envelope)
    assert status == 200

    [delivered] = await until(lambda: routed(team), "the DM never reached the team", timeout=WAIT)
    assert delivered["routed"]["message"]["tags"] == ["dm"]
    await answer(router, delivered["conversation"]["conversation_id"], "Unlocked, try again.", "x-2")
    [sent] = await until(lambda: [s for s in x.sent if s.text == "Unlocked, try again."], "no DM reached X",
                         timeout=WAIT)
    assert (sent.kind, sent.recipient) == ("dm", ADA)


def routed_posts(found: list[RoutedConversation]) -> list[str]:
    return [r.message.native_id for r in found if r.message.channel == "x"]


async def test_killed_mid_poll_every_mention_is_routed_exactly_once(
        launch: Launch, deployment: Settings, x: XEmulator) -> None:
    env = {**x_env(x)}
    env["SB_X"] = json.dumps({**json.loads(env["SB_X"]), "poll": True})
    router = launch("run", **env)
    first = x.mention("one")

    async def routed_now() -> list[RoutedConversation]:
        records = await read_all(deployment, deployment.topic(ROUTED))
        return [decode(r.value, RoutedConversation) for r in records]

    await until_async(routed_now, lambda found: first["id"] in routed_posts(found),
                      "the first mention was never polled")
    x.stall("mentions")
    calls = x.calls.count("mentions")
    later = [x.mention("two"), x.mention("three")]
    await until(lambda: x.calls.count("mentions") > calls, "no poll was in flight", timeout=WAIT)
    router.stop(signal.SIGKILL)  # killed while the poll waits for X
    x.unstall()
    launch("run", **env)
    wanted = {first["id"], *(m["id"] for m in later)}
    # the new process waits for Kafka to give up on the killed one's partitions first
    found = await until_async(routed_now, lambda found: wanted <= set(routed_posts(found)),
                              "the mentions after the kill were never routed", timeout=120)
    assert sorted(routed_posts(found)) == sorted(wanted)


async def test_killed_mid_send_a_reply_is_never_posted_twice(
        launch: Launch, x: XEmulator, team: WebhookReceiver, tmp_path: Path) -> None:
    router = start(launch, x, team, tmp_path)
    mention = x.mention("my card was charged twice")
    await x.deliver(router.url + PATH, x.envelope("post.mention.create", mention))
    [delivered] = await until(lambda: routed(team), "the mention never reached the team", timeout=WAIT)
    await until(lambda: x.calls.count("post") >= 1, "the acknowledgement never went out", timeout=WAIT)
    x.stall("post")
    queued = await answer(router, delivered["conversation"]["conversation_id"], "Refunding one now.", "x-k")
    await until(lambda: [s for s in x.sent if s.text == "Refunding one now."], "the reply never reached X",
                timeout=WAIT)
    router.stop(signal.SIGKILL)  # X has the post; its answer never reached us
    x.unstall()
    start(launch, x, team, tmp_path)
    receipts = await until(lambda: [d.body["receipt"] for d in team.deliveries if d.event == "reply.receipt"
                                    and d.body["receipt"]["reply_id"] == queued["reply_id"]],
                           "no receipt after the restart", timeout=120)
    assert receipts[0]["status"] == "uncertain"
    assert [s.text for s in x.sent].count("Refunding one now.") == 1


def receipts_of(team: WebhookReceiver, reply_id: str) -> list[dict[str, Any]]:
    return [d.body["receipt"] for d in team.deliveries
            if d.event == "reply.receipt" and d.body["receipt"]["reply_id"] == reply_id]


async def test_a_24_hour_cap_defers_the_reply_past_a_restart_and_sends_it_once(
        launch: Launch, x: XEmulator, team: WebhookReceiver, tmp_path: Path) -> None:
    # no wait in the process at all: anything over the limit is deferred to the send stage
    router = start(launch, x, team, tmp_path, max_wait_seconds=0)
    dm = x.dm("my account is locked")
    await x.deliver(router.url + PATH, x.envelope("dm.received", dm))
    [delivered] = await until(lambda: routed(team), "the DM never reached the team", timeout=WAIT)
    conversation = delivered["conversation"]["conversation_id"]
    await until(lambda: x.calls.count("dm_send") >= 1, "the acknowledgement never went out", timeout=WAIT)
    x.limit("dm_send", 15, per_day=1, day_reset_in=30)  # one DM left today; the day resets in 30 s
    first = await answer(router, conversation, "Unlocking it now.", "x-cap-1")
    second = await answer(router, conversation, "Unlocked, try again.", "x-cap-2")
    [told] = await until(lambda: receipts_of(team, second["reply_id"]), "no deferred receipt", timeout=WAIT)
    assert told["status"] == "deferred" and told["retry_at"], told
    router.stop(signal.SIGKILL)  # the deferred reply lives in Redis, not in the process
    start(launch, x, team, tmp_path, max_wait_seconds=0)
    sent = await until(lambda: [r for r in receipts_of(team, second["reply_id"]) if r["status"] == "sent"],
                       "the deferred reply was never sent", timeout=WAIT)
    assert sent[0]["provider_id"].startswith("dm:")
    texts = [s.text for s in x.sent]
    assert texts.count("Unlocking it now.") == 1 and texts.count("Unlocked, try again.") == 1
    assert [r["status"] for r in receipts_of(team, first["reply_id"])][:1] == ["sent"]


async def test_the_policy_moves_account_details_to_dm_with_a_public_note(
        launch: Launch, x: XEmulator, team: WebhookReceiver, tmp_path: Path) -> None:
    router = start(launch, x, team, tmp_path)
    mention = x.mention("you billed me twice")
    await x.deliver(router.url + PATH, x.envelope("post.mention.create", mention))
    [delivered] = await until(lambda: routed(team), "the mention never reached the team", timeout=WAIT)
    queued = await answer(router, delivered["conversation"]["conversation_id"],
                          "Your invoice INV-7 is corrected, the second charge is returned.", "x-private")
    [told] = await until(lambda: receipts_of(team, queued["reply_id"]), "no receipt", timeout=WAIT)
    assert told["status"] == "sent" and "account-details-in-private" in told["reason"], told
    [dm] = [s for s in x.sent if s.text.startswith("Your invoice INV-7")]
    assert (dm.kind, dm.recipient) == ("dm", ADA) and told["provider_id"] == f"dm:{dm.id}"
    [note] = [s for s in x.sent if s.text == "We've answered you in a private message."]
    assert (note.kind, note.in_reply_to) == ("post", mention["id"])
