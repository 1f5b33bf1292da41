"""Raw RFC 822 bytes → InboundMessage: pure, no I/O, `ParseError(reason)` for anything refused.

    parse_email(raw, account=..., max_bytes=..., received_at=...) -> InboundMessage

Guard rails (`guards`) run before the stdlib parser sees the bytes (size, not-a-mail)
and while it builds the tree (depth, part count: the parser's message class refuses a
part past the limits before the parser reads it). Any other exception the
`email` package raises on malformed input becomes a ParseError, so the caller has one
thing to dead-letter. `headers` reads sender, ids and threading, `body` the text and the
attachments; this module puts the event together, its channel-neutral fields (reply
reference, token, cited ids, delivery report) read from `EmailExtras`. Bounces are not
refused: they come back tagged "bounce" with the returned message's id and the failure.
"""

from __future__ import annotations

import re
from datetime import datetime
from email.message import Message
from email.parser import BytesParser
from email.policy import EmailPolicy

import msgspec

from connectors.email import noise
from connectors.email.body import attachments, body_text, decode_bytes, decode_words, find_body
from connectors.email.guards import (
    DEFAULT_MAX_BYTES,
    MAX_DEPTH,
    MAX_PARTS,
    GuardedMessage,
    refuse_non_mail,
)
from connectors.email.headers import (
    MAX_REFERENCES,
    MAX_SUBJECT_WORDS,
    SUBJECT_CUT_MARK,
    bare_address,
    decoded_subject,
    email_extras,
    header_date,
    header_map,
    message_ids,
    own_message_id,
    sender_or_reporter,
    thread_key,
)
from connectors.email.quotes import visible_text
from schemas.errors import ParseError
from schemas.ids import inbound_event_id
from schemas.inbound import EmailExtras, InboundMessage

__all__ = [
    "DEFAULT_MAX_BYTES",
    "MAX_DEPTH",
    "MAX_PARTS",
    "MAX_REFERENCES",
    "MAX_SUBJECT_WORDS",
    "SUBJECT_CUT_MARK",
    "decode_bytes",
    "decode_words",
    "message_ids",
    "parse_email",
]

MAX_TEXT_CHARS = 100_000

# MIME structure headers the Message API reads as plain strings (see _MailPolicy)
_STRUCTURE_HEADERS = frozenset(
    {"content-type", "content-disposition", "content-transfer-encoding"}
)
# the stdlib's parameter splitting is quadratic; no real structure header comes near this
_STRUCTURE_MAX_CHARS = 4096
_FORWARD_SUBJECT = re.compile(r"^\s*(?:fwd?|wg|tr|rv|enc|i)\s*:", re.I)


class _MailPolicy(EmailPolicy):
    """policy.default, except that MIME structure headers are fetched as plain strings.

    Its message class is `GuardedMessage`, which stops MIME bombs while they are parsed.

    The default policy re-parses Content-Type into a header object on every
    get_content_type() call (a dozen per part, ~150 us each); Message's parameter API
    (get_param, get_filename with RFC 2231, get_content_charset) reads strings just as
    well, so this makes parsing several times faster. (RFC 2047 words that Outlook puts
    in file names are decoded by `decode_words`.)
    """

    def header_fetch_parse(self, name: str, value: str) -> str:
        """Return structure headers unfolded as str, everything else as policy.default does."""
        if name.lower() in _STRUCTURE_HEADERS and isinstance(value, str):
            return "".join(value.splitlines())[:_STRUCTURE_MAX_CHARS]
        return super().header_fetch_parse(name, value)  # type: ignore[no-any-return]


_PARSER = BytesParser(policy=_MailPolicy(message_factory=GuardedMessage))


def parse_email(
    raw: bytes,
    *,
    account: str = "",
    max_bytes: int = DEFAULT_MAX_BYTES,
    received_at: datetime | None = None,
) -> InboundMessage:
    """Parse one raw RFC 822 message into an InboundMessage, or raise ParseError(reason)."""
    data = refuse_non_mail(raw, max_bytes)
    try:
        msg = _PARSER.parsebytes(data)
        return _build(msg, raw, account=account, received_at=received_at)
    except ParseError:
        raise
    except Exception as e:  # the stdlib email package breaks in odd ways on malformed input
        raise ParseError(f"malformed message: {type(e).__name__}: {e}"[:300]) from e


def _build(
    msg: Message, raw: bytes, *, account: str, received_at: datetime | None
) -> InboundMessage:
    headers = header_map(msg)
    sender = sender_or_reporter(headers, msg)
    subject = decoded_subject(headers)
    native_id = own_message_id(headers, raw)
    body = find_body(msg)
    full_text = body_text(body) if body is not None else ""
    tags = noise.tags(headers, msg, sender=sender.value, subject=subject)
    extras = email_extras(headers, native_id, account, subject, full_text)
    if noise.BOUNCE in tags:
        extras = _with_bounce(extras, msg, headers)
    forwarded = bool(subject and _FORWARD_SUBJECT.match(subject))
    return InboundMessage(
        event_id=inbound_event_id("email", native_id),
        channel="email",
        native_id=native_id,
        thread_key=thread_key(extras),
        sender=sender,
        received_at=received_at or header_date(headers),
        text=_cap(visible_text(full_text, forwarded=forwarded)),
        subject=subject,
        attachments=attachments(msg, body),
        tags=tags,
        extras=extras,
        reply_ref=extras.reply_ref(),
        reply_token=extras.reply_token,
        cites=extras.cites(),
        delivery_report=extras.delivery_report(),
    )


def _with_bounce(extras: EmailExtras, msg: Message, headers: dict[str, list[str]]) -> EmailExtras:
    """Add what the bounce says about the returned message."""
    report = noise.bounce_report(msg)
    ids = tuple(dict.fromkeys(i for value in report.original_ids for i in message_ids(value)[:1]))
    recipients = report.recipients or tuple(
        bare_address(a)
        for v in headers.get("x-failed-recipients", ())
        for a in v.split(",")
        if a.strip()
    )
    return msgspec.structs.replace(
        extras,
        bounce_message_ids=ids,
        bounce_recipients=recipients,
        bounce_action=report.action,
        bounce_status=report.status,
        bounce_reason=report.reason,
    )


def _cap(text: str) -> str:
    if len(text) <= MAX_TEXT_CHARS:
        return text
    return text[:MAX_TEXT_CHARS].rstrip() + "\n[…]"
