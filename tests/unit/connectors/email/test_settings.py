"""Email settings: validated once, frozen, secrets masked everywhere they could be printed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.email.settings import EmailSettings, ImapAccount, SmtpSettings

IMAP_SECRET = "imap-pass-1234"
SMTP_SECRET = "smtp-pass-5678"
TOKEN_SECRET = "token-key-9012"


def account(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"name": "support", "host": "imap.example.com",
                              "username": "support@example.com", "password": IMAP_SECRET}
    values.update(overrides)
    return values


def smtp(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"host": "smtp.example.com", "username": "bot", "password": SMTP_SECRET,
                              "from_address": "support@example.com",
                              "message_id_domain": "example.com"}
    values.update(overrides)
    return values


def settings(**overrides: Any) -> EmailSettings:
    values: dict[str, Any] = {"accounts": [account()], "smtp": smtp(), "token_key": TOKEN_SECRET}
    values.update(overrides)
    return EmailSettings.model_validate(values)


def test_defaults() -> None:
    imap = settings().accounts[0]
    assert (imap.port, imap.tls, imap.mailbox, imap.idle) == (993, "implicit", "INBOX", None)
    assert imap.idle_renew_seconds == 25 * 60 and imap.poll_seconds == 30.0
    assert (imap.fetch_batch, imap.mark_seen, imap.move_to) == (100, False, None)
    assert imap.max_message_bytes == 25 * 1024 * 1024
    out = settings().smtp
    assert out is not None and (out.port, out.tls, out.max_attempts, out.append_sent) == (
        587, "starttls", 5, False)
    assert (settings().parse_workers, settings().parse_cpu_seconds) == (1, 10.0)


def test_secrets_are_masked_in_every_printout() -> None:
    built = settings()
    for text in (repr(built), str(built), built.model_dump_json(), json.dumps(built.model_dump(mode="json")),
                 repr(built.accounts[0]), repr(built.smtp)):
        for secret in (IMAP_SECRET, SMTP_SECRET, TOKEN_SECRET):
            assert secret not in text
    assert built.accounts[0].password.get_secret_value() == IMAP_SECRET
    assert built.token_key.get_secret_value() == TOKEN_SECRET


def test_frozen() -> None:
    built = settings()
    with pytest.raises(ValidationError):
        built.accounts[0].mailbox = "Other"  # type: ignore[misc]


@pytest.mark.parametrize(("overrides", "complaint"), [
    ({"accounts": [account(), account()]}, "unique"),
    ({"accounts": [account(name="has space")]}, "name"),
    ({"accounts": [account(tls="ssl")]}, "tls"),
    ({"accounts": [account(idle_renew_seconds=30 * 60)]}, "idle_renew_seconds"),
    ({"accounts": [account(poll_seconds=0)]}, "poll_seconds"),
    ({"accounts": [account(fetch_batch=0)]}, "fetch_batch"),
    ({"parse_workers": 0}, "parse_workers"),
    ({"parse_cpu_seconds": 0}, "parse_cpu_seconds"),
    ({"accounts": [account(mailbox='Bad"Name')]}, "mailbox"),
    ({"accounts": [account(move_to="Ärchiv")]}, "move_to"),
    ({"accounts": [account(password="a\r\nb")]}, "password"),
    ({"accounts": [account(surprise=1)]}, "surprise"),
    ({"smtp": smtp(password=None)}, "username and password"),
    ({"smtp": smtp(from_address="not-an-address")}, "from_address"),
    ({"smtp": smtp(from_address="help+eu@example.com")}, "'+'"),
    ({"smtp": smtp(message_id_domain="exa mple.com")}, "message_id_domain"),
    ({"smtp": smtp(append_sent=True, append_account="nobody")}, "append_account"),
    ({"accounts": [], "smtp": smtp(append_sent=True)}, "append with"),
    ({"token_key": ""}, "token_key"),
])
def test_invalid_settings_are_refused_naming_the_problem(overrides: dict[str, Any],
                                                         complaint: str) -> None:
    with pytest.raises(ValidationError) as refused:
        settings(**overrides)
    assert complaint in str(refused.value)
    for secret in (IMAP_SECRET, SMTP_SECRET, TOKEN_SECRET):
        assert secret not in str(refused.value)


def test_sent_account_is_the_named_one_or_the_first() -> None:
    two = [account(), account(name="sales")]
    assert settings().sent_account() is None
    assert settings(accounts=two, smtp=smtp(append_sent=True)).sent_account() == ImapAccount(**account())
    named = settings(accounts=two, smtp=smtp(append_sent=True, append_account="sales"))
    assert named.sent_account() is not None and named.sent_account().name == "sales"  # type: ignore[union-attr]


def test_mounts_into_environment_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """How the main Settings will carry it: `SB_EMAIL__...` variables, JSON for the lists."""
    class Outer(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="SB_", env_nested_delimiter="__", frozen=True)
        email: EmailSettings | None = None

    monkeypatch.setenv("SB_EMAIL__TOKEN_KEY", TOKEN_SECRET)
    monkeypatch.setenv("SB_EMAIL__ACCOUNTS", json.dumps([account(idle=False)]))
    monkeypatch.setenv("SB_EMAIL__SMTP", json.dumps(smtp()))
    outer = Outer()
    assert outer.email is not None
    assert outer.email.accounts[0].idle is False
    assert isinstance(outer.email.accounts[0].password, SecretStr)
    assert isinstance(outer.email.smtp, SmtpSettings) and outer.email.smtp.host == "smtp.example.com"
    assert TOKEN_SECRET not in repr(outer)
