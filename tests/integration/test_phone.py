"""The phone channel's webhooks through the router's real Edge: Redis holds, Kafka takes, Twilio signs.

The edge's clock is the test's: in and out of hours come from the example policy's real
calendar at a chosen instant, and deadlines pass when the test moves the clock and asks
the edge to release what is due (the timer does exactly that every second in a process).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from aiokafka.errors import KafkaError
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from connectors.phone.settings import PhoneSettings
from processors.policy.load import load_policy
from router.edge import Publisher, RouterEdge
from router.http.integrations import Integrations
from router.http.server import build_app, connector_routes
from router.kafka import ensure_topics, new_producer
from router.settings import Settings
from router.vocabulary import VOCABULARY
from schemas import InboundMessage, decode
from schemas.errors import TransientError
from schemas.inbound import PhoneExtras
from schemas.topics import INBOUND
from tests.emulators.twilio import AUTH_TOKEN, Call
from tests.integration.test_slack import topic_known
from tests.kafka_tools import read_all, unique_prefix
from tests.paths import EXAMPLE_POLICY

pytestmark = pytest.mark.integration

BERLIN = ZoneInfo("Europe/Berlin")
MONDAY_MORNING = datetime(2026, 3, 9, 10, 0, tzinfo=BERLIN)
SATURDAY_EVENING = datetime(2026, 3, 7, 20, 0, tzinfo=BERLIN)
PUBLIC = "https://support.example.com"
ADA = "+4915123456789"
POLICY = load_policy(EXAMPLE_POLICY, VOCABULARY)
SECTION = {"auth_token": AUTH_TOKEN, "public_base_url": PUBLIC, "transcript_wait_seconds": 300,
           "missed_call_seconds": 600}


class Clock:
    """The edge's clock, moved by the test."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@dataclass
class Phone:
    settings: Settings
    url: str
    edge: RouterEdge
    clock: Clock
    session: aiohttp.ClientSession
    publish: Publisher

    def call(self, caller: str = ADA, **more: str | None) -> Call:
        return Call(edge_url=self.url, public_url=PUBLIC, caller=caller, **more)  # type: ignore[arg-type]

    async def inbound(self) -> list[InboundMessage]:
        return [decode(r.value, InboundMessage)
                for r in await read_all(self.settings, self.settings.topic(INBOUND))]


@pytest.fixture
async def phone(stack: Settings) -> AsyncIterator[Phone]:
    prefix = unique_prefix()
    settings = stack.model_copy(update={"topic_prefix": prefix, "app_id": f"{prefix}sb",
                                        "sections": {**stack.sections, "phone": SECTION}})
    await ensure_topics(settings)
    await topic_known(settings, settings.topic(INBOUND))
    redis = Redis.from_url(settings.redis_dsn)
    producer = new_producer(settings)
    await producer.start()

    async def publish(topic: str, key: bytes, value: bytes) -> None:
        try:
            await asyncio.wait_for(producer.send_and_wait(topic, value, key=key), 10)
        except (KafkaError, TimeoutError) as e:
            raise TransientError(f"Kafka did not take the message: {e!r}") from e

    clock = Clock(MONDAY_MORNING)
    try:
        async with edge_app(settings, publish, redis, clock) as (edge, url), \
                aiohttp.ClientSession() as session:
            yield Phone(settings, url, edge, clock, session, publish)
    finally:
        await producer.stop()
        await redis.aclose()


@contextlib.asynccontextmanager
async def edge_app(settings: Settings, publish: Publisher, redis: Redis, clock: Clock,
                   timeout: float = 2.0) -> AsyncIterator[tuple[RouterEdge, str]]:
    """The phone routes served through their own RouterEdge: another edge process, as far as state goes."""
    edge = RouterEdge(settings, publish, lambda: redis, lambda: POLICY, Integrations(()), clock=clock,
                      timeout=timeout)
    server = TestServer(build_app(settings, {}, connector_routes(settings, edge)))
    await server.start_server()
    try:
        yield edge, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def counted(route: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("sb_phone_webhooks_total", {"route": route, "outcome": outcome}) or 0.0


async def test_in_hours_the_caller_hears_when_we_call_back(phone: Phone) -> None:
    status, twiml = await phone.call().answer(phone.session)
    assert status == 200
    assert "Thank you for calling support." in twiml
    assert "get back to you by Mon 09 Mar, 18:00 CET" in twiml
    assert '<Record action="https://support.example.com/v1/phone/recorded?' in twiml


async def test_out_of_hours_when_the_line_opens(phone: Phone) -> None:
    phone.clock.at = SATURDAY_EVENING
    _, twiml = await phone.call().answer(phone.session)
    assert "We are closed right now and open again Mon 09 Mar, 08:00 CET" in twiml
    assert "first thing" in twiml


async def test_a_voicemail_and_its_transcript_are_one_message_even_twice(phone: Phone) -> None:
    call = phone.call()
    await call.answer(phone.session)
    assert (await call.record(phone.session, seconds=41))[0] == 200
    assert await phone.inbound() == []  # held for its transcript
    text = "Hi, my router is down since this morning. Order 1234."
    transcribed = call.transcription_params(text)
    for _ in range(2):  # Twilio delivers the same callback twice
        status, _ = await call.post(phone.session, call.named("transcribeCallback"), transcribed)
        assert status == 200
    await call.record(phone.session, seconds=41)  # and the recording's again, after
    [message] = await phone.inbound()
    assert (message.channel, str(message.sender), message.text) == ("phone", f"phone:{ADA}", text)
    assert isinstance(message.extras, PhoneExtras)
    assert (message.extras.call_sid, message.extras.recording_sid, message.extras.transcription_status) == (
        call.call_sid, call.recording_sid, "completed")
    # the transcription callback does not name the length: it is carried over from the held voicemail
    assert message.extras.recording_seconds == 41
    assert message.extras.caller_verified and message.tags == ()
    phone.clock.at += timedelta(hours=1)
    assert await phone.edge.release_due() == 0  # nothing left behind to route later


async def test_a_transcript_before_its_recording_is_the_message(phone: Phone) -> None:
    call = phone.call()
    await call.answer(phone.session)
    await call.transcribe(phone.session, "Please call me back about my invoice.")
    await call.record(phone.session)
    [message] = await phone.inbound()
    assert message.text == "Please call me back about my invoice."


async def test_no_transcript_in_time_routes_it_to_listen_to_and_a_late_one_follows(phone: Phone) -> None:
    call = phone.call()
    await call.answer(phone.session)
    await call.record(phone.session, seconds=12)
    phone.clock.at += timedelta(seconds=299)
    assert await phone.edge.release_due() == 0
    phone.clock.at += timedelta(seconds=2)
    assert await phone.edge.release_due() == 1
    [first] = await phone.inbound()
    assert "Voicemail (12 s) without a transcript (no transcript came in time): listen to the recording" \
        in first.text
    assert "listen_to_recording" in first.tags and first.raw_ref == call.recording_url
    await call.transcribe(phone.session, "It's Ada again about order 1234.")
    [_, late] = await phone.inbound()
    assert late.text == "Transcript of the voicemail routed earlier: It's Ada again about order 1234."
    assert late.thread_key == first.thread_key and late.event_id != first.event_id


async def test_a_failed_transcript_is_routed_at_once_to_listen_to(phone: Phone) -> None:
    call = phone.call()
    await call.answer(phone.session)
    await call.record(phone.session)
    await call.transcribe(phone.session, "", status="failed")
    [message] = await phone.inbound()
    assert "the transcription failed" in message.text and "listen_to_recording" in message.tags


async def test_hanging_up_before_the_beep_is_a_missed_call_to_return(phone: Phone) -> None:
    call = phone.call()
    await call.answer(phone.session)  # and then nothing: no recording, no callback
    phone.clock.at += timedelta(seconds=601)
    assert await phone.edge.release_due() == 1
    [message] = await phone.inbound()
    assert message.text.startswith(f"Missed call from {ADA} at ") and "call them back" in message.text
    assert message.tags == ("missed_call",)
    silent = phone.call()
    await silent.answer(phone.session)
    await silent.record(phone.session, status="absent")  # the beep, then silence
    [_, absent] = await phone.inbound()
    assert absent.tags == ("missed_call",) and absent.extras is not None


async def test_a_retried_voice_request_keeps_the_held_voicemail(phone: Phone) -> None:
    call = phone.call()
    await call.answer(phone.session)
    await call.record(phone.session, seconds=8)
    await call.answer(phone.session)  # Twilio asks again for the same call
    phone.clock.at += timedelta(seconds=601)
    assert await phone.edge.release_due() == 1
    [message] = await phone.inbound()
    assert message.text.startswith("Voicemail (8 s) without a transcript")


async def test_an_unattested_caller_is_marked_not_verified(phone: Phone) -> None:
    call = phone.call(stir_verstat="TN-Validation-Passed-B")
    await call.answer(phone.session)
    await call.record(phone.session)
    await call.transcribe(phone.session, "It's me again.")
    [message] = await phone.inbound()
    assert message.text == "[caller not verified: STIR/SHAKEN TN-Validation-Passed-B] It's me again."
    assert "caller_not_verified" in message.tags


async def test_a_bad_signature_is_refused_403_and_counted(phone: Phone) -> None:
    call = phone.call()
    before = counted("voice", "bad_signature")
    wrong_token = await call.answer(phone.session, token="not-our-token")
    behind_proxy = await call.answer(phone.session, signed_url=phone.url + "/v1/phone/voice")
    assert wrong_token[0] == behind_proxy[0] == 403
    assert counted("voice", "bad_signature") == before + 2
    async with phone.session.post(phone.url + "/v1/phone/recording", data=b"CallSid=CA1") as bare:
        assert bare.status == 403 and (await bare.json())["error"]["code"] == "bad_signature"
    phone.clock.at += timedelta(hours=1)
    assert await phone.edge.release_due() == 0 and await phone.inbound() == []


async def test_a_restart_between_the_two_callbacks_loses_nothing(phone: Phone) -> None:
    call = phone.call()
    await call.answer(phone.session)
    await call.record(phone.session)
    # another edge process, with nothing in memory: the transcript settles what Redis held
    redis = Redis.from_url(phone.settings.redis_dsn)
    published: list[bytes] = []

    async def publish(topic: str, key: bytes, value: bytes) -> None:
        published.append(value)

    try:
        async with edge_app(phone.settings, publish, redis, phone.clock) as (_, call.edge_url):
            await call.transcribe(phone.session, "Still no internet.")
    finally:
        await redis.aclose()
    [message] = [decode(v, InboundMessage) for v in published]
    assert message.text == "Still no internet." and message.extras is not None
    phone.clock.at += timedelta(hours=1)
    assert await phone.edge.release_due() == 0


async def test_with_redis_away_the_phone_is_still_answered(phone: Phone) -> None:
    away = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    call = phone.call()
    try:
        async with edge_app(phone.settings, phone.publish, away, phone.clock,
                            timeout=0.5) as (_, call.edge_url):
            status, twiml = await call.answer(phone.session)
            assert status == 200 and "Please leave a message after the tone" in twiml and "<Record" in twiml
            status, _ = await call.record(phone.session)
            assert status == 503  # Twilio is told to come back; nothing is taken that cannot be kept
    finally:
        await away.aclose()


async def test_kafka_refusing_the_transcript_loses_nothing(phone: Phone) -> None:
    call = phone.call()
    await call.answer(phone.session)
    await call.record(phone.session)
    refusals = [TransientError("Kafka away")]

    async def flaky(topic: str, key: bytes, value: bytes) -> None:
        if refusals:
            raise refusals.pop()
        await phone.publish(topic, key, value)

    redis = Redis.from_url(phone.settings.redis_dsn)
    try:
        async with edge_app(phone.settings, flaky, redis, phone.clock) as (_, call.edge_url):
            assert (await call.transcribe(phone.session, "Are you there?"))[0] == 503  # Twilio may retry
    finally:
        await redis.aclose()
    assert await phone.inbound() == []
    phone.clock.at += timedelta(seconds=31)  # the settle's lease runs out: the timer has it
    assert await phone.edge.release_due() == 1
    [message] = await phone.inbound()
    assert message.text == "Are you there?"


async def test_the_record_action_hangs_up(phone: Phone) -> None:
    call = phone.call()
    await call.answer(phone.session)
    status, twiml = await call.post(phone.session, call.named("action"), call.params("in-progress") | {
        "RecordingUrl": call.recording_url, "RecordingDuration": "12", "Digits": "hangup"})
    assert status == 200 and twiml.endswith("<Response><Hangup /></Response>")


def test_the_section_is_validated() -> None:
    assert PhoneSettings.model_validate(SECTION).public_base_url == PUBLIC
