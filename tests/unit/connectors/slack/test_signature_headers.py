"""Hostile Slack signature headers are refused with a SignatureError and a reason, never another error."""

from __future__ import annotations

import pytest

from connectors.slack.errors import SignatureError
from connectors.slack.events import verify
from tests.emulators import slack

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
NOW = 1_772_366_400
BODY = b'{"type":"event_callback","event_id":"Ev1","event":{"type":"message"}}'
GOOD = slack.signed_headers(SECRET, BODY, timestamp=NOW)
STAMP, SIGNED = GOOD["X-Slack-Request-Timestamp"], GOOD["X-Slack-Signature"]
HEX = SIGNED.removeprefix("v0=")

NOT_SECONDS = "is not a whole number of unix seconds"
MALFORMED = "is not v0=<hex>"


@pytest.mark.parametrize(("timestamp", "signed", "reason"), [
    ("9" * 400, SIGNED, NOT_SECONDS),  # int() works; a float clock minus it overflows
    ("9" * 5000, SIGNED, NOT_SECONDS),  # past int()'s digit limit
    ("\u0661\u0667\u0667\u0662", SIGNED, NOT_SECONDS),  # Arabic-Indic digits: isdigit() and int() take them
    ("\u00b2", SIGNED, NOT_SECONDS),  # a superscript two: isdigit(), but not int()
    ("-" + STAMP, SIGNED, NOT_SECONDS),
    ("+" + STAMP, SIGNED, NOT_SECONDS),
    (STAMP + ".5", SIGNED, NOT_SECONDS),
    ("1.7e9", SIGNED, NOT_SECONDS),
    (" " + STAMP, SIGNED, NOT_SECONDS),
    (STAMP + "\n", SIGNED, NOT_SECONDS),
    ("1_772_366_400", SIGNED, NOT_SECONDS),
    ("\udcff\udcfe", SIGNED, NOT_SECONDS),  # undecodable header bytes, as aiohttp hands them over
    ("", SIGNED, "are both required"),
    (STAMP, "", "are both required"),
    (STAMP, "v0=" + "\u00e9" * 64, MALFORMED),  # compare_digest raises on non-ASCII text
    (STAMP, "v0=" + "\u0661" * 64, MALFORMED),
    (STAMP, "v0=" + HEX + "\udcff", MALFORMED),
    (STAMP, "v0=" + HEX * 200, MALFORMED),
    (STAMP, "v0=", MALFORMED),
    (STAMP, "v1=" + HEX, MALFORMED),
    (STAMP, f"{SIGNED},{SIGNED}", MALFORMED),
    (STAMP, "v0=" + "0" * 64, "signature does not match the body"),
], ids=["400 digits", "5000 digits", "Arabic-Indic digits", "superscript", "negative", "plus sign",
        "fraction", "exponent", "leading space", "trailing newline", "underscores", "surrogates",
        "no timestamp", "no signature", "non-ASCII signature", "non-ASCII digits in the signature",
        "surrogate in the signature", "huge signature", "empty digest", "unknown version", "two signatures",
        "well-formed but wrong"])
def test_a_hostile_header_is_a_signature_error_with_its_reason(timestamp: str, signed: str,
                                                                reason: str) -> None:
    with pytest.raises(SignatureError) as caught:
        verify(SECRET.encode(), BODY, timestamp=timestamp, signed=signed, now=NOW)
    assert reason in caught.value.reason


def test_the_signature_is_read_in_either_case() -> None:
    verify(SECRET.encode(), BODY, timestamp=STAMP, signed=SIGNED.upper().replace("V0=", "v0="), now=NOW)
