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

from connectors.webhook.errors import SignatureError

__all__ = ["DELIVERY_HEADER", "EVENT_HEADER", "SIGNATURE_HEADER", "TOLERANCE_SECONDS", "sign", "signature",
           "verify"]

SIGNATURE_HEADER = "X-Switchboard-Signature"
DELIVERY_HEADER = "X-Switchboard-Delivery"
EVENT_HEADER = "X-Switchboard-Event"
TOLERANCE_SECONDS = 300.0


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `<timestamp>.` followed by the body."""
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: bytes, body: bytes, now: float) -> str:
    """The signature header value for `body` sent at `now` (unix seconds)."""
    timestamp = int(now)
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def verify(secret: bytes, header: str, body: bytes, now: float,
           tolerance: float = TOLERANCE_SECONDS) -> None:
    """Check a signature header against the body; raises SignatureError saying what is wrong."""
    timestamp: int | None = None
    digests: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError(f"timestamp {value[:20]!r} is not a whole number") from None
        elif name == "v1":
            digests.append(value)
    if timestamp is None or not digests:
        raise SignatureError("signature header needs t=<timestamp> and v1=<hex digest>")
    if abs(now - timestamp) > tolerance:
        raise SignatureError(f"timestamp is {abs(now - timestamp):.0f}s away from now, "
                             f"more than the {tolerance:.0f}s allowed")
    expected = signature(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, d) for d in digests):
        raise SignatureError("signature does not match the body")
