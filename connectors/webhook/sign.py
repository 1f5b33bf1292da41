"""Webhook signatures: HMAC-SHA256 over `<timestamp>.<body>`, with a replay window.

The header is `X-Switchboard-Signature: t=<unix seconds>,v1=<hex digest>`. The timestamp
is inside the signed bytes, so an old request cannot be replayed with a fresh `t`; a
receiver refuses timestamps more than `tolerance` seconds away from its own clock. A
header may carry several `v1=` values (one per secret while a secret is rotated); one
match is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from connectors.webhook.errors import SignatureError

__all__ = ["DELIVERY_HEADER", "EVENT_HEADER", "MAX_HEADER_CHARS", "SIGNATURE_HEADER", "TOLERANCE_SECONDS",
           "sign", "signature", "verify"]

SIGNATURE_HEADER = "X-Switchboard-Signature"
DELIVERY_HEADER = "X-Switchboard-Delivery"
EVENT_HEADER = "X-Switchboard-Event"
TOLERANCE_SECONDS = 300.0
MAX_HEADER_CHARS = 1024  # a timestamp and a few digests while secrets rotate
_SECONDS = re.compile(r"[0-9]{1,12}")  # ASCII digits only, few enough to compare with a float clock
_DIGEST = re.compile(r"[0-9a-fA-F]{64}")


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `<timestamp>.` followed by the body."""
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: bytes, body: bytes, now: float) -> str:
    """The signature header value for `body` sent at `now` (unix seconds)."""
    timestamp = int(now)
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def verify(secret: bytes, header: str, body: bytes, now: float,
           tolerance: float = TOLERANCE_SECONDS) -> None:
    """Check a signature header against the body; raises SignatureError saying what is wrong.

    Nothing in the header is converted before its length and characters are checked, so
    a huge, non-ASCII or malformed header is a SignatureError like any other refusal.
    """
    if len(header) > MAX_HEADER_CHARS:
        raise SignatureError(f"signature header is longer than {MAX_HEADER_CHARS} characters")
    timestamp: int | None = None
    digests: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            if timestamp is not None:
                raise SignatureError("signature header has more than one t=")
            if not _SECONDS.fullmatch(value):
                raise SignatureError(f"timestamp {value[:20]!r} is not a whole number of unix seconds")
            timestamp = int(value)
        elif name == "v1":
            digests.append(value)
    if timestamp is None or not digests:
        raise SignatureError("signature header needs t=<timestamp> and v1=<hex digest>")
    if abs(now - timestamp) > tolerance:
        raise SignatureError(f"timestamp is {abs(now - timestamp):.0f}s away from now, "
                             f"more than the {tolerance:.0f}s allowed")
    malformed = next((d for d in digests if not _DIGEST.fullmatch(d)), None)
    if malformed is not None:
        raise SignatureError(f"v1 value {malformed[:20]!r} is not 64 hex digits")
    expected = signature(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, d.lower()) for d in digests):
        raise SignatureError("signature does not match the body")
