"""A chat message as an InboundMessage, and the session a reply names."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors.chat.parse import parse, session_of, to_inbound
from schemas.errors import ParseError
from schemas.identity import Identity
from schemas.inbound import ChatExtras

SESSION = "s_AAAAAAAAAAAAAAAAAAAAAA"
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def test_an_anonymous_visitor_is_their_session_and_a_typed_email_only_an_extra() -> None:
    message = to_inbound(SESSION, "m1", "Hi", seq=3, email="ada@example.org", received_at=T0)
    assert message.sender == Identity(kind="chat", value=SESSION)
    assert message.extras == ChatExtras(session=SESSION, seq=3, email="ada@example.org")
    assert (message.native_id, message.thread_key) == (f"{SESSION}:m1", f"chat:{SESSION}")
    assert to_inbound(SESSION, "m1", "Hi again", received_at=T0).event_id == message.event_id


def test_an_email_the_site_vouched_for_is_the_sender() -> None:
    message = to_inbound(SESSION, "m1", "Hi", verified="ada@example.org", received_at=T0)
    assert message.sender == Identity(kind="email", value="ada@example.org")
    assert isinstance(message.extras, ChatExtras) and message.extras.email_verified


def test_a_reply_finds_its_session_from_what_it_cites() -> None:
    assert session_of(f"{SESSION}:m1") == SESSION
    assert session_of("<m-1@example.org>") is None and session_of(None) is None


@pytest.mark.parametrize("raw", [b'{"session": "s_bad", "id": "m1", "text": "x"}',
                                 b'{"session": "' + SESSION.encode() + b'", "id": "m 1", "text": "x"}',
                                 b'{"session": "' + SESSION.encode() + b'", "id": "m1", "text": ""}',
                                 b'{"id": "m1"}', b"\xff"])
def test_bad_input_is_a_parse_error_with_a_reason(raw: bytes) -> None:
    with pytest.raises(ParseError) as refused:
        parse(raw)
    assert refused.value.reason
