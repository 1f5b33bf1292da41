"""Session tokens and websites' identity hashes."""

from __future__ import annotations

import hashlib
import hmac

from connectors.chat.sessions import (
    SESSION_PATTERN,
    identity_hash,
    new_session,
    plausible_email,
    session_key,
    session_token,
    verified_email,
    verify_session,
)
from schemas.tokens import make_token

KEY = session_key(b"tests-reply-token-key-not-secret")


def test_a_session_token_verifies_only_for_its_session_and_key() -> None:
    session = new_session()
    assert SESSION_PATTERN.fullmatch(session) and session != new_session()
    token = session_token(session, KEY)
    assert verify_session(session, token, KEY)
    assert not verify_session(new_session(), token, KEY)
    assert not verify_session(session, token, session_key(b"another-deployments-key"))
    assert not verify_session(session, token[:-1], KEY)
    assert not verify_session(None, token, KEY) and not verify_session(session, None, KEY)
    assert not verify_session("s_short", session_token("s_short", KEY), KEY)


def test_a_reply_token_key_is_never_the_session_key() -> None:
    raw = b"tests-reply-token-key-not-secret"
    assert session_key(raw) != raw
    assert make_token("con_0123456789abcdef0123", raw) != session_token("con_0123456789abcdef0123", KEY)


def test_an_identity_hash_is_the_sites_hmac_of_the_lowercased_email() -> None:
    secret = b"site-secret"
    expected = hmac.new(secret, b"ada@example.org", hashlib.sha256).hexdigest()
    assert identity_hash(" Ada@Example.org ", secret) == expected
    assert verified_email("Ada@Example.org", expected.upper(), secret) == "ada@example.org"
    assert verified_email("eve@example.org", expected, secret) is None
    assert verified_email("ada@example.org", expected, None) is None
    assert verified_email("ada@example.org", 12, secret) is None
    assert verified_email("not an email", identity_hash("not an email", secret), secret) is None


def test_a_typed_address_is_normalised_or_refused() -> None:
    assert plausible_email(" Ada@Example.ORG ") == "ada@example.org"
    assert plausible_email("ada@localhost") is None and plausible_email("a b@c.de") is None
