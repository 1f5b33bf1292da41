"""Twilio's voice webhooks on the edge: answer the call, then turn its callbacks into one message.

Every request's `X-Twilio-Signature` is checked against the public base URL before any
parameter is read (signature.py); a bad one is 403, counted. Then:

- `POST {prefix}/voice` — a call: the TwiML greeting (by tier and hours, from the edge's
  outlook) and `<Record>`. A "missed call" item is held for the call, released after
  `missed_call_seconds` unless a recording replaces it: a caller who hangs up before
  the beep is called back.
- `POST {prefix}/recorded` — the `<Record>` action: hang up.
- `POST {prefix}/recording` — recording status: `completed` holds the voicemail until its
  transcript comes (or `transcript_wait_seconds` pass: routed marked "listen to the
  recording"); one that will not be transcribed is routed at once; `absent` settles the
  call as missed.
- `POST {prefix}/transcription` — settles the call with its transcript (or, failed, as
  "listen to the recording"). Came too late? Its own message joins the conversation.

The phone is answered even while Redis is away: the greeting then makes no promise of
time, and the call's callbacks still hold and settle it once Redis is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from aiohttp import web
from prometheus_client import Counter, Histogram

from connectors.phone.errors import BadSignature, PhoneInputError
from connectors.phone.parse import (
    CHANNEL,
    Call,
    Recording,
    late_transcript,
    missed_call,
    read_call,
    read_recording,
    read_transcription,
    voicemail,
)
from connectors.phone.settings import TRANSCRIBED_SECONDS, PhoneSettings
from connectors.phone.signature import verify
from connectors.phone.twiml import answer, hang_up
from connectors.routes import Edge, Outlook, Refusal, Route
from schemas.errors import TransientError
from schemas.ids import held_key
from schemas.inbound import InboundMessage, PhoneExtras

__all__ = ["WEBHOOKS", "PhoneWebhooks", "routes"]

log = logging.getLogger(__name__)
WEBHOOKS = Counter("sb_phone_webhooks_total", "Twilio webhooks, by route and what became of them",
                   ["route", "outcome"])
ANSWER_SECONDS = Histogram("sb_phone_answer_seconds", "Time to answer a call's voice webhook",
                           buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0))
_XML = "text/xml"
T = TypeVar("T")


class PhoneWebhooks:
    """The handlers, bound to the settings, the router's edge and a clock."""

    def __init__(self, settings: PhoneSettings, edge: Edge, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._settings = settings
        self._edge = edge
        self._clock = clock

    async def _form(self, request: web.Request, route: str) -> Mapping[str, str]:
        """The request's parameters once its signature holds; else a Refusal."""
        limit = self._settings.max_body_bytes
        if (request.content_length or 0) > limit:
            raise _refused(route, 413, "too_large", f"body over {limit} bytes")
        raw = await request.read()
        if len(raw) > limit:
            raise _refused(route, 413, "too_large", f"body over {limit} bytes")
        try:
            signed = verify(self._settings, path_qs=request.path_qs, raw=raw,
                            json_body=request.content_type == "application/json", headers=request.headers)
        except BadSignature as e:
            log.warning("phone webhook refused", extra={"route": route, "reason": e.reason})
            raise _refused(route, 403, "bad_signature", e.reason) from e
        if isinstance(signed, str):
            raise _refused(route, 415, "unsupported_media_type", "voice callbacks are form-encoded")
        # the caller rides in our callback URLs (twiml.py), under the same signature
        return {**request.query, **{name: signed[name] for name in signed}}

    async def voice(self, request: web.Request) -> web.Response:
        """Answer a call: greet, record; hold a missed call in case the caller hangs up first."""
        started = time.perf_counter()
        call = _read(read_call, await self._form(request, "voice"), "voice")
        # both Redis round trips at once: the caller is listening to it ring
        outlook, _ = await asyncio.gather(self._outlook(call), self._hold_missed(call))
        WEBHOOKS.labels("voice", "answered").inc()
        ANSWER_SECONDS.observe(time.perf_counter() - started)
        return web.Response(text=answer(outlook, self._settings, call), content_type=_XML)

    async def recorded(self, request: web.Request) -> web.Response:
        """The `<Record>` action: the call is over."""
        await self._form(request, "recorded")
        WEBHOOKS.labels("recorded", "hung_up").inc()
        return web.Response(text=hang_up(), content_type=_XML)

    async def recording(self, request: web.Request) -> web.Response:
        """A recording's status: hold the voicemail for its transcript, or settle the call."""
        recording = _read(read_recording, await self._form(request, "recording"), "recording")
        call, now = recording.call, self._clock()
        key = held_key(CHANNEL, call.call_sid)
        if recording.status != "completed":
            state = await self._edge.settle(key, missed_call(call, received_at=now))
            return _done("recording", f"missed:{state}", call)
        message = voicemail(recording, None, received_at=now)
        if self._transcribed(recording):
            wait = timedelta(seconds=self._settings.transcript_wait_seconds)
            state = await self._edge.hold(key, message, after=wait)
            return _done("recording", f"held:{state}", call)
        state = await self._edge.settle(key, message)
        return _done("recording", f"settled:{state}", call)

    async def transcription(self, request: web.Request) -> web.Response:
        """A transcript: the call's voicemail, settled; a late one is a message of its own."""
        transcription = _read(read_transcription, await self._form(request, "transcription"), "transcription")
        call, now = transcription.call, self._clock()
        key = held_key(CHANNEL, call.call_sid)
        # the transcription callback does not name the recording's length: the held voicemail does
        seconds = _seconds(await self._edge.holding(key))
        recording = Recording(call=call, status="completed", recording_sid=transcription.recording_sid,
                              url=transcription.recording_url, seconds=seconds)
        state = await self._edge.settle(key, voicemail(recording, transcription, received_at=now))
        if state == "released" and transcription.status == "completed" and transcription.text:
            await self._edge.accept(late_transcript(transcription, received_at=now))
            return _done("transcription", "late", call)
        return _done("transcription", f"settled:{state}", call)

    async def _hold_missed(self, call: Call) -> None:
        """A missed call for this call, routed unless a recording replaces it in time."""
        missed = missed_call(call, received_at=self._clock())
        try:
            # a retried voice request must not put the missed call back over a held voicemail
            await self._edge.hold(held_key(CHANNEL, call.call_sid), missed, replace=False,
                                  after=timedelta(seconds=self._settings.missed_call_seconds))
        except TransientError as e:
            # the phone is answered all the same; only a hang-up before the beep goes unseen
            log.warning("phone: could not hold the missed call", extra={"call_sid": call.call_sid,
                                                                      "reason": e.reason})

    def _transcribed(self, recording: Recording) -> bool:
        """Whether a transcript will follow this recording."""
        return self._settings.transcribe and (recording.seconds or 0) <= TRANSCRIBED_SECONDS

    async def _outlook(self, call: Call) -> Outlook | None:
        # a withheld number has no tier: our own number stands in, which no customer has; so
        # does a number the network does not vouch for, which anyone may be spoofing: a
        # stranger must not hear the tier, promise or name of the number's owner
        caller = call.caller if call.verified else None
        try:
            return await self._edge.outlook(CHANNEL, f"phone:{caller or call.to}")
        except TransientError as e:
            log.warning("phone: no outlook, greeting without times", extra={"call_sid": call.call_sid,
                                                                             "reason": e.reason})
        except ValueError as e:  # our own number is not E.164 either: greet plainly
            log.warning("phone: no outlook for this call", extra={"call_sid": call.call_sid,
                                                                    "reason": str(e)})
        return None


def _seconds(held: InboundMessage | None) -> int | None:
    """The recording's length a held voicemail carries, if any."""
    extras = held.extras if held is not None else None
    return extras.recording_seconds if isinstance(extras, PhoneExtras) else None


def _read(reader: Callable[[Mapping[str, str]], T], form: Mapping[str, str], route: str) -> T:
    try:
        return reader(form)
    except PhoneInputError as e:
        raise _refused(route, 400, "invalid", e.reason) from e


def _done(route: str, outcome: str, call: Call) -> web.Response:
    WEBHOOKS.labels(route, outcome.partition(":")[0]).inc()
    log.info("phone %s: %s", route, outcome, extra={"call_sid": call.call_sid})
    return web.Response(text="<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>", content_type=_XML)


def _refused(route: str, status: int, code: str, message: str) -> Refusal:
    WEBHOOKS.labels(route, code).inc()
    return Refusal(status, code, message, field=None)


def routes(settings: PhoneSettings, edge: Edge) -> Sequence[Route]:
    """The phone channel's webhooks under its path prefix."""
    hooks, prefix = PhoneWebhooks(settings, edge), settings.path_prefix
    return (Route("POST", f"{prefix}/voice", hooks.voice),
            Route("POST", f"{prefix}/recorded", hooks.recorded),
            Route("POST", f"{prefix}/recording", hooks.recording),
            Route("POST", f"{prefix}/transcription", hooks.transcription))
