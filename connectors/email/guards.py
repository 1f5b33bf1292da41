"""Guard rails: refuse what is not mail, or is built to choke the parser, with `ParseError(reason)`.

Before the stdlib parser sees the bytes: size, Outlook .msg files, input that does not
start with a header field, binary data in the header section, and MIME bombs (too many
or too deeply nested multiparts, found by one regex scan). After it: exact depth and part
counts on the parsed tree, walked by `walk`. Pure, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from email.errors import HeaderParseError
from email.message import Message

from schemas.errors import ParseError

__all__ = [
    "BAD_HEADER",
    "DEFAULT_MAX_BYTES",
    "MAX_DEPTH",
    "MAX_PARTS",
    "check_tree",
    "refuse_mime_bomb",
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
_BOUNDARY = re.compile(rb'boundary\s*=\s*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))', re.I)
_HEADER_END = re.compile(rb"\r?\n\r?\n")


def refuse_non_mail(raw: bytes, max_bytes: int) -> bytes:
    """Refuse oversized and non-RFC 822 input; return the bytes to parse."""
    if len(raw) > max_bytes:
        raise ParseError(f"message is {len(raw)} bytes, limit is {max_bytes}")
    if raw.startswith(_OLE2_MAGIC):
        raise ParseError("an Outlook .msg file (OLE2 compound document), not an RFC 822 message")
    data = raw.lstrip(b"\r\n")  # some exporters put blank lines before the headers
    if not data.strip():
        raise ParseError("message is empty")
    if not _FIRST_LINE.match(data):
        raise ParseError("not an RFC 822 message: it does not start with a header field")
    end = _HEADER_END.search(data)
    if b"\x00" in data[: end.start() if end else len(data)]:
        raise ParseError("not an RFC 822 message: binary data in the header section")
    return data


def refuse_mime_bomb(data: bytes) -> None:
    """Refuse too many or too deeply nested multiparts before the stdlib parser runs.

    The parser checks every line against every open boundary, so deep nesting costs
    lines times depth; counting delimiter lines here is one C-speed regex scan.
    """
    boundaries = {quoted or bare for quoted, bare in _BOUNDARY.findall(data)}
    if not boundaries:
        return
    if len(boundaries) <= MAX_DEPTH and data.count(b"\n--") <= MAX_PARTS:
        return  # too few boundaries to nest deeply, too few delimiter lines for many parts
    if len(boundaries) > MAX_PARTS:
        raise ParseError(f"more than {MAX_PARTS} MIME parts")
    alternatives = b"|".join(re.escape(b) for b in sorted(boundaries, key=len, reverse=True))
    delimiter = re.compile(rb"^--(" + alternatives + rb")(--)?", re.M)
    spans: dict[bytes, list[int]] = {}
    for count, match in enumerate(delimiter.finditer(data), start=1):
        if count > MAX_PARTS + len(boundaries):
            raise ParseError(f"more than {MAX_PARTS} MIME parts")
        span = spans.setdefault(match.group(1), [match.start(), len(data)])
        if match.group(2):
            span[1] = match.start()
    if _deepest_overlap(spans.values()) > MAX_DEPTH:
        raise ParseError(f"MIME parts nested deeper than {MAX_DEPTH} levels")


def _deepest_overlap(spans: Collection[list[int]]) -> int:
    """The largest number of [first delimiter, closing delimiter] spans open at once."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    depth = deepest = 0
    for _, step in events:
        depth += step
        deepest = max(deepest, depth)
    return deepest


def check_tree(msg: Message) -> None:
    """Exact depth and part-count limits on the parsed tree."""
    for count, (_, depth, _) in enumerate(walk(msg), start=1):
        if count > MAX_PARTS:
            raise ParseError(f"more than {MAX_PARTS} MIME parts")
        if depth > MAX_DEPTH:
            raise ParseError(f"MIME parts nested deeper than {MAX_DEPTH} levels")


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
