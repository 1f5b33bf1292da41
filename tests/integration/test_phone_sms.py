"""Texts back through the twilio client against the local Twilio: receipts, refusals, retries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiohttp import web

from connectors.phone.outbound import PhoneOutbound
from connectors.phone.settings import PhoneSettings
from schemas.identity import Identity
from schemas.outbound import OutboundMessage
from tests.emulators.twilio import OUR_NUMBER, TwilioEmulator

pytestmark = pytest.mark.integration

ADA = "+4915123456789"
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def reply(text: str = "A technician is on the way.", to: Identity | None = None) -> OutboundMessage:
    return OutboundMessage(reply_id="rep_sms", conversation_id="con_sms", channel="phone",
                           recipient=to or Identity(kind="phone", value=ADA), kind="agent_reply", text=text,
                           created_at=T0, in_reply_to="CA" + "0" * 32)


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioEmulator]:
    emulator = await TwilioEmulator().start()
    yield emulator
    await emulator.stop()


def settings_for(twilio: TwilioEmulator, **more: object) -> PhoneSettings:
    return PhoneSettings.model_validate({
        "account_sid": twilio.account_sid, "auth_token": twilio.auth_token, "from_number": OUR_NUMBER,
        "api_base_url": twilio.base_url, "send_attempts": 3, "backoff_seconds": 0.01, **more})


async def send(settings: PhoneSettings, message: OutboundMessage) -> tuple[str, str | None, str | None]:
    sender = PhoneOutbound(settings)
    await sender.start()
    try:
        receipt = await sender.send(message)
    finally:
        await sender.stop()
        await sender.stop()  # safe twice
    assert (receipt.reply_id, receipt.channel) == ("rep_sms", "phone")
    return receipt.status, receipt.reason, receipt.provider_id


async def test_a_text_is_sent_and_its_receipt_carries_the_sid(twilio: TwilioEmulator) -> None:
    status, reason, sid = await send(settings_for(twilio), reply())
    [sent] = twilio.messages
    assert (status, reason, sid) == ("sent", None, sent.sid)
    assert (sent.to, sent.from_, sent.body) == (ADA, OUR_NUMBER, "A technician is on the way.")


@pytest.mark.parametrize(("code", "meaning"), [
    (21610, "unsubscribed"), (21211, "not a valid phone number"), (30034, "not registered"),
])
async def test_a_refusal_is_a_failed_receipt_with_the_code_and_its_meaning(
        twilio: TwilioEmulator, code: int, meaning: str) -> None:
    twilio.refuse(ADA, code)
    status, reason, sid = await send(settings_for(twilio), reply())
    assert (status, sid) == ("failed", None)
    assert reason is not None and f"({code})" in reason and meaning in reason
    assert twilio.requests == 1  # a refusal is final: never tried again


async def test_too_long_and_bad_credentials_are_refused(twilio: TwilioEmulator) -> None:
    status, reason, _ = await send(settings_for(twilio), reply("x" * 1601))
    assert status == "failed" and reason is not None and "21617" in reason and "1,600" in reason
    status, reason, _ = await send(settings_for(twilio, auth_token="wrong"), reply())
    assert status == "failed" and reason is not None and "20003" in reason
    assert twilio.messages == []


async def test_an_overloaded_api_is_tried_again_within_bounds(twilio: TwilioEmulator) -> None:
    twilio.fail(2, status=503)
    assert (await send(settings_for(twilio), reply()))[0] == "sent"
    assert twilio.requests == 3 and len(twilio.messages) == 1
    twilio.fail(3, status=429)
    status, reason, _ = await send(settings_for(twilio), reply())
    assert status == "failed" and reason is not None and reason.startswith("gave up after 3 attempts")
    assert len(twilio.messages) == 1


async def test_what_cannot_be_texted_is_not_sent(twilio: TwilioEmulator) -> None:
    status, reason, _ = await send(settings_for(twilio, from_number=None), reply())
    assert status == "failed" and reason is not None and "SB_PHONE__FROM_NUMBER" in reason
    email = Identity(kind="email", value="ada@example.com")
    withheld = Identity(kind="phone", value="withheld-CA" + "0" * 32)
    for nobody in (email, withheld):
        status, reason, _ = await send(settings_for(twilio), reply(to=nobody))
        assert status == "failed" and reason is not None and "not a number we can text" in reason
    assert twilio.requests == 0


async def test_a_connection_lost_mid_request_is_uncertain_never_sent_twice() -> None:
    requests = 0

    async def hang_up(request: web.Request) -> web.StreamResponse:
        nonlocal requests
        requests += 1
        await request.read()
        assert request.transport is not None
        request.transport.close()  # took the request, died before answering
        return web.Response()

    app = web.Application()
    app.router.add_post("/2010-04-01/Accounts/{account}/Messages.json", hang_up)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        port = runner.addresses[0][1]
        settings = PhoneSettings(auth_token="t", from_number=OUR_NUMBER, api_base_url=f"http://127.0.0.1:{port}")
        status, reason, _ = await send(settings, reply())
    finally:
        await runner.cleanup()
    assert status == "uncertain" and reason is not None and "not sent again" in reason
    assert requests == 1
