"""Parse a `POST /v1/messages` body into an InboundMessage; pure, no I/O."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec

from connectors.api.errors import ApiInputError
from schemas.codec import decode_json
from schemas.errors import ParseError
from schemas.identity import parse_sender
from schemas.ids import inbound_event_id
from schemas.inbound import ApiExtras, InboundMessage, ReplyRef

__all__ = ["MAX_TEXT_CHARS", "ApiMessage", "parse", "to_inbound"]

CHANNEL = "api"
MAX_TEXT_CHARS = 100_000
_MAX_FIELD_CHARS = 1_000


class ApiMessage(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The JSON a caller sends: sender and text required, the rest optional."""

    sender: str
    text: str
    subject: str | None = None
    thread_id: str | None = None
    message_id: str | None = None
    metadata: dict[str, str] = {}


_decoder = msgspec.json.Decoder(ApiMessage)
# msgspec names the offending field as "field `x`" or "at `$.x`"
_FIELD = re.compile(r"(?:field `|at `\$\.)(\w+)")


def _check(body: ApiMessage) -> None:
    if not body.text.strip():
        raise ApiInputError("text is empty", field="text")
    if len(body.text) > MAX_TEXT_CHARS:
        raise ApiInputError(f"text is {len(body.text)} characters, limit is {MAX_TEXT_CHARS}",
                            field="text")
    for name in ("subject", "thread_id", "message_id"):
        value = getattr(body, name)
        if value is not None and len(value) > _MAX_FIELD_CHARS:
            raise ApiInputError(f"{name} is longer than {_MAX_FIELD_CHARS} characters",
                                field=name)
    if len(body.metadata) > 50:
        raise ApiInputError("metadata has more than 50 keys", field="metadata")


def to_inbound(body: ApiMessage, *, received_at: datetime | None = None,
               new_id: Callable[[], str] = lambda: uuid.uuid4().hex) -> InboundMessage:
    """Normalise a validated body; without a message_id each call is a new message."""
    _check(body)
    try:
        sender = parse_sender(body.sender)
    except ParseError as e:
        raise ApiInputError(e.reason, field="sender") from e
    native_id = body.message_id or new_id()
    return InboundMessage(
        event_id=inbound_event_id(CHANNEL, native_id),
        channel=CHANNEL,
        native_id=native_id,
        thread_key=body.thread_id or f"{sender}",
        sender=sender,
        received_at=received_at or datetime.now(UTC),
        text=body.text,
        subject=body.subject,
        raw_ref=None,
        extras=ApiExtras(metadata=body.metadata),
        # an answer cites the caller's message id; the API keeps no chain, carries no token
        reply_ref=ReplyRef(in_reply_to=native_id),
    )


def parse(raw: bytes) -> InboundMessage:
    """Parse raw JSON bytes into an InboundMessage, or raise ApiInputError with the reason."""
    try:
        body = decode_json(raw, _decoder)
    except msgspec.ValidationError as e:
        named = _FIELD.search(str(e))
        raise ApiInputError(f"invalid message: {e}", field=named.group(1) if named else None) from e
    except msgspec.DecodeError as e:
        raise ApiInputError(f"body is not JSON: {e}", code="bad_json") from e
    return to_inbound(body)
