"""Reply tokens: a conversation id with a short signature, carried in our outgoing mail.

A token rides in our Message-ID (`<sb.TOKEN.NONCE@domain>`), in the plus-address of our
Reply-To (`support+TOKEN@domain`) and in a footer line (`[ref:TOKEN]`), so a customer's
answer finds its conversation even when a client rewrites one of them. The signature
stops a forged or mistyped token from joining someone else's conversation.

Mail to a team mailbox carries an *agent* token instead: the same shape, signed with a
key derived for that purpose, so a team member's answer is recognised as the agent's
reply and a customer's token can never pass for one (nor the other way round).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal

__all__ = ["CONTINUATION_PATTERN", "TOKEN_PATTERN", "Continued", "agent_key", "check_continuation",
           "continuation_key", "continuation_token", "find_tokens", "make_token", "verify_token"]

# conversation ids are `con_` + 20 hex digits; the signature is 10 hex digits
TOKEN_PATTERN = re.compile(r"\b(con_[0-9a-f]{20})\.([0-9a-f]{10})\b")


def _signature(conversation_id: str, key: bytes) -> str:
    return hmac.new(key, conversation_id.encode(), hashlib.sha256).hexdigest()[:10]


def make_token(conversation_id: str, key: bytes) -> str:
    """The signed token of a conversation."""
    return f"{conversation_id}.{_signature(conversation_id, key)}"


def verify_token(token: str, key: bytes) -> str | None:
    """The conversation id of a well-signed token, else None."""
    match = TOKEN_PATTERN.fullmatch(token.strip().lower())
    if match is None:
        return None
    conversation_id, signature = match.groups()
    expected = _signature(conversation_id, key)
    return conversation_id if hmac.compare_digest(signature, expected) else None


def find_tokens(text: str) -> list[str]:
    """Every token-shaped string in `text` (unverified), in order of appearance."""
    return [f"{m.group(1)}.{m.group(2)}" for m in TOKEN_PATTERN.finditer(text.lower())]


def agent_key(key: bytes) -> bytes:
    """The key that signs agent tokens, derived from the reply-token key."""
    return hmac.new(key, b"switchboard agent reply", hashlib.sha256).digest()


# `con_<20 hex>.<last day, days since 1970, 5 hex>.<6 hex over the two><10 hex over them and the address>`
CONTINUATION_PATTERN = re.compile(r"(con_[0-9a-f]{20})\.([0-9a-f]{5})\.([0-9a-f]{6})([0-9a-f]{10})")
_EPOCH = date(1970, 1, 1)
Verdict = Literal["verified", "forged", "other_address", "expired"]


def continuation_key(key: bytes) -> bytes:
    """The key that signs continuation tokens, derived from the reply-token key."""
    return hmac.new(key, b"switchboard continuation", hashlib.sha256).digest()


def _mac(key: bytes, text: str, digits: int) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:digits]


def continuation_token(conversation_id: str, address: str, last_day: date, key: bytes) -> str:
    """A token that `address` alone may answer `conversation_id` with, until the end of `last_day`."""
    day = f"{(last_day - _EPOCH).days:05x}"
    signed = f"{conversation_id}.{day}"
    return f"{signed}.{_mac(key, signed, 6)}{_mac(key, f'{signed}.{address.strip().lower()}', 10)}"


@dataclass(frozen=True, slots=True)
class Continued:
    """What a continuation token proves for one sender: the conversation and the verdict."""

    conversation_id: str
    verdict: Verdict
    reason: str


def check_continuation(token: str | None, sender: str, now: datetime, key: bytes) -> Continued | None:
    """The verdict on a continuation token from `sender`; None when `token` is not one (nothing to check).

    The short first signature tells an altered token (or one not ours) from a true one
    used from another address, so each refusal says what it is.
    """
    match = CONTINUATION_PATTERN.fullmatch((token or "").strip().lower())
    if match is None:
        return None
    conversation_id, day, core, bound = match.groups()
    signed = f"{conversation_id}.{day}"
    if not hmac.compare_digest(core, _mac(key, signed, 6)):
        return Continued(conversation_id, "forged", "the continuation token is not ours or was altered")
    if not hmac.compare_digest(bound, _mac(key, f"{signed}.{sender.strip().lower()}", 10)):
        return Continued(conversation_id, "other_address",
                         f"the continuation token was mailed to another address than {sender}")
    last = _EPOCH.toordinal() + int(day, 16)
    if now.astimezone(UTC).date().toordinal() > last:
        return Continued(conversation_id, "expired",
                         f"the continuation token expired after {date.fromordinal(last).isoformat()}")
    return Continued(conversation_id, "verified",
                     f"{sender} answered with the continuation token mailed to it")
