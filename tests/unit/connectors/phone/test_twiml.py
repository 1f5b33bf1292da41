"""The answer to a call: greeting by tier and hours, then a transcribed recording that hangs up."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit
from xml.etree import ElementTree

import pytest
from pydantic import ValidationError

from connectors.phone.parse import Call
from connectors.phone.settings import PhoneSettings
from connectors.phone.twiml import answer, greeting, hang_up
from connectors.routes import Outlook

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
OPEN = Outlook(tier="premium", open_now=True, opens=T0, expected=T0.replace(hour=11),
               opens_text="Mon 02 Mar, 10:00 CET", expected_text="Mon 02 Mar, 12:00 CET")
CLOSED = Outlook(tier="standard", open_now=False, opens=T0.replace(day=3, hour=7), expected=T0.replace(day=3),
                 opens_text="Tue 03 Mar, 08:00 CET", expected_text="Tue 03 Mar, 10:00 CET")
CALL = Call(call_sid="CA" + "a" * 32, caller="+4915123456789", to="+4930901820", status="ringing",
            stir_verstat="TN-Validation-Passed-A", caller_name=None, caller_country="DE")
SETTINGS = PhoneSettings(public_base_url="https://support.example.com")


def test_in_hours_the_tier_and_the_expected_callback_time() -> None:
    said = greeting(OPEN, SETTINGS)
    assert said.startswith(SETTINGS.tier_greetings["premium"])
    assert "get back to you by Mon 02 Mar, 12:00 CET" in said


def test_out_of_hours_when_the_line_opens_and_first_thing() -> None:
    said = greeting(CLOSED, SETTINGS)
    assert said.startswith(SETTINGS.tier_greetings["default"])  # no line of its own: the default
    assert "open again Tue 03 Mar, 08:00 CET" in said and "first thing" in said


def test_a_tier_the_policy_calls_back_hears_when_it_will_be_called() -> None:
    called = dataclasses.replace(OPEN, reply_mode="callback")
    assert greeting(called, SETTINGS).endswith("We will call you back by Mon 02 Mar, 12:00 CET.")
    closed = dataclasses.replace(CLOSED, reply_mode="callback")
    said = greeting(closed, SETTINGS)
    assert "open again Tue 03 Mar, 08:00 CET" in said and "we will call you back first thing" in said


def test_without_an_outlook_nothing_is_promised() -> None:
    assert greeting(None, SETTINGS) == f"{SETTINGS.tier_greetings['default']} Please leave a message " \
                                       "after the tone and we will get back to you."


def test_the_document_records_with_a_transcript_and_hangs_up() -> None:
    root = ElementTree.fromstring(answer(OPEN, SETTINGS, CALL))
    assert [e.tag for e in root] == ["Say", "Record", "Hangup"]
    say, record = root[0], root[1].attrib
    assert say.attrib == {"voice": "Polly.Joanna", "language": "en-US"} and "12:00" in (say.text or "")
    assert int(record["maxLength"]) <= 120
    assert record["transcribe"] == "true" and record["playBeep"] == "true"
    assert record["recordingStatusCallbackEvent"] == "completed absent"
    assert record["action"].startswith("https://support.example.com/v1/phone/recorded?")
    callback = urlsplit(record["recordingStatusCallback"])
    assert (callback.scheme, callback.netloc, callback.path) == ("https", "support.example.com",
                                                                "/v1/phone/recording")
    # the recording callback names no caller: it rides in the signed URL
    assert parse_qs(callback.query) == {"From": ["+4915123456789"], "To": ["+4930901820"],
                                        "StirVerstat": ["TN-Validation-Passed-A"]}
    assert urlsplit(record["transcribeCallback"]).path == "/v1/phone/transcription"
    root = ElementTree.fromstring(hang_up())
    assert [e.tag for e in root] == ["Hangup"]


def test_without_a_transcript_no_transcription_is_asked_for() -> None:
    quiet = SETTINGS.model_copy(update={"transcribe": False, "max_recording_seconds": 600})
    record = ElementTree.fromstring(answer(CLOSED, quiet, CALL))[1].attrib
    assert "transcribe" not in record and "transcribeCallback" not in record and record["maxLength"] == "600"


def test_a_recording_longer_than_what_is_transcribed_is_refused() -> None:
    with pytest.raises(ValidationError, match="transcribes at most 120"):
        PhoneSettings(max_recording_seconds=300)


def test_the_caller_is_escaped_not_interpreted() -> None:
    spoken = PhoneSettings(tier_greetings={"default": "Hi <Play>x</Play> & welcome"})
    xml = answer(None, spoken, CALL)
    assert "&lt;Play&gt;" in xml and "&amp;" in xml
    assert [e.tag for e in ElementTree.fromstring(xml)] == ["Say", "Record", "Hangup"]
