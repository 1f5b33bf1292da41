"""Hostile webhook signature headers are refused with a SignatureError and a reason, never another error."""

from __future__ import annotations

import pytest

from connectors.webhook.errors import SignatureError
from connectors.webhook.sign import MAX_HEADER_CHARS, sign, signature, verify

SECRET = b"s3cret"
BODY = b'{"event":"conversation.routed","delivery_id":"dlv_1"}'
NOW = 1_790_000_000
GOOD = signature(SECRET, NOW, BODY)
OTHER = signature(b"other", NOW, BODY)

NOT_SECONDS = "is not a whole number of unix seconds"
NOT_HEX = "is not 64 hex digits"
NEEDS = "needs t=<timestamp> and v1=<hex digest>"


@pytest.mark.parametrize(("header", "reason"), [
    (f"t={'9' * 400},v1={GOOD}", NOT_SECONDS),  # int() works; a float clock minus it overflows
    (f"t={'9' * 900},v1={GOOD}", NOT_SECONDS),  # the most digits the header may hold
    (f"t=\u0661\u0667\u0669\u0660,v1={GOOD}", NOT_SECONDS),  # int() reads Arabic-Indic digits
    (f"t=\u00b2,v1={GOOD}", NOT_SECONDS),
    (f"t=-{NOW},v1={GOOD}", NOT_SECONDS),
    (f"t=+{NOW},v1={GOOD}", NOT_SECONDS),
    (f"t={NOW}.5,v1={GOOD}", NOT_SECONDS),
    (f"t=1.79e9,v1={GOOD}", NOT_SECONDS),
    (f"t=1_790_000_000,v1={GOOD}", NOT_SECONDS),
    (f"t= {NOW},v1={GOOD}", NOT_SECONDS),
    (f"t=,v1={GOOD}", NOT_SECONDS),
    (f"t={NOW},t={NOW},v1={GOOD}", "more than one t="),
    (f"t={NOW},v1=" + "\u00e9" * 64, NOT_HEX),  # compare_digest raises on non-ASCII text
    (f"t={NOW},v1={GOOD[:-1]}\udcff", NOT_HEX),  # an undecodable byte, as aiohttp hands it over
    (f"t={NOW},v1={GOOD}0", NOT_HEX),
    (f"t={NOW},v1=", NOT_HEX),
    (f"t={NOW},v1={GOOD},v1=junk", NOT_HEX),  # one good digest does not excuse a forged one
    (f"t={NOW},v1={OTHER},v1={OTHER.upper()}", "signature does not match the body"),
    (f"t={NOW},v1={GOOD}," + "v1=" * MAX_HEADER_CHARS, f"longer than {MAX_HEADER_CHARS} characters"),
    ("", NEEDS),
    (",,,", NEEDS),
    ("garbage", NEEDS),
    (f"t={NOW}", NEEDS),
    (f"v1={GOOD}", NEEDS),
    (f"T={NOW},V1={GOOD}", NEEDS),
], ids=["400 digits", "900 digits", "Arabic-Indic digits", "superscript", "negative", "plus sign", "fraction",
        "exponent", "underscores", "space", "empty t", "two t", "non-ASCII v1", "surrogate in v1", "long v1",
        "empty v1", "a bad v1 beside a good one", "several v1, none matching", "huge header", "empty header",
        "commas only", "no parts", "no v1", "no t", "upper-case names"])
def test_a_hostile_header_is_a_signature_error_with_its_reason(header: str, reason: str) -> None:
    with pytest.raises(SignatureError) as caught:
        verify(SECRET, header, BODY, NOW)
    assert reason in caught.value.reason


def test_several_v1_values_verify_when_one_matches_in_either_case() -> None:
    verify(SECRET, f"t={NOW},v1={OTHER},v1={GOOD.upper()}", BODY, NOW)
    verify(SECRET, sign(SECRET, BODY, NOW), BODY, NOW)
