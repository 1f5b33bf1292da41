"""Header injection: nothing an agent or a customer typed can add a header to our mail."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

import pytest

from connectors.email.mime import build_reply
from connectors.email.settings import SmtpSettings
from schemas.identity import Identity
from schemas.outbound import OutboundMessage

SMTP = SmtpSettings(host="smtp.example.com", from_address="support@example.com",
                    message_id_domain="support.example.com")
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize("field", ["subject", "author"])
@pytest.mark.parametrize("crlf", ["\r\n", "\n", "\r"], ids=["crlf", "lf", "cr"])
def test_a_newline_in_a_field_never_becomes_a_header(field: str, crlf: str) -> None:
    value = f"Re: parcel{crlf}Bcc: evil@attacker.test{crlf}{crlf}injected body"
    message = OutboundMessage(reply_id="rep_1", conversation_id="con_1", channel="email",
                              recipient=Identity(kind="email", value="ada@example.org"),
                              kind="agent_reply", text="A new parcel left today.", created_at=NOW,
                              **{"subject": "Re: parcel", "author": "maria", field: value})
    built = build_reply(message, SMTP, b"k" * 32, now=NOW)
    parsed = email.message_from_bytes(built.data, policy=email.policy.default)
    assert parsed["Bcc"] is None and parsed["Cc"] is None
    assert parsed.get_all("To") == ["ada@example.org"]
    assert b"\nBcc:" not in built.data
