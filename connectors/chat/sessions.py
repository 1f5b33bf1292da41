"""Visitor sessions: ids, the signed token the widget keeps, and websites' identity hashes. Pure.

A session token is an HMAC of the session id under a key derived from the reply-token
key, so only our edge can mint one and a reply token never passes for it. An identity
hash is the website's HMAC-SHA256 of the visitor's email under its own site secret: the
established widgets' way of vouching for a logged-in user.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

__all__ = ["SESSION_PATTERN", "identity_hash", "new_session", "plausible_email", "session_key",
           "session_token", "verified_email", "verify_session"]

SESSION_PATTERN = re.compile(r"s_[A-Za-z0-9_-]{22}")
_EMAIL = re.compile(r"[^@\s<>()\[\],;:\"]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,63}")


def session_key(token_key: bytes) -> bytes:
    """The key session tokens are signed with, derived from the reply-token key."""
    return hmac.new(token_key, b"chat-session", hashlib.sha256).digest()


def new_session() -> str:
    """A fresh session id: 128 random bits."""
    return "s_" + secrets.token_urlsafe(16)[:22]


def session_token(session: str, key: bytes) -> str:
    """The token that proves the widget was given `session`."""
    digest = hmac.new(key, session.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def verify_session(session: object, token: object, key: bytes) -> bool:
    """Whether `token` is ours for `session`; anything else (wrong types, shapes) is False."""
    if not isinstance(session, str) or not isinstance(token, str) or not SESSION_PATTERN.fullmatch(session):
        return False
    return hmac.compare_digest(session_token(session, key).encode(), token.encode())


def identity_hash(email: str, secret: bytes) -> str:
    """What a website computes to vouch for its user's email: hex HMAC-SHA256."""
    return hmac.new(secret, email.strip().lower().encode(), hashlib.sha256).hexdigest()


def verified_email(email: object, signature: object, secret: bytes | None) -> str | None:
    """The lower-cased email when the site's signature over it holds, else None."""
    if secret is None or not isinstance(email, str) or not isinstance(signature, str):
        return None
    address = email.strip().lower()
    if not _EMAIL.fullmatch(address):
        return None
    good = hmac.compare_digest(identity_hash(address, secret).encode(), signature.strip().lower().encode())
    return address if good else None


def plausible_email(email: str) -> str | None:
    """A typed address in its lower-case form when it looks like one, else None (unverified either way)."""
    address = email.strip().lower()
    return address if _EMAIL.fullmatch(address) else None
