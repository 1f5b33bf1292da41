"""The message's parts: which one is the body and what it says, which are attached files.

The body is the first inline text/plain part, else the first text/html, read through to
the inner message when the mail is nothing but a forwarded one. `decode_bytes` decodes it
with charset fallbacks that never fail; HTML and format=flowed become plain lines. Header
text (RFC 2047 words, raw 8-bit bytes) gets the same fallbacks through `decode_words` and
`repair`. Everything else that is a file is listed as `Attachment` metadata. Pure, no I/O.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from email import policy
from email.header import decode_header
from email.message import Message

from connectors.email.guards import BAD_HEADER, walk
from connectors.email.quotes import html_to_text, unflow
from schemas.inbound import Attachment

__all__ = [
    "CONTROL_CHARS",
    "MAX_BODY_CHARS",
    "attachments",
    "body_text",
    "decode_bytes",
    "decode_words",
    "find_body",
    "repair",
]

# bodies beyond this are cut before conversion and quote stripping (the raw stays whole)
MAX_BODY_CHARS = 500_000

CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_INVISIBLE = re.compile("[\u00ad\u034f\u200b-\u200d\u2060\ufeff]")
_SINGLE_BYTE = frozenset({"ascii", "latin_1", "iso8859-1", "cp1252"})


# ---- body -------------------------------------------------------------------------------


def find_body(msg: Message) -> Message | None:
    """The part to read as the message text: the first plain text, else the first HTML.

    A mail that is nothing but a forwarded message is read through to that message.
    """
    html = None
    for part in _body_candidates(msg):
        if part.get_content_type() != "text/html":
            return part
        html = html or part
    if html is not None:
        return html
    for part, _, enclosed in walk(msg):
        payload = part.get_payload()
        if not enclosed and part.get_content_type() == "message/rfc822" and payload:
            inner = payload[0] if isinstance(payload, list) else None
            return find_body(inner) if isinstance(inner, Message) else None
    return None


def _body_candidates(part: Message) -> Iterator[Message]:
    """Inline text/plain and text/html parts in reading order, outside attachments."""
    if part.get_content_disposition() == "attachment":
        return
    maintype, subtype = part.get_content_maintype(), part.get_content_subtype()
    if maintype == "text" and subtype in ("plain", "html"):
        yield part
        return
    if maintype != "multipart":
        return
    payload = part.get_payload()
    if not isinstance(payload, list):
        yield part  # a multipart whose boundary is missing: its body is all there is
        return
    # in multipart/related only the root part is text; the rest are its images
    children = payload[:1] if subtype == "related" else payload
    for child in children:
        if isinstance(child, Message):
            yield from _body_candidates(child)


def body_text(part: Message) -> str:
    """The chosen body part as plain text, before quote stripping."""
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    text = decode_bytes(data, part.get_content_charset())[:MAX_BODY_CHARS]
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if part.get_content_subtype() == "html":
        text = html_to_text(text)
    elif str(part.get_param("format", "")).lower() == "flowed":
        text = unflow(text, delsp=str(part.get_param("delsp", "")).lower() == "yes")
    return _INVISIBLE.sub("", text.replace("\x00", ""))


# ---- charsets ---------------------------------------------------------------------------


def decode_bytes(data: bytes, declared: str | None) -> str:
    """Decode text: declared charset, UTF-8, mostly-UTF-8, cp1252, latin-1 (never fails)."""
    if declared and not data.isascii() and _is_single_byte(declared):
        # UTF-8 labelled as latin-1/ascii is the commonest mislabel; valid UTF-8 wins
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    for charset in (declared, "utf-8"):
        if not charset:
            continue
        try:
            return data.decode(charset)
        except (LookupError, ValueError):  # unknown or mislabelled charset: try the next
            continue
    text = data.decode("utf-8", errors="replace")
    if _mostly_utf8(text):
        return text  # UTF-8 with a few broken bytes: keep the rest readable
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _mostly_utf8(text: str) -> bool:
    """More well-formed non-ASCII characters than U+FFFD replacements."""
    bad = text.count("\ufffd")
    non_ascii = len(text) - len(text.encode("ascii", errors="ignore"))
    return non_ascii - bad > bad


def _is_single_byte(charset: str) -> bool:
    try:
        return codecs.lookup(charset).name in _SINGLE_BYTE
    except LookupError:
        return False


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words, with the same charset fallbacks as bodies."""
    if "=?" not in value:
        return value
    try:
        chunks = decode_header(value)
    except BAD_HEADER:
        return value
    out = []
    for data, charset in chunks:
        if isinstance(data, str):
            out.append(data)
        elif charset is None:
            out.append(data.decode("raw-unicode-escape"))
        else:
            out.append(decode_bytes(data, charset))
    return "".join(out)


def repair(value: str) -> str:
    """Turn raw 8-bit header bytes (kept by the parser as surrogates) back into text."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return decode_bytes(value.encode("utf-8", "surrogateescape"), None)
    return value


# ---- attachments ------------------------------------------------------------------------


def attachments(msg: Message, body: Message | None) -> tuple[Attachment, ...]:
    """Metadata of every attachment and inline file; alternative bodies are not files."""
    found = []
    for part, _, enclosed in walk(msg):
        if enclosed or part is body or part.get_content_maintype() == "multipart":
            continue
        if not _is_file(part):
            continue
        found.append(
            Attachment(
                name=_filename(part),
                content_type=repair(part.get_content_type()),
                size=_size(part),
                content_id=_content_id(part),
            )
        )
    return tuple(found)


def _is_file(part: Message) -> bool:
    """Attachments, named parts and non-text parts; unnamed inline text is body."""
    if part.get_content_maintype() != "text":
        return True
    return part.get_content_disposition() == "attachment" or _filename(part) is not None


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except BAD_HEADER:
        return None
    if name is None:
        return None
    name = CONTROL_CHARS.sub("", decode_words(repair(str(name))))
    # a file name, never a path
    return name.replace("\\", "/").rsplit("/", 1)[-1].strip() or None


def _size(part: Message) -> int:
    """Decoded size in bytes; an attached message counts as its serialised length."""
    payload = part.get_payload()
    if isinstance(payload, list):
        try:
            return len(part.as_bytes(policy=policy.compat32)) if payload else 0
        except BAD_HEADER:
            return 0
    data = part.get_payload(decode=True)
    return len(data) if isinstance(data, bytes) else 0


def _content_id(part: Message) -> str | None:
    for name, value in part.raw_items():
        if name.lower() == "content-id":
            cid = "".join(str(value).split()).strip("<>")
            return cid or None
    return None
