"""The stack's SMTP relay gives every recipient a mailbox, once, and no account to a bad address."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.relay import CUSTOMER_PASSWORD, RelayConfig, ensure_mailbox, mailbox_of


def config(tmp_path: Path) -> RelayConfig:
    users = tmp_path / "users"
    users.write_text("support@example.com:{PLAIN}support-secret:65534:65534::/mail/support@example.com\n")
    return RelayConfig(host="127.0.0.1", port=1, lmtp_port=2, users_file=users,
                       customers_file=tmp_path / "customers", mail_dir=tmp_path / "mail",
                       uid=65534, gid=65534)


def test_a_new_customer_gets_one_mailbox(tmp_path: Path) -> None:
    relay = config(tmp_path)
    assert ensure_mailbox(relay, "Ada@Example.com") is True
    assert ensure_mailbox(relay, "ada@example.com") is False
    mailbox = tmp_path / "mail" / "ada@example.com"
    assert relay.customers_file.read_text() == (
        f"ada@example.com:{{PLAIN}}{CUSTOMER_PASSWORD}:65534:65534::{mailbox}\n")


def test_staff_mailboxes_are_left_alone(tmp_path: Path) -> None:
    relay = config(tmp_path)
    assert ensure_mailbox(relay, "support@example.com") is False
    assert not relay.customers_file.exists()


def test_an_accounts_plus_address_is_delivered_to_the_account(tmp_path: Path) -> None:
    relay = config(tmp_path)
    assert mailbox_of(relay, "support+con_1.abc@example.com") == "support@example.com"
    assert not relay.customers_file.exists()
    # a plus-address of nobody we know is a mailbox of its own, like any new customer's
    assert mailbox_of(relay, "ada+shop@example.org") == "ada+shop@example.org"
    assert "ada+shop@example.org:" in relay.customers_file.read_text()


@pytest.mark.parametrize("address", ["no-at-sign", "ada@example.com\n", "a:b@example.com",
                                     "x@exa\nmple.com", "<a@b.c>", ""])
def test_an_address_that_could_break_the_users_file_is_refused(tmp_path: Path, address: str) -> None:
    with pytest.raises(ValueError, match="not an address"):
        ensure_mailbox(config(tmp_path), address)


def test_the_config_round_trips(tmp_path: Path) -> None:
    relay = config(tmp_path)
    relay.write(tmp_path / "smtp" / "relay.json")
    assert RelayConfig.read(tmp_path / "smtp" / "relay.json") == relay
