"""Guard rails: refuse what is not mail, or is built to choke the parser, with `ParseError(reason)`.

Before the stdlib parser sees the bytes: size, Outlook .msg files, input that does not
start with a header field (blank or whitespace-only lines in front are dropped, as some
exports and MTAs add them) and binary data in the header section.

While it parses: `GuardedMessage`, the parser's message factory, counts every part as
the parser attaches it to its parent and refuses the part that would be nested deeper
than MAX_DEPTH or exceed MAX_PARTS. The parser checks every line against the boundary
of every multipart still open, so a deep nest costs lines times depth; refusing at the
moment the nest gets too deep keeps that multiplier at MAX_DEPTH, and because it is the
stdlib parser itself that found the boundary, no spelling of it (quoted, `<x>`, RFC 2231
`boundary*=`, continuations, CR-only line ends) can hide a level. `walk` yields the
parts of a parsed tree. Pure, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from email.errors import HeaderParseError
from email.message import EmailMessage, Message
from email.policy import Policy
from typing import Self

from schemas.errors import ParseError

__all__ = [
    "BAD_HEADER",
    "DEFAULT_MAX_BYTES",
    "MAX_DEPTH",
    "MAX_PARTS",
    "GuardedMessage",
    "refuse_non_mail",
    "walk",
]

DEFAULT_MAX_BYTES = 25 * 1024 * 1024
MAX_DEPTH = 20
MAX_PARTS = 500
# what the stdlib raises on a malformed header, caught where one is not worth refusing mail over
BAD_HEADER = (HeaderParseError, IndexError, ValueError, TypeError, AttributeError, LookupError)

_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# a mail starts with a header field ("Name:") or an mbox "From " line
_FIRST_LINE = re.compile(rb"(?:From |[!-9;-~]{1,200}[ \t]*:)")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
# empty or whitespace-only lines before the first header (CR, LF or CRLF ends, as the parser)
_LEADING_BLANK_LINES = re.compile(rb"(?:[ \t]*(?:\r\n|\r|\n))*")


def refuse_non_mail(raw: bytes, max_bytes: int) -> bytes:
    """Refuse oversized and non-RFC 822 input; return the bytes to parse."""
    if len(raw) > max_bytes:
        raise ParseError(f"message is {len(raw)} bytes, limit is {max_bytes}")
    if raw.startswith(_OLE2_MAGIC):
        raise ParseError("an Outlook .msg file (OLE2 compound document), not an RFC 822 message")
    blank = _LEADING_BLANK_LINES.match(raw)
    data = raw[blank.end():] if blank else raw
    if not data.strip():
        raise ParseError("message is empty")
    if not _FIRST_LINE.match(data):
        raise ParseError("not an RFC 822 message: it does not start with a header field")
    end = _HEADER_END.search(data)
    if b"\x00" in data[: end.start() if end else len(data)]:
        raise ParseError("not an RFC 822 message: binary data in the header section")
    return data


class GuardedMessage(EmailMessage):
    """The parser's message class: refuses a part nested too deep or one part too many.

    The stdlib parser attaches each new part to its parent before it reads the part, so
    `attach` sees the structure grow and stops the parse as soon as a limit is crossed.
    """

    def __init__(self, policy: Policy | None = None) -> None:
        super().__init__(policy)
        self.mime_depth = 0
        # one counter shared by every part of the same mail: [parts so far]
        self.mime_parts = [1]

    # typeshed narrows MIMEPart.attach to Self with the same ignore; Message allows a str
    def attach(self, payload: Self) -> None:  # type: ignore[override]
        """Attach a part one level below this one, or raise ParseError past the limits."""
        payload.mime_depth = self.mime_depth + 1
        payload.mime_parts = self.mime_parts
        self.mime_parts[0] += 1
        if payload.mime_depth > MAX_DEPTH:
            raise ParseError(f"MIME parts nested deeper than {MAX_DEPTH} levels")
        if self.mime_parts[0] > MAX_PARTS:
            raise ParseError(f"more than {MAX_PARTS} MIME parts")
        super().attach(payload)


def walk(msg: Message) -> Iterator[tuple[Message, int, bool]]:
    """Every part with its depth and whether it sits inside an attached message."""
    stack: list[tuple[Message, int, bool]] = [(msg, 0, False)]
    while stack:
        part, depth, enclosed = stack.pop()
        yield part, depth, enclosed
        payload = part.get_payload()
        if isinstance(payload, list):
            inside = enclosed or part.get_content_maintype() == "message"
            stack.extend(
                (child, depth + 1, inside)
                for child in reversed(payload)
                if isinstance(child, Message)
            )
