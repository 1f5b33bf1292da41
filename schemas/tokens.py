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

__all__ = ["TOKEN_PATTERN", "agent_key", "find_tokens", "make_token", "verify_token"]

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
