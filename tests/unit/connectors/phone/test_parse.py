"""Calls and callbacks read into one voicemail per call, a missed call, or a refusal with a reason."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode

import pytest

from connectors.phone.errors import PhoneInputError
from connectors.phone.parse import parse, read_recording
from connectors.phone.segments import encoding, segments
from schemas.identity import Identity
from schemas.inbound import PhoneExtras
from tests.paths import FIXTURES

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def fixture(name: str) -> bytes:
    return (FIXTURES / "phone" / f"{name}.form").read_bytes().strip()


def test_a_transcript_is_the_message_and_the_caller_its_identity() -> None:
    message = parse(fixture("transcription_completed"), received_at=T0)
    assert message.channel == "phone" and message.sender == Identity(kind="phone", value="+4915123456789")
    assert message.text.startswith("Hi, this is Ada, my router has been down")
    assert isinstance(message.extras, PhoneExtras)
    assert message.extras.caller_verified and message.extras.transcription_status == "completed"
    assert message.raw_ref == message.extras.recording_url
    assert message.tags == ()


def test_every_part_of_one_call_is_one_event() -> None:
    ids = {parse(fixture(name), received_at=T0).event_id
           for name in ("voice_request", "transcription_completed", "transcription_failed")}
    assert len(ids) == 1


def test_a_failed_transcript_says_listen_to_the_recording() -> None:
    message = parse(fixture("transcription_failed"), received_at=T0)
    assert "the transcription failed" in message.text
    assert "listen to the recording at https://" in message.text
    assert "listen_to_recording" in message.tags


def test_a_recording_alone_is_a_voicemail_without_transcript() -> None:
    form = dict(parse_qsl(fixture("recording_completed").decode()))
    recording = read_recording(form)
    assert (recording.status, recording.seconds, recording.call.caller) == ("completed", 23, None)
    message = parse(fixture("recording_completed"), received_at=T0)
    assert "Voicemail (23 s) without a transcript (no transcript came in time)" in message.text


def test_a_call_without_a_recording_is_a_missed_call() -> None:
    message = parse(fixture("voice_request"), received_at=T0)
    assert message.text == ("Missed call from +4915123456789 at 2026-03-02 09:00 UTC: they hung up before "
                            "leaving a message — call them back.")
    assert message.tags == ("missed_call",)


def test_an_unattested_caller_is_not_verified() -> None:
    message = parse(fixture("voice_request_unattested"), received_at=T0)
    assert message.text.startswith("[caller not verified: STIR/SHAKEN TN-Validation-Passed-C]")
    assert "caller_not_verified" in message.tags
    assert isinstance(message.extras, PhoneExtras)
    assert message.extras.stir_verstat == "TN-Validation-Passed-C" and not message.extras.caller_verified
    assert message.extras.caller_name == "ADA LOVELACE"


def test_a_withheld_number_is_nobody_else() -> None:
    message = parse(fixture("voice_request_withheld"), received_at=T0)
    assert message.sender.value.startswith("withheld-CA")
    assert "nobody can call back" in message.text and "caller_withheld" in message.tags


@pytest.mark.parametrize(("change", "reason"), [
    ({"CallSid": ""}, "CallSid is missing"),
    ({"CallSid": "CA123"}, "not a Twilio SID"),
    ({"RecordingStatus": "completed", "RecordingDuration": "ten"}, "not a number of seconds"),
    ({"TranscriptionSid": "TR" + "0" * 32, "TranscriptionStatus": "completed",
      "TranscriptionText": "x" * 20_001}, "longer than"),
])
def test_bad_parameters_are_refused_with_the_reason(change: dict[str, str], reason: str) -> None:
    form = dict(parse_qsl(fixture("voice_request").decode())) | change
    with pytest.raises(PhoneInputError, match=reason):
        parse(urlencode(form).encode(), received_at=T0)


@pytest.mark.parametrize(("text", "expected"), [
    ("x" * 160, (1, "GSM-7")), ("x" * 161, (2, "GSM-7")), ("€" * 80, (1, "GSM-7")), ("€" * 81, (2, "GSM-7")),
    ("ü" * 160, (1, "GSM-7")), ("ł" * 70, (1, "UCS-2")), ("ł" * 71, (2, "UCS-2")), ("🙂" * 35, (1, "UCS-2")),
    ("🙂" * 36, (2, "UCS-2")), ("x" * 1600, (11, "GSM-7")),
])
def test_segments(text: str, expected: tuple[int, str]) -> None:
    assert (segments(text), encoding(text)) == expected
