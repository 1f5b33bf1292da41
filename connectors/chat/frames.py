"""The socket's frames, both ways, as typed JSON; decoding a visitor's frame is pure and bounded.

Visitor → edge: `hello` (the session it holds and the last number it shows), `message`
(a client id and text: a resend with the same id is the same message), `ack` (the last
number it displayed), `email` (an address to continue by mail: unverified).
Edge → visitor: `welcome`, `message` (numbered), `accepted`, `status`, `error`.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

import msgspec

from connectors.chat.errors import FrameError
from schemas.codec import decode_json

__all__ = ["Ack", "Author", "ClientFrame", "Entry", "GiveEmail", "Hello", "Say", "decode_frame",
           "error_frame", "message_frame"]

CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
Author = Literal["visitor", "agent", "system"]


class Hello(msgspec.Struct, frozen=True, tag="hello", forbid_unknown_fields=True):
    """The first frame: the session the widget holds (none yet: a new one) and what it shows."""

    session: str | None = None
    token: str | None = None
    last_seq: int = 0
    # a website vouching for its logged-in user: the email and its HMAC under the site secret
    user_email: str | None = None
    user_hash: str | None = None


class Say(msgspec.Struct, frozen=True, tag="message", forbid_unknown_fields=True):
    """A visitor's message, with the widget's own id for it."""

    id: str
    text: str


class Ack(msgspec.Struct, frozen=True, tag="ack", forbid_unknown_fields=True):
    """The widget displayed every message up to `seq`."""

    seq: int


class GiveEmail(msgspec.Struct, frozen=True, tag="email", forbid_unknown_fields=True):
    """An address to continue by mail when the visitor has left; unverified."""

    address: str


ClientFrame = Hello | Say | Ack | GiveEmail
_decoder: msgspec.json.Decoder[ClientFrame] = msgspec.json.Decoder(ClientFrame)


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """One message of a conversation's log; its number is its place in the log."""

    id: str
    author: Author
    text: str
    at: datetime
    name: str | None = None
    kind: str = "message"


def decode_frame(raw: str, max_chars: int) -> ClientFrame:
    """A visitor's frame, checked; FrameError with a code and the reason otherwise."""
    try:
        frame = decode_json(raw.encode("utf-8", "surrogatepass"), _decoder)
    except msgspec.ValidationError as e:
        raise FrameError("invalid_frame", f"not a frame this socket takes: {e}") from e
    except msgspec.DecodeError as e:
        raise FrameError("bad_json", f"frame is not JSON: {e}") from e
    if isinstance(frame, Say):
        if not CLIENT_ID.fullmatch(frame.id):
            raise FrameError("invalid_frame", "message id must be 1-64 letters, digits, '-' or '_'")
        if not frame.text.strip():
            raise FrameError("empty", "message text is empty", frame_id=frame.id)
        if len(frame.text) > max_chars:
            raise FrameError("too_long", f"message is {len(frame.text)} characters, limit is {max_chars}",
                             frame_id=frame.id)
    if isinstance(frame, Hello | Ack) and (frame.last_seq if isinstance(frame, Hello) else frame.seq) < 0:
        raise FrameError("invalid_frame", "numbers start at 0")
    if isinstance(frame, GiveEmail) and len(frame.address) > 254:
        raise FrameError("invalid_email", "address is longer than 254 characters")
    return frame


def message_frame(seq: int, entry: Entry) -> dict[str, Any]:
    """The frame that shows one numbered message."""
    return {"type": "message", "seq": seq, "id": entry.id, "author": entry.author, "name": entry.name,
            "text": entry.text, "at": entry.at.isoformat(), "kind": entry.kind}


def error_frame(e: FrameError) -> dict[str, Any]:
    """The frame that tells the widget what was wrong with its frame."""
    frame: dict[str, Any] = {"type": "error", "code": e.code, "message": e.reason}
    if e.frame_id is not None:
        frame["id"] = e.frame_id
    if e.retry_after is not None:
        frame["retry_after"] = e.retry_after
    return frame
