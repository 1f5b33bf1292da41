"""The Activity API's CRC answer and body signature, checked before anything is parsed."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from connectors.twitter.errors import SignatureError
from connectors.twitter.sign import crc_response, signature, verify

SECRET = b"consumer-secret"


def test_crc_answer_is_the_base64_hmac_of_the_token() -> None:
    expected = base64.b64encode(hmac.new(SECRET, b"abc123", hashlib.sha256).digest()).decode()
    assert crc_response(SECRET, "abc123") == {"response_token": f"sha256={expected}"}


@pytest.mark.parametrize("token", [None, "", "a" * 257, "spaces are odd", "\u202e"])
def test_odd_crc_tokens_are_refused(token: str | None) -> None:
    with pytest.raises(SignatureError):
        crc_response(SECRET, token)


def test_a_signed_body_verifies() -> None:
    verify(SECRET, b'{"data": {}}', signature(SECRET, b'{"data": {}}'))


@pytest.mark.parametrize(("signed", "reason"), [
    (None, "missing"), ("sha256=abc", "malformed"), ("sha1=" + "A" * 43 + "=", "malformed"),
    (signature(b"other-secret", b"{}"), "does not match")])
def test_bad_signatures_are_refused(signed: str | None, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        verify(SECRET, b"{}", signed)
