"""The X Activity API's webhook checks: the CRC answer and the body signature. Pure.

X proves a webhook is ours with a CRC: `GET ?crc_token=…` must be answered
`{"response_token": "sha256=" + base64(HMAC-SHA256(consumer secret, crc_token))}`. Every
delivery carries `x-twitter-webhooks-signature: sha256=` + base64 of the same HMAC over the
raw body, checked in constant time before a byte of it is parsed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from connectors.twitter.errors import SignatureError

__all__ = ["SIGNATURE_HEADER", "crc_response", "signature", "verify"]

SIGNATURE_HEADER = "x-twitter-webhooks-signature"
# a CRC token is a short printable string; anything longer is not X's
_CRC_TOKEN = re.compile(r"[A-Za-z0-9+/=_\-.:]{1,256}")
_SIGNED = re.compile(r"sha256=[A-Za-z0-9+/]{43}=")


def signature(secret: bytes, data: bytes) -> str:
    """`sha256=` and the base64 HMAC-SHA256 of `data` under `secret`."""
    return "sha256=" + base64.b64encode(hmac.new(secret, data, hashlib.sha256).digest()).decode()


def crc_response(secret: bytes, crc_token: str | None) -> dict[str, str]:
    """The answer to X's CRC challenge, or SignatureError for a missing or odd token."""
    if crc_token is None or not _CRC_TOKEN.fullmatch(crc_token):
        raise SignatureError("crc_token is missing or malformed")
    return {"response_token": signature(secret, crc_token.encode())}


def verify(secret: bytes, body: bytes, signed: str | None) -> None:
    """Raise SignatureError unless `signed` is our signature of `body`."""
    if signed is None:
        raise SignatureError(f"{SIGNATURE_HEADER} header is missing")
    if not _SIGNED.fullmatch(signed):
        raise SignatureError(f"{SIGNATURE_HEADER} header is malformed")
    if not hmac.compare_digest(signature(secret, body), signed):
        raise SignatureError("signature does not match the body")
