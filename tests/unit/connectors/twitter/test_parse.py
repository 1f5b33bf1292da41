"""X Activity API deliveries and polled posts into messages: recorded shapes, the ugly ones first."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.twitter.errors import XInputError
from connectors.twitter.parse import (
    DM_MODE,
    ENCRYPTED_TEXT,
    MAX_BODY_BYTES,
    Ignored,
    Post,
    parse,
    parse_envelope,
    post_message,
    timestamp,
)
from schemas.codec import decode, encode
from schemas.identity import Identity
from schemas.inbound import InboundMessage, XExtras
from tests.paths import FIXTURES

ACTIVITY = FIXTURES / "x" / "activity"
ACCOUNT = "783214"
ADA = "750362064426721281"


def raw(name: str) -> bytes:
    return (ACTIVITY / name).read_bytes()


def extras(message: InboundMessage) -> XExtras:
    assert isinstance(message.extras, XExtras)
    return message.extras


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b'{"data": 1}', b'{"data": {"event_type": 5}}',
                                  b"\xff" * 10, b"{" * 100_000, b" " * (MAX_BODY_BYTES + 1)])
def test_unreadable_bodies_are_refused_with_a_reason(body: bytes) -> None:
    with pytest.raises(XInputError) as caught:
        parse_envelope(body, ACCOUNT)
    assert caught.value.reason


def test_a_payload_of_the_wrong_shape_is_refused() -> None:
    envelope = json.loads(raw("mention.json"))
    envelope["data"]["payload"] = {"id": 12}
    with pytest.raises(XInputError, match=r"post\.mention\.create payload"):
        parse_envelope(json.dumps(envelope).encode(), ACCOUNT)


def test_a_mention_carries_author_conversation_language_and_public_tag() -> None:
    message = parse(raw("mention.json"))
    x = extras(message)
    assert message.sender == Identity(kind="xid", value=ADA)
    assert (x.handle, x.name, x.lang) == ("ada_x", "Ada Lovelace", "en")
    assert x.conversation_id == "1578516295611748353"
    assert x.summoned and x.event_uuid == "1146654567674912769" and x.kind == "post"
    assert message.tags == ("public",)
    assert message.thread_key == "x:post:1578516295611748353"
    assert message.received_at == datetime(2022, 10, 7, 22, 43, 10, tzinfo=UTC)
    assert message.reply_ref is not None and message.reply_ref.in_reply_to == "1578516295611748353"
    assert decode(encode(message), InboundMessage) == message


def test_a_reply_without_a_mention_is_not_summoned_and_cites_the_post_it_answers() -> None:
    message = parse(raw("reply_unsummoned.json"))
    assert not extras(message).summoned
    assert extras(message).replied_to == "1578516295611748500"
    assert message.thread_key == "x:post:1578516295611748353"


@pytest.mark.parametrize(("name", "reason"), [
    ("own_post.json", "our own post"), ("retweet.json", "a retweet"),
    ("follow.json", "not routed"), ("errors_only.json", "errors only")])
def test_what_is_not_routed_says_why(name: str, reason: str) -> None:
    found = parse_envelope(raw(name), ACCOUNT)
    assert isinstance(found, Ignored) and reason in found.reason


def test_partial_errors_ride_along_instead_of_crashing() -> None:
    message = parse(raw("partial_errors.json"))
    assert extras(message).errors == (
        "Not Found Error: Could not find tweet with referenced_tweets.id: [1578516295611740000].",)


def test_the_same_mention_by_webhook_and_by_polling_is_one_event() -> None:
    by_webhook = parse(raw("mention.json"))
    post = json.loads(raw("mention.json"))["data"]["payload"]
    by_polling = post_message(Post(**{k: v for k, v in post.items() if k in ("id", "text", "author_id")}),
                              ACCOUNT)
    assert not isinstance(by_polling, Ignored)
    assert by_polling.event_id == by_webhook.event_id


def test_a_dm_is_tagged_dm_and_answered_by_dm() -> None:
    message = parse(raw("dm.json"))
    assert message.tags == ("dm",) and message.text == "Testing 1"
    assert message.thread_key == "x:dm:750362064426721281-1072250532645998596"
    assert message.reply_ref is not None and message.reply_ref.references == (DM_MODE,)


def test_an_encrypted_dm_is_routed_as_unreadable() -> None:
    message = parse(raw("dm_encrypted.json"))
    assert message.text == ENCRYPTED_TEXT and "encrypted" in message.tags and extras(message).encrypted


def test_a_post_without_author_is_refused() -> None:
    with pytest.raises(XInputError, match="author_id"):
        post_message(Post(id="1", text="hi"), ACCOUNT)


@pytest.mark.parametrize(("value", "expected"), [
    ("2022-10-07T22:43:10.000Z", datetime(2022, 10, 7, 22, 43, 10, tzinfo=UTC)),
    ("not a time", None), (None, None)])
def test_x_timestamps(value: Any, expected: datetime | None) -> None:
    assert timestamp(value) == expected
