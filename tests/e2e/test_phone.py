"""The phone channel end to end: Twilio's webhooks → switchboard run (+ a worker) → Kafka → texts back.

The calls come from the Twilio emulator, signed for the public URL the edge is configured
with (as behind a proxy: the process itself listens elsewhere). In or out of hours is the
policy's calendar — open at every minute, or closed on every day of these years — never
the wall clock.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from router.settings import Settings
from schemas import DeliveryReceipt, decode
from schemas.inbound import PhoneExtras
from schemas.topics import DELIVERY
from tests.e2e.test_email import routed
from tests.emulators.twilio import OUR_NUMBER, Call, TwilioEmulator
from tests.kafka_tools import read_all, wait_drained
from tests.policies import ALWAYS_OPEN, example_policy
from tests.processes import Switchboard
from tests.receivers.webhook import WebhookReceiver
from tests.waiting import POLL_SECONDS, until

pytestmark = pytest.mark.e2e
Launch = Callable[..., Switchboard]
PUBLIC = "https://support.example.com"
ADA, BOB, CAROL = "+4915123456789", "+4917612345678", "+4916098765432"
# holidays on every day of eight years: the team is closed whenever the suite runs
_DAYS = [date(2026, 1, 1) + timedelta(days=n) for n in range(8 * 365 + 2)]
ALWAYS_CLOSED = ALWAYS_OPEN.replace("holidays: []", f"holidays: [{', '.join(map(str, _DAYS))}]")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def phone_env(twilio: TwilioEmulator, **more: float) -> dict[str, str]:
    section = {"account_sid": twilio.account_sid, "auth_token": twilio.auth_token, "public_base_url": PUBLIC,
               "from_number": OUR_NUMBER, "api_base_url": twilio.base_url, "send_attempts": 2,
               "transcript_wait_seconds": 2, "missed_call_seconds": 3, **more}
    return {"SB_PHONE": json.dumps(section)}


def call(edge: Switchboard, caller: str, **more: str | None) -> Call:
    return Call(edge_url=edge.url, public_url=PUBLIC, caller=caller, **more)  # type: ignore[arg-type]


async def receipts(settings: Settings) -> list[DeliveryReceipt]:
    return [decode(r.value, DeliveryReceipt) for r in await read_all(settings, settings.topic(DELIVERY))]


async def test_calls_in_hours_are_routed_with_their_transcript_and_texted_back(
        deployment: Settings, launch: Launch, twilio: TwilioEmulator, session: aiohttp.ClientSession) -> None:
    env = phone_env(twilio)
    edge = launch("run", **env)
    launch("worker", **env)
    directory = f"identity,tier,name\n{ADA},premium,Ada Lovelace\n".encode()
    status, _ = edge.post("/v1/customers/import", directory, headers={"Content-Type": "text/csv"})
    assert status == 200

    ada = call(edge, ADA)
    status, twiml = await ada.answer(session)
    assert status == 200
    assert "As a premium customer, your message goes first." in twiml
    assert "We will call you back by" in twiml  # the example policy calls premium callers back
    assert 'maxLength="120"' in twiml and 'transcribe="true"' in twiml
    assert (await ada.record(session, seconds=31))[0] == 200
    assert (await ada.transcribe(session, "My fibre line is down since 8, order 1234."))[0] == 200
    assert (await ada.transcribe(session, "My fibre line is down since 8, order 1234."))[0] == 200  # again

    [first] = await routed(deployment, 1)
    message = first.message
    assert (message.channel, str(message.sender), message.text) == (
        "phone", f"phone:{ADA}", "My fibre line is down since 8, order 1234.")
    assert isinstance(message.extras, PhoneExtras) and message.extras.recording_sid == ada.recording_sid
    assert first.tier == "premium"
    assert any("tier=premium" in reason for d in first.decisions for reason in d.reasons)

    # a badly signed request: refused, nothing routed
    forged = call(edge, ADA)
    assert (await forged.answer(session, token="not-the-auth-token"))[0] == 403

    # Ada calls again, and this time the network does not vouch for her number
    again = call(edge, ADA, stir_verstat="TN-Validation-Passed-C")
    _, unvouched = await again.answer(session)
    # ...so the greeting may be a stranger's: not her tier, not her call-back promise
    assert "premium" not in unvouched and "call you back" not in unvouched
    assert "Thank you for calling support." in unvouched
    await again.record(session)
    await again.transcribe(session, "It's me again, still nothing.")
    second = (await routed(deployment, 2))[1]
    assert second.conversation_id == first.conversation_id
    assert second.message.text == "[caller not verified: STIR/SHAKEN TN-Validation-Passed-C] " \
                                  "It's me again, still nothing."

    # the agent answers: a text to Ada, a receipt with its SID
    status, body = edge.post(f"/v1/conversations/{first.conversation_id}/replies",
                             json.dumps({"text": "A technician is on the way.", "author": "maria"}).encode())
    assert status == 202, body
    texts = await until(lambda: twilio.messages, "no reply reached Twilio")
    [sms] = [m for m in texts if m.body == "A technician is on the way."]
    assert (sms.to, sms.from_) == (ADA, OUR_NUMBER)
    done = await _receipt(deployment, body["reply_id"])
    assert (done.status, done.provider_id, done.channel) == ("sent", sms.sid, "phone")

    # Bob has texted STOP once: Twilio refuses, the agent gets the reason
    twilio.refuse(BOB, 21610)
    bob = call(edge, BOB)
    await bob.answer(session)
    await bob.record(session)
    await bob.transcribe(session, "Please call me about my bill.")
    # read_all gives partitions one after another: Bob's is found by his number, not by order
    [third] = [r for r in await routed(deployment, 3) if str(r.message.sender) == f"phone:{BOB}"]
    status, body = await edge.reply(third.conversation_id, "We will call you at 3.")
    assert status == 202
    refused = await _receipt(deployment, body["reply_id"])
    assert refused.status == "failed" and refused.reason is not None
    assert "21610" in refused.reason and "unsubscribed" in refused.reason
    await wait_drained(deployment)
    assert len(twilio.messages) == 1, "Ada's reply once (she is called back: no acknowledgement), none to Bob"


async def _receipt(settings: Settings, reply_id: str, timeout: float = 60) -> DeliveryReceipt:
    """Wait for the receipt of one reply."""
    deadline = time.monotonic() + timeout
    while not (found := [r for r in await receipts(settings) if r.reply_id == reply_id]):
        assert time.monotonic() < deadline, f"no receipt for {reply_id}"
        await asyncio.sleep(POLL_SECONDS)
    return found[0]


async def test_out_of_hours_a_voicemail_without_transcript_and_a_missed_call_are_routed(
        deployment: Settings, launch: Launch, twilio: TwilioEmulator, session: aiohttp.ClientSession,
        tmp_path: Path) -> None:
    closed = example_policy(tmp_path, {ALWAYS_OPEN: ALWAYS_CLOSED})
    edge = launch("run", SB_POLICY_FILE=str(closed), **phone_env(twilio))
    ada = call(edge, ADA)
    _, twiml = await ada.answer(session)
    assert "We are closed right now and open again" in twiml and "first thing" in twiml
    await ada.record(session, seconds=17)  # and Twilio never sends the transcript

    bob = call(edge, BOB)
    await bob.answer(session)  # hangs up during the greeting: nothing more comes

    found = await routed(deployment, 2)
    by_caller = {str(r.message.sender): r for r in found}
    voicemail, missed = by_caller[f"phone:{ADA}"], by_caller[f"phone:{BOB}"]
    assert voicemail.message.text.startswith("Voicemail (17 s) without a transcript (no transcript came in "
                                             "time): listen to the recording at https://api.twilio.com/")
    assert "listen_to_recording" in voicemail.message.tags
    assert missed.message.tags == ("missed_call",) and "call them back" in missed.message.text
    assert missed.first_response_due > missed.routed_at


async def test_killed_between_the_two_callbacks_the_voicemail_is_one_message(
        deployment: Settings, launch: Launch, twilio: TwilioEmulator, session: aiohttp.ClientSession) -> None:
    env = phone_env(twilio, transcript_wait_seconds=120, missed_call_seconds=120)
    first = launch("run", **env)
    ada = call(edge=first, caller=ADA)
    await ada.answer(session)
    assert (await ada.record(session, seconds=9))[0] == 200
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    second = launch("run", **env)
    ada.edge_url = second.url
    assert (await ada.transcribe(session, "Call me back please, it is urgent."))[0] == 200
    [only] = await routed(deployment, 1)
    assert only.message.text == "Call me back please, it is urgent."
    await wait_drained(deployment)
    assert len(await routed(deployment, 1)) == 1, "the voicemail was routed twice"


HOOK_SECRET = "phone-hook-secret"


def tool_policy(tmp_path: Path, hook_url: str) -> Path:
    """The example policy (premium callers called back, standard ones texted), delivering to our hook."""
    return example_policy(tmp_path, {
        "url: http://127.0.0.1:18090/switchboard": f"url: {hook_url}",
        "destinations: [helpdesk-webhook, slack-support]": "destinations: [helpdesk-webhook]"})


def delivered(receiver: WebhookReceiver, caller: str) -> list[dict[str, Any]]:
    return [d.body for d in receiver.deliveries if d.event == "conversation.routed"
            and d.body["routed"]["message"]["sender"]["value"] == caller]


async def test_premium_callers_are_called_back_by_their_sla_and_standard_callers_texted_back(
        deployment: Settings, launch: Launch, twilio: TwilioEmulator, session: aiohttp.ClientSession,
        tmp_path: Path) -> None:
    async with WebhookReceiver(HOOK_SECRET.encode()) as receiver:
        env = {**phone_env(twilio), "SB_POLICY_FILE": str(tool_policy(tmp_path, receiver.url)),
               "SB_WEBHOOK_SECRET": HOOK_SECRET}
        edge = launch("run", **env)
        launch("worker", **env)
        directory = f"identity,tier,name\n{ADA},premium,Ada Lovelace\n".encode()
        assert edge.post("/v1/customers/import", directory, headers={"Content-Type": "text/csv"})[0] == 200

        ada, carol = call(edge, ADA), call(edge, CAROL)
        ada_twiml, carol_twiml = (await ada.answer(session))[1], (await carol.answer(session))[1]
        assert "We will call you back by" in ada_twiml
        assert "Someone from our team will get back to you by" in carol_twiml
        for caller, words in ((ada, "The router is dead, call me please."), (carol, "Where is my order?")):
            await caller.record(session)
            await caller.transcribe(session, words)

        # the team's tool: Ada's is a call to make, with her number and the premium SLA's due time
        [task] = await until(lambda: delivered(receiver, ADA), "Ada's call never reached the team")
        routed, card = task["routed"], task["conversation"]
        assert (routed["tier"], routed["reply_mode"]) == ("premium", "callback")
        assert routed["callback"] == {"number": ADA, "due": routed["first_response_due"]}
        assert card["callback"] == routed["callback"]
        assert any(r.startswith("reply_mode=callback: tier premium on phone is called back")
                   for d in routed["decisions"] for r in d["reasons"])
        [texted] = await until(lambda: delivered(receiver, CAROL), "Carol's call never reached the team")
        assert (texted["routed"]["reply_mode"], texted["routed"]["callback"]) == ("text", None)

        # Carol is texted back; Ada is not: her answer is the call
        [ack] = await until(lambda: [m for m in twilio.messages if m.to == CAROL], "Carol not texted back")
        assert ack.body.startswith("Thanks for calling, there. We'll get back to you by")

        # the agent calls Ada, then marks it: the call is the first response, in her history
        conversation = card["conversation_id"]
        status, body = edge.post(f"/v1/conversations/{conversation}/callback",
                                 json.dumps({"author": "maria", "note": "router replaced"}).encode())
        assert (status, body["kind"]) == (202, "called_back"), body

        def called_back() -> list[dict[str, Any]]:
            view = edge.get(f"/v1/conversations/{conversation}")[1] or {"history": []}
            return [h for h in view["history"] if h["summary"] == "called back by maria: router replaced"]
        [line] = await until(called_back, "the call back was never applied")
        assert (line["direction"], line["agent"]) == ("out", "maria")
        # Carol's conversation has no call to mark
        status, body = edge.post(f"/v1/conversations/{texted['conversation']['conversation_id']}/callback",
                                 b"{}")
        assert (status, body["error"]["code"]) == (409, "no_callback")
        await wait_drained(deployment)
        assert [m.to for m in twilio.messages] == [CAROL], "Ada was texted, or Carol twice"
