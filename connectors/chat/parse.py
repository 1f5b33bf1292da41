"""A visitor's chat message as an InboundMessage; pure, no I/O.

The native id is `<session>:<the widget's message id>`, so a resent frame is the same
event, and a reply cites it: the sender finds the session again from the reply's
`in_reply_to`, whoever the customer turned out to be.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from connectors.chat.frames import CLIENT_ID
from connectors.chat.sessions import SESSION_PATTERN
from schemas.codec import decode_json
from schemas.errors import ParseError
from schemas.identity import Identity
from schemas.ids import inbound_event_id
from schemas.inbound import ChatExtras, InboundMessage, ReplyRef

__all__ = ["CHANNEL", "ChatWire", "parse", "session_of", "to_inbound"]

CHANNEL = "chat"
MAX_TEXT_CHARS = 100_000


class ChatWire(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A chat message as `explain` and the contract suite give it: session, id, text."""

    session: str
    id: str
    text: str
    email: str | None = None


_decoder = msgspec.json.Decoder(ChatWire)


def to_inbound(session: str, message_id: str, text: str, *, seq: int = 0, verified: str | None = None,
               email: str | None = None, origin: str | None = None,
               received_at: datetime) -> InboundMessage:
    """The message for the inbound topic; the sender is the session unless the site vouched for an email."""
    if not SESSION_PATTERN.fullmatch(session):
        raise ParseError(f"session {session[:40]!r} is not a chat session id")
    if not CLIENT_ID.fullmatch(message_id):
        raise ParseError("message id must be 1-64 letters, digits, '-' or '_'")
    if not text.strip() or len(text) > MAX_TEXT_CHARS:
        raise ParseError(f"text must have 1 to {MAX_TEXT_CHARS} characters")
    native_id = f"{session}:{message_id}"
    sender = Identity(kind="email", value=verified) if verified else Identity(kind="chat", value=session)
    return InboundMessage(
        event_id=inbound_event_id(CHANNEL, native_id), channel=CHANNEL, native_id=native_id,
        thread_key=f"chat:{session}", sender=sender, received_at=received_at, text=text,
        extras=ChatExtras(session=session, seq=seq, email=verified or email,
                          email_verified=verified is not None, origin=origin),
        reply_ref=ReplyRef(in_reply_to=native_id))


def session_of(in_reply_to: str | None) -> str | None:
    """The session a reply's `in_reply_to` (a chat native id) names, if it is one."""
    session = (in_reply_to or "").partition(":")[0]
    return session if SESSION_PATTERN.fullmatch(session) else None


def parse(raw: bytes) -> InboundMessage:
    """Parse a JSON chat message (`explain`, the contract suite), or raise ParseError with the reason."""
    try:
        wire = decode_json(raw, _decoder)
    except msgspec.ValidationError as e:
        raise ParseError(f"invalid chat message: {e}") from e
    except msgspec.DecodeError as e:
        raise ParseError(f"chat message is not JSON: {e}") from e
    return to_inbound(wire.session, wire.id, wire.text, email=wire.email, received_at=datetime.now(UTC))
