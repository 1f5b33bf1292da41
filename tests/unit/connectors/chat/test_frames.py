"""Visitor frames: what the socket takes, and the reason for what it does not."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from connectors.chat.errors import FrameError
from connectors.chat.frames import Ack, Entry, GiveEmail, Hello, Say, decode_frame, error_frame, message_frame

LIMIT = 100


def test_each_frame_kind_decodes() -> None:
    assert decode_frame('{"type": "hello"}', LIMIT) == Hello()
    assert decode_frame('{"type": "hello", "session": "s_x", "token": "t", "last_seq": 7}', LIMIT) == Hello(
        session="s_x", token="t", last_seq=7)
    assert decode_frame('{"type": "message", "id": "m-1_a", "text": "hi"}', LIMIT) == Say(
        id="m-1_a", text="hi")
    assert decode_frame('{"type": "ack", "seq": 3}', LIMIT) == Ack(seq=3)
    assert decode_frame('{"type": "email", "address": "a@b.c"}', LIMIT) == GiveEmail(address="a@b.c")


@pytest.mark.parametrize(("raw", "code"), [
    ("", "bad_json"), ("{", "bad_json"), ("[" * 10_000, "bad_json"), ('{"type": "yell"}', "invalid_frame"),
    ('{"type": "message", "id": "m1", "text": "x", "extra": 1}', "invalid_frame"),
    ('{"type": "message", "id": "", "text": "x"}', "invalid_frame"),
    ('{"type": "message", "id": "' + "m" * 65 + '", "text": "x"}', "invalid_frame"),
    ('{"type": "message", "id": "m1", "text": " \\n "}', "empty"),
    ('{"type": "message", "id": "m1", "text": "' + "x" * (LIMIT + 1) + '"}', "too_long"),
    ('{"type": "ack", "seq": -1}', "invalid_frame"), ('{"type": "hello", "last_seq": -2}', "invalid_frame"),
    ('{"type": "email", "address": "' + "a" * 300 + '"}', "invalid_email"),
    ('{"type": "message", "id": "m1", "text": "\\ud800"}', "bad_json"),
])
def test_bad_frames_are_refused_with_a_code_and_reason(raw: str, code: str) -> None:
    with pytest.raises(FrameError) as refused:
        decode_frame(raw, LIMIT)
    assert refused.value.code == code and refused.value.reason


def test_a_refused_message_names_its_id_in_the_error_frame() -> None:
    with pytest.raises(FrameError) as refused:
        decode_frame('{"type": "message", "id": "m9", "text": ""}', LIMIT)
    assert error_frame(refused.value) == {"type": "error", "code": "empty",
                                          "message": "message text is empty", "id": "m9"}


def test_a_message_frame_carries_its_number() -> None:
    entry = Entry(id="rep_1", author="agent", text="Hi", at=datetime(2026, 3, 2, 10, 0, tzinfo=UTC),
                  name="maria")
    frame = message_frame(4, entry)
    assert json.loads(json.dumps(frame)) == {"type": "message", "seq": 4, "id": "rep_1", "author": "agent",
                                             "name": "maria", "text": "Hi", "at": "2026-03-02T10:00:00+00:00",
                                             "kind": "message"}
