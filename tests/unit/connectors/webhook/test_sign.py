"""Webhook signatures (checked against a digest computed here), endpoints and Retry-After."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import pytest

from connectors.webhook.errors import SignatureError
from connectors.webhook.settings import endpoints_for
from connectors.webhook.sign import sign, signature, verify
from connectors.webhook.tool import retry_after
from processors.policy.model import Destination
from schemas.errors import ConfigError

SECRET = b"s3cret"
BODY = b'{"event":"conversation.routed","delivery_id":"dlv_1"}'
NOW = 1_790_000_000.7


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET, b"1790000000." + BODY, hashlib.sha256).hexdigest()
    assert signature(SECRET, 1_790_000_000, BODY) == expected
    assert sign(SECRET, BODY, NOW) == f"t=1790000000,v1={expected}"


def test_a_fresh_signature_verifies() -> None:
    verify(SECRET, sign(SECRET, BODY, NOW), BODY, NOW + 5)


@pytest.mark.parametrize(("header", "body", "secret", "now", "reason"), [
    (sign(SECRET, BODY, NOW), BODY + b" ", SECRET, NOW, "does not match"),
    (sign(SECRET, BODY, NOW), BODY.replace(b"dlv_1", b"dlv_2"), SECRET, NOW, "does not match"),
    (sign(SECRET, BODY, NOW), BODY, b"other", NOW, "does not match"),
    (sign(SECRET, BODY, NOW - 301), BODY, SECRET, NOW, "more than the 300s"),
    (sign(SECRET, BODY, NOW + 301), BODY, SECRET, NOW, "more than the 300s"),
    ("", BODY, SECRET, NOW, "needs t="),
    ("v1=abcd", BODY, SECRET, NOW, "needs t="),
    ("t=1790000000", BODY, SECRET, NOW, "needs t="),
    ("t=soon,v1=abcd", BODY, SECRET, NOW, "not a whole number"),
], ids=["tampered-whitespace", "tampered-field", "wrong-secret", "old", "future", "empty",
        "no-timestamp", "no-digest", "bad-timestamp"])
def test_bad_signatures_are_refused_with_the_reason(header: str, body: bytes, secret: bytes,
                                                    now: float, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        verify(secret, header, body, now)


def test_a_resigned_old_body_with_a_fresh_timestamp_fails() -> None:
    # a replay attacker can change t= but not the digest that covers it
    old = sign(SECRET, BODY, NOW - 3600)
    digest = old.split("v1=")[1]
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, f"t={int(NOW)},v1={digest}", BODY, NOW)


def test_any_of_several_digests_verifies_while_a_secret_rotates() -> None:
    new = signature(b"new-secret", int(NOW), BODY)
    old = signature(SECRET, int(NOW), BODY)
    header = f"t={int(NOW)},v1={new},v1={old}"
    verify(SECRET, header, BODY, NOW)
    verify(b"new-secret", header, BODY, NOW)


def test_tolerance_is_configurable() -> None:
    header = sign(SECRET, BODY, NOW - 30)
    verify(SECRET, header, BODY, NOW, tolerance=60)
    with pytest.raises(SignatureError):
        verify(SECRET, header, BODY, NOW, tolerance=10)


# --- the tool's configuration and the receiver's Retry-After -------------------------------

def destination(name: str = "helpdesk", url: str | None = "https://hooks.example.com/sb",
                secret_env: str | None = "SB_HOOK_SECRET", kind: str = "webhook") -> Destination:
    return Destination(name, kind, url=url, secret_env=secret_env)  # type: ignore[arg-type]


def test_endpoints_join_the_policys_url_and_the_environments_secret() -> None:
    found = endpoints_for([destination(), destination("team", kind="slack", url=None)],
                          {"SB_HOOK_SECRET": "k1"})
    assert list(found) == ["helpdesk"]
    assert found["helpdesk"].url == "https://hooks.example.com/sb"
    assert found["helpdesk"].secret.get_secret_value() == "k1"
    assert "k1" not in repr(found)


@pytest.mark.parametrize(("d", "environ", "where"), [
    (destination(), {}, "destinations.helpdesk.secret_env"),
    (destination(), {"SB_HOOK_SECRET": ""}, "destinations.helpdesk.secret_env"),
    (destination(secret_env=None), {}, "destinations.helpdesk.secret_env"),
    (destination(url=None), {"SB_HOOK_SECRET": "k"}, "destinations.helpdesk.url"),
    (destination(url="ftp://x/y"), {"SB_HOOK_SECRET": "k"}, "destinations.helpdesk.url"),
], ids=["unset", "empty", "no-secret-env", "no-url", "not-http"])
def test_a_webhook_without_what_it_needs_fails_at_start_naming_the_key(
        d: Destination, environ: dict[str, str], where: str) -> None:
    with pytest.raises(ConfigError) as e:
        endpoints_for([d], environ)
    assert where in e.value.where


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    assert retry_after("7", now) == 7.0
    assert retry_after("Tue, 03 Mar 2026 09:00:30 GMT", now) == 30.0
    assert retry_after("Tue, 03 Mar 2026 08:00:00 GMT", now) == 0.0
    assert retry_after("soon", now) is None and retry_after(None, now) is None
