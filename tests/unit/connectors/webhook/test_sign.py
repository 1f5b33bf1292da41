"""Webhook signatures (checked against a digest computed here), endpoints and Retry-After."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from connectors.webhook.errors import SignatureError
from connectors.webhook.settings import WebhookDestination, endpoint_for
from connectors.webhook.sign import sign, signature, verify
from connectors.webhook.tool import retry_after
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

def secrets(environ: dict[str, str]) -> Callable[[str], SecretStr | None]:
    return lambda name: SecretStr(environ[name]) if environ.get(name) else None


def test_an_endpoint_joins_the_policys_url_and_the_environments_secret() -> None:
    hook = WebhookDestination(url="https://hooks.example.com/sb", secret_env="SB_HOOK_SECRET")
    found = endpoint_for(hook, secrets({"SB_HOOK_SECRET": "k1"}))
    assert found.url == "https://hooks.example.com/sb"
    assert found.secret.get_secret_value() == "k1"
    assert "k1" not in repr(found)


@pytest.mark.parametrize("environ", [{}, {"SB_HOOK_SECRET": ""}], ids=["unset", "empty"])
def test_a_webhook_without_its_secret_names_the_variable(environ: dict[str, str]) -> None:
    hook = WebhookDestination(url="https://hooks.example.com/sb", secret_env="SB_HOOK_SECRET")
    with pytest.raises(ConfigError, match="SB_HOOK_SECRET is not set"):
        endpoint_for(hook, secrets(environ))


@pytest.mark.parametrize(("url", "secret_env", "problem"), [
    ("ftp://x/y", "SB_K", "url: must be an http or https URL"),
    ("https://user:pw@x/y", "SB_K", "url: must not carry credentials"),
    ("https://x/y", "1-bad", "secret_env: must be the name of an environment variable"),
], ids=["not-http", "credentials", "bad-variable"])
def test_a_webhook_destination_refuses_what_cannot_work(url: str, secret_env: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        WebhookDestination(url=url, secret_env=secret_env)


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    assert retry_after("7", now) == 7.0
    assert retry_after("Tue, 03 Mar 2026 09:00:30 GMT", now) == 30.0
    assert retry_after("Tue, 03 Mar 2026 08:00:00 GMT", now) == 0.0
    assert retry_after("soon", now) is None and retry_after(None, now) is None
