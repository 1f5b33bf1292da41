from __future__ import annotations

import json

import pytest

from connectors.api.errors import ApiInputError
from connectors.api.parse import MAX_TEXT_CHARS, parse
from schemas.inbound import ReplyRef


def body(**fields: object) -> bytes:
    return json.dumps({"sender": "ada@example.com", "text": "hello", **fields}).encode()


def test_minimal_message_is_normalised() -> None:
    m = parse(body())
    assert (m.channel, m.sender.kind, m.sender.value, m.text) == ("api", "email", "ada@example.com", "hello")
    assert m.thread_key == "email:ada@example.com"
    assert m.received_at.tzinfo is not None


def test_message_id_makes_the_event_id_repeatable() -> None:
    a, b = parse(body(message_id="m-1")), parse(body(message_id="m-1"))
    assert a.event_id == b.event_id
    assert parse(body()).event_id != parse(body()).event_id


def test_optional_fields_are_carried() -> None:
    m = parse(body(subject="Order 7", thread_id="t-9", metadata={"order": "7"}))
    assert (m.subject, m.thread_key) == ("Order 7", "t-9")
    assert m.extras is not None and m.extras.metadata == {"order": "7"}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("raw", "reason", "field"),
    [
        (b"not json", "body is not JSON", None),
        (b"", "body is not JSON", None),
        (b"\xff\xfe\x00", "body is not JSON", None),
        (b"[]", "invalid message", None),
        (b'{"text": "hi"}', "missing required field `sender`", "sender"),
        (b'{"sender": "ada@example.com"}', "missing required field `text`", "text"),
        (body(text="   "), "text is empty", "text"),
        (body(text=7), "Expected `str`", "text"),
        (body(sender="nobody"), "is not an email address", "sender"),
        (body(unknown=1), "unknown field", "unknown"),
        (body(text="x" * (MAX_TEXT_CHARS + 1)), "limit is", "text"),
        (body(metadata={"k": 1}), "Expected `str`", "metadata"),
    ],
)
def test_bad_bodies_are_refused_with_a_reason(raw: bytes, reason: str, field: str | None) -> None:
    with pytest.raises(ApiInputError, match=reason) as caught:
        parse(raw)
    assert caught.value.field == field


def test_a_reply_cites_the_callers_message_id() -> None:
    m = parse(body(message_id="m-1", thread_id="t-9"))
    assert m.reply_ref == ReplyRef(in_reply_to="m-1")
    assert (m.reply_token, m.cites, m.delivery_report) == (None, (), None)


def test_without_a_message_id_a_reply_cites_the_generated_one() -> None:
    m = parse(body())
    assert m.reply_ref == ReplyRef(in_reply_to=m.native_id)
