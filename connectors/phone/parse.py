"""Twilio's voice webhooks and callbacks, read into calls and voicemails; pure, no I/O.

Every item of one call — the voicemail with its transcript, the voicemail without one,
the missed call — has the same event id (from the CallSid): whichever reaches the
inbound topic first is the call's one message, and a second is a duplicate intake drops.
A transcript that comes after its voicemail was routed without one is a message of its
own (its id from the TranscriptionSid) in the same conversation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from connectors.phone.errors import PhoneInputError
from schemas.identity import Identity
from schemas.ids import inbound_event_id
from schemas.inbound import InboundMessage, PhoneExtras, ReplyRef

__all__ = [
    "CHANNEL",
    "NOT_VERIFIED",
    "Call",
    "Recording",
    "Transcription",
    "late_transcript",
    "missed_call",
    "parse",
    "read_call",
    "read_recording",
    "read_transcription",
    "voicemail",
]

CHANNEL = "phone"
# STIR/SHAKEN full attestation: the carrier vouches that the caller owns the number
ATTESTED = "TN-Validation-Passed-A"
NOT_VERIFIED = "caller_not_verified"
_MAX_BODY = 64 * 1024
_MAX_TRANSCRIPT = 20_000
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_SID = re.compile(r"^[A-Z]{2}[0-9a-fA-F]{32}$")


@dataclass(frozen=True, slots=True)
class Call:
    """Who called which of our numbers, and how far the network vouches for the caller."""

    call_sid: str
    caller: str | None
    to: str
    status: str
    stir_verstat: str | None
    caller_name: str | None
    caller_country: str | None

    @property
    def verified(self) -> bool:
        """Only full attestation vouches for the number; anything less may be spoofed."""
        return self.stir_verstat == ATTESTED


@dataclass(frozen=True, slots=True)
class Recording:
    """A recording-status callback: `completed` with a recording, or `absent` without one."""

    call: Call
    status: str
    recording_sid: str | None
    url: str | None
    seconds: int | None


@dataclass(frozen=True, slots=True)
class Transcription:
    """A transcription callback: the text when `completed`, none when `failed`."""

    call: Call
    status: str
    transcription_sid: str
    text: str
    recording_sid: str | None
    recording_url: str | None


def _field(form: Mapping[str, str], name: str, *, required: bool = True, limit: int = 256) -> str | None:
    value = form.get(name)
    if value is None or value == "":
        if required:
            raise PhoneInputError(f"{name} is missing")
        return None
    if len(value) > limit:
        raise PhoneInputError(f"{name} is longer than {limit} characters")
    return value


def _sid(form: Mapping[str, str], name: str, *, required: bool = True) -> str | None:
    value = _field(form, name, required=required)
    if value is not None and not _SID.match(value):
        raise PhoneInputError(f"{name} {value[:40]!r} is not a Twilio SID")
    return value


def read_call(form: Mapping[str, str]) -> Call:
    """The call every voice request carries (CallSid, From, To, CallStatus, StirVerstat)."""
    caller = _field(form, "From", required=False, limit=64)
    # a recording callback names neither number: our callback URLs carry them (twiml.py)
    to = _field(form, "To", required=False, limit=64) or ""
    return Call(
        call_sid=_sid(form, "CallSid") or "",
        # "anonymous", "restricted", a SIP address: nobody we can call or text back
        caller=caller if caller and _E164.match(caller) else None,
        to=to, status=_field(form, "CallStatus", required=False, limit=32) or "",
        stir_verstat=_field(form, "StirVerstat", required=False, limit=64),
        caller_name=_field(form, "CallerName", required=False, limit=128),
        caller_country=_field(form, "FromCountry", required=False, limit=8))


def read_recording(form: Mapping[str, str]) -> Recording:
    """A recording-status callback (RecordingSid, RecordingUrl, RecordingStatus, RecordingDuration)."""
    status = _field(form, "RecordingStatus", limit=32) or ""
    duration = _field(form, "RecordingDuration", required=False, limit=10)
    if duration is not None and not duration.isdigit():
        raise PhoneInputError(f"RecordingDuration {duration!r} is not a number of seconds")
    return Recording(call=read_call(form), status=status,
                     recording_sid=_sid(form, "RecordingSid", required=status == "completed"),
                     url=_field(form, "RecordingUrl", required=status == "completed", limit=1024),
                     seconds=int(duration) if duration is not None else None)


def read_transcription(form: Mapping[str, str]) -> Transcription:
    """A transcription callback (TranscriptionSid, TranscriptionText, TranscriptionStatus, …)."""
    status = _field(form, "TranscriptionStatus", limit=32) or ""
    return Transcription(call=read_call(form), status=status,
                         transcription_sid=_sid(form, "TranscriptionSid") or "",
                         text=(_field(form, "TranscriptionText", required=False, limit=_MAX_TRANSCRIPT)
                               or "").strip(),
                         recording_sid=_sid(form, "RecordingSid", required=False),
                         recording_url=_field(form, "RecordingUrl", required=False, limit=1024))


def _sender(call: Call) -> Identity:
    # a withheld number is nobody's identity: each such call is its own caller
    return Identity(kind="phone", value=call.caller or f"withheld-{call.call_sid}")


def _message(call: Call, *, native_id: str, text: str, subject: str, extras: PhoneExtras,
             received_at: datetime, tags: tuple[str, ...] = ()) -> InboundMessage:
    if not call.verified:
        tags += (NOT_VERIFIED,)
        text = f"[caller not verified: STIR/SHAKEN {call.stir_verstat or 'not given'}] {text}"
    if call.caller is None:
        tags += ("caller_withheld",)
    return InboundMessage(
        event_id=inbound_event_id(CHANNEL, native_id), channel=CHANNEL, native_id=native_id,
        # each call is its own thread; a repeat caller joins by the customer's recent conversation
        thread_key=f"call:{call.call_sid}", sender=_sender(call), received_at=received_at, text=text,
        subject=subject, raw_ref=extras.recording_url, tags=tags, extras=extras,
        reply_ref=ReplyRef(in_reply_to=call.call_sid))


def _extras(call: Call, kind: str, **more: object) -> PhoneExtras:
    return PhoneExtras(call_sid=call.call_sid, to=call.to, kind=kind, stir_verstat=call.stir_verstat,
                       caller_verified=call.verified, caller_name=call.caller_name,
                       caller_country=call.caller_country, **more)  # type: ignore[arg-type]


def _who(call: Call) -> str:
    return call.caller or "a withheld number"


def voicemail(recording: Recording, transcription: Transcription | None, *,
              received_at: datetime) -> InboundMessage:
    """The call's voicemail: its transcript, or a note to listen to the recording."""
    call = recording.call
    url = recording.url or (transcription.recording_url if transcription else None)
    length = f" ({recording.seconds} s)" if recording.seconds is not None else ""
    if transcription is not None and transcription.status == "completed" and transcription.text:
        text = transcription.text
    else:
        why = ("the transcription failed" if transcription is not None
               else "no transcript came in time")
        text = f"Voicemail{length} without a transcript ({why}): listen to the recording at {url}"
    extras = _extras(call, "voicemail", recording_sid=recording.recording_sid, recording_url=url,
                     recording_seconds=recording.seconds,
                     transcription_sid=transcription.transcription_sid if transcription else None,
                     transcription_status=transcription.status if transcription else None)
    heard = transcription is not None and transcription.status == "completed"
    tags = () if heard else ("listen_to_recording",)
    return _message(call, native_id=call.call_sid, text=text, subject=f"Voicemail from {_who(call)}",
                    extras=extras, received_at=received_at, tags=tags)


def missed_call(call: Call, *, received_at: datetime) -> InboundMessage:
    """A call that ended before a message was left: somebody calls back."""
    back = "call them back" if call.caller else "the number was withheld, so nobody can call back"
    text = (f"Missed call from {_who(call)} at {received_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC: "
            f"they hung up before leaving a message — {back}.")
    return _message(call, native_id=call.call_sid, text=text, subject=f"Missed call from {_who(call)}",
                    extras=_extras(call, "missed_call"), received_at=received_at, tags=("missed_call",))


def late_transcript(transcription: Transcription, *, received_at: datetime) -> InboundMessage:
    """A transcript that came after its voicemail was routed without one: the same conversation's next."""
    call = transcription.call
    extras = _extras(call, "voicemail", recording_sid=transcription.recording_sid,
                     recording_url=transcription.recording_url,
                     transcription_sid=transcription.transcription_sid,
                     transcription_status=transcription.status)
    return _message(call, native_id=transcription.transcription_sid,
                    text=f"Transcript of the voicemail routed earlier: {transcription.text}",
                    subject=f"Voicemail from {_who(call)}", extras=extras, received_at=received_at)


def parse(raw: bytes, *, received_at: datetime | None = None) -> InboundMessage:
    """A callback's form body as the message it makes: transcription, recording, or a bare call."""
    if len(raw) > _MAX_BODY:
        raise PhoneInputError(f"body is {len(raw)} bytes, limit is {_MAX_BODY}")
    try:
        form = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=True,
                              max_num_fields=200))
    except (UnicodeDecodeError, ValueError) as e:
        raise PhoneInputError(f"not a Twilio form body: {str(e)[:120]}") from e
    at = received_at or datetime.now(UTC)
    if "TranscriptionSid" in form:
        transcription = read_transcription(form)
        recording = Recording(call=transcription.call, status="completed",
                              recording_sid=transcription.recording_sid, url=transcription.recording_url,
                              seconds=None)
        return voicemail(recording, transcription, received_at=at)
    if "RecordingStatus" in form:
        recording = read_recording(form)
        if recording.status == "completed":
            return voicemail(recording, None, received_at=at)
        return missed_call(recording.call, received_at=at)
    return missed_call(read_call(form), received_at=at)
