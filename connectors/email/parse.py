"""Raw RFC 822 bytes → InboundMessage: pure, no I/O, `ParseError(reason)` for anything refused.

    parse_email(raw, account=..., max_bytes=..., received_at=...) -> InboundMessage

Guard rails run before the stdlib parser sees the bytes (size, not-a-mail, MIME bombs)
and again on the parsed tree (depth, part count). Any other exception the `email`
package raises on malformed input becomes a ParseError, so the caller has one thing to
dead-letter. Bounces are not refused: they come back tagged "bounce" with the returned
message's id and the failure in `EmailExtras`.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from collections.abc import Collection, Iterator, Sequence
from datetime import UTC, datetime
from email import policy
from email.errors import HeaderParseError
from email.header import decode_header
from email.headerregistry import Address, HeaderRegistry
from email.message import Message
from email.parser import BytesParser
from email.policy import EmailPolicy
from email.utils import getaddresses, parsedate_to_datetime

import msgspec

from connectors.email import noise
from connectors.email.quotes import html_to_text, unflow, visible_text
from schemas.errors import ParseError
from schemas.identity import Identity, parse_sender
from schemas.inbound import Attachment, EmailExtras, InboundMessage, event_id_for

__all__ = [
    "DEFAULT_MAX_BYTES",
    "MAX_DEPTH",
    "MAX_PARTS",
    "decode_bytes",
    "decode_words",
    "message_ids",
    "parse_email",
]

DEFAULT_MAX_BYTES = 25 * 1024 * 1024
MAX_DEPTH = 20
MAX_PARTS = 500
# bodies beyond this are cut before conversion and quote stripping (the raw stays whole)
MAX_BODY_CHARS = 500_000
MAX_TEXT_CHARS = 100_000
# keep the thread root and the most recent ancestors of very long References chains
MAX_REFERENCES = 50

# MIME structure headers the Message API reads as plain strings (see _MailPolicy)
_STRUCTURE_HEADERS = frozenset(
    {"content-type", "content-disposition", "content-transfer-encoding"}
)
# the stdlib's parameter splitting is quadratic; no real structure header comes near this
_STRUCTURE_MAX_CHARS = 4096
# the strict address parser is superlinear; no real From header comes near this
_FROM_MAX_CHARS = 1000


class _MailPolicy(EmailPolicy):
    """policy.default, except that MIME structure headers are fetched as plain strings.

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


_PARSER = BytesParser(policy=_MailPolicy())
_REGISTRY = HeaderRegistry()
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# a mail starts with a header field ("Name:") or an mbox "From " line
_FIRST_LINE = re.compile(rb"(?:From |[!-9;-~]{1,200}[ \t]*:)")
_BOUNDARY = re.compile(rb'boundary\s*=\s*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))', re.I)
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FOLD = re.compile(r"\r?\n")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_INVISIBLE = re.compile("[\u00ad\u034f\u200b-\u200d\u2060\ufeff]")
_ANGLE_OR_BARE = re.compile(r"<([^<>]*)>|([^\s<>,;]+)")
_COMMENT = re.compile(r"\([^()]*\)")
# "Name <a@b>" or "a@b" with nothing that could make the strict parser read it otherwise
_PLAIN_FROM = re.compile(
    r'^[^<>"@(),;\\]*<([^<>\s@"]+@[^<>\s@"]+)>\s*$|^\s*([^<>\s@"(),;]+@[^<>\s@"(),;]+)\s*$'
)
_HOSTNAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}\.)+[a-z0-9-]{1,63}$")
_REF_TOKEN = re.compile(r"\[ref:([A-Za-z0-9._=-]{1,128})\]")
_PLUS_TAG = re.compile(r"^[A-Za-z0-9._=-]{1,128}$")
_FORWARD_SUBJECT = re.compile(r"^\s*(?:fwd?|wg|tr|rv|enc|i)\s*:", re.I)
_BAD_HEADER = (HeaderParseError, IndexError, ValueError, TypeError, AttributeError, LookupError)
_SINGLE_BYTE = frozenset({"ascii", "latin_1", "iso8859-1", "cp1252"})


def parse_email(
    raw: bytes,
    *,
    account: str = "",
    max_bytes: int = DEFAULT_MAX_BYTES,
    received_at: datetime | None = None,
) -> InboundMessage:
    """Parse one raw RFC 822 message into an InboundMessage, or raise ParseError(reason)."""
    data = _refuse_non_mail(raw, max_bytes)
    _refuse_mime_bomb(data)
    try:
        msg = _PARSER.parsebytes(data)
        _check_tree(msg)
        return _build(msg, raw, account=account, received_at=received_at)
    except ParseError:
        raise
    except Exception as e:  # the stdlib email package breaks in odd ways on malformed input
        raise ParseError(f"malformed message: {type(e).__name__}: {e}"[:300]) from e


# ---- guard rails ------------------------------------------------------------------------


def _refuse_non_mail(raw: bytes, max_bytes: int) -> bytes:
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


def _refuse_mime_bomb(data: bytes) -> None:
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


def _check_tree(msg: Message) -> None:
    """Exact depth and part-count limits on the parsed tree."""
    for count, (_, depth, _) in enumerate(_walk(msg), start=1):
        if count > MAX_PARTS:
            raise ParseError(f"more than {MAX_PARTS} MIME parts")
        if depth > MAX_DEPTH:
            raise ParseError(f"MIME parts nested deeper than {MAX_DEPTH} levels")


def _walk(msg: Message) -> Iterator[tuple[Message, int, bool]]:
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


# ---- building the event -----------------------------------------------------------------


def _build(
    msg: Message, raw: bytes, *, account: str, received_at: datetime | None
) -> InboundMessage:
    headers = _header_map(msg)
    sender = _sender_or_reporter(headers, msg)
    subject = _subject(headers)
    native_id = _own_message_id(headers, raw)
    body = _find_body(msg)
    full_text = _body_text(body) if body is not None else ""
    tags = noise.tags(headers, msg, sender=sender.value, subject=subject)
    extras = _extras(headers, native_id, account, subject, full_text)
    if noise.BOUNCE in tags:
        extras = _with_bounce(extras, msg, headers)
    forwarded = bool(subject and _FORWARD_SUBJECT.match(subject))
    return InboundMessage(
        event_id=event_id_for("email", native_id),
        channel="email",
        native_id=native_id,
        thread_key=_thread_key(extras),
        sender=sender,
        received_at=received_at or _date(headers),
        text=_cap(visible_text(full_text, forwarded=forwarded)),
        subject=subject,
        attachments=_attachments(msg, body),
        tags=tags,
        extras=extras,
    )


def _extras(
    headers: dict[str, list[str]], native_id: str, account: str, subject: str | None, text: str
) -> EmailExtras:
    to = _addresses(headers, "to")
    cc = _addresses(headers, "cc")
    reply_to = _addresses(headers, "reply-to")
    envelope = tuple(
        _bare(v) for name in ("delivered-to", "x-original-to") for v in headers.get(name, ())
    )
    # without our own address a customer's Cc'd plus-address could pass for a token
    ours = to + cc + envelope if account else to + envelope
    return EmailExtras(
        message_id=native_id,
        in_reply_to=_ids(headers, "in-reply-to"),
        references=_references(headers),
        reply_to=reply_to[0] if reply_to else None,
        to=to,
        cc=cc,
        account=account,
        auto_submitted=_first(headers, "auto-submitted"),
        list_id=_list_id(headers),
        reply_token=_plus_token(ours, account) or _ref_token(subject, text),
    )


def _with_bounce(extras: EmailExtras, msg: Message, headers: dict[str, list[str]]) -> EmailExtras:
    """Add what the bounce says about the returned message."""
    report = noise.bounce_report(msg)
    ids = tuple(dict.fromkeys(i for value in report.original_ids for i in message_ids(value)[:1]))
    recipients = report.recipients or tuple(
        _bare(a) for v in headers.get("x-failed-recipients", ()) for a in v.split(",") if a.strip()
    )
    return msgspec.structs.replace(
        extras,
        bounce_message_ids=ids,
        bounce_recipients=recipients,
        bounce_action=report.action,
        bounce_status=report.status,
        bounce_reason=report.reason,
    )


def _thread_key(extras: EmailExtras) -> str:
    """The thread's root: first of References, else In-Reply-To, else this message."""
    for ids in (extras.references, extras.in_reply_to):
        if ids:
            return ids[0]
    return extras.message_id


def _cap(text: str) -> str:
    if len(text) <= MAX_TEXT_CHARS:
        return text
    return text[:MAX_TEXT_CHARS].rstrip() + "\n[…]"


# ---- headers ----------------------------------------------------------------------------


def _header_map(msg: Message) -> dict[str, list[str]]:
    """Lower-case name → unfolded, repaired values, read once without the header classes."""
    headers: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        headers.setdefault(name.lower(), []).append(_FOLD.sub("", _repair(str(value))).strip())
    return headers


def _first(headers: dict[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    return values[0] if values and values[0] else None


def _repair(value: str) -> str:
    """Turn raw 8-bit header bytes (kept by the parser as surrogates) back into text."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return decode_bytes(value.encode("utf-8", "surrogateescape"), None)
    return value


def _sender_or_reporter(headers: dict[str, list[str]], msg: Message) -> Identity:
    """The From identity; a delivery report without one is from its reporting MTA."""
    try:
        return _sender(headers)
    except ParseError:
        if not noise.is_delivery_report(msg):
            raise
    # bounces often come "From: MAILER-DAEMON <>"; they must still reach the router
    mta = (noise.bounce_report(msg).reporting_mta or "").lower()
    host = mta if _HOSTNAME.match(mta) else "unknown.invalid"
    return parse_sender(f"mailer-daemon@{host}")


def _sender(headers: dict[str, list[str]]) -> Identity:
    value = _first(headers, "from")
    if value is None:
        raise ParseError("no From header")
    plain = _PLAIN_FROM.match(value)
    if plain:  # the common shape, 10x cheaper than the full RFC 5322 parser
        return parse_sender(_bare(plain.group(1) or plain.group(2)))
    if len(value) > _FROM_MAX_CHARS:
        raise ParseError(f"From header is {len(value)} characters long")
    try:
        found = _parse_addresses("from", value)
    except _BAD_HEADER as e:
        raise ParseError(f"unparseable From header: {type(e).__name__}") from e
    if not found:
        raise ParseError("From header holds no address")
    return parse_sender(_normal_address(found[0]))


def _addresses(headers: dict[str, list[str]], name: str) -> tuple[str, ...]:
    """Normalised addresses of To/Cc/Reply-To (the fast legacy parser is enough here)."""
    values = headers.get(name)
    if not values:
        return ()
    try:
        found = getaddresses(values)
    except _BAD_HEADER:  # To/Cc/Reply-To are not worth refusing a customer's mail over
        return ()
    return tuple(dict.fromkeys(_bare(addr) for _, addr in found if "@" in addr))


def _parse_addresses(name: str, value: str) -> tuple[Address, ...]:
    """Addresses by policy.default's strict parser: identity must not be misread."""
    return tuple(getattr(_REGISTRY(name, value), "addresses", ()))


def _normal_address(address: Address) -> str:
    local, _, domain = address.addr_spec.rpartition("@")
    return f"{local}@{domain.lower()}" if local else address.addr_spec


def _bare(value: str) -> str:
    local, _, domain = value.strip().strip("<>").strip().rpartition("@")
    return f"{local}@{domain.lower()}" if local else domain


def _subject(headers: dict[str, list[str]]) -> str | None:
    value = _first(headers, "subject")
    if value is None:
        return None
    text = " ".join(_CONTROL.sub(" ", decode_words(value)).split())
    return text or None


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words, with the same charset fallbacks as bodies."""
    if "=?" not in value:
        return value
    try:
        chunks = decode_header(value)
    except _BAD_HEADER:
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


def _own_message_id(headers: dict[str, list[str]], raw: bytes) -> str:
    """Return the message's own id, or one derived from its bytes so a re-read gets the same id."""
    value = _first(headers, "message-id")
    ids = message_ids(value) if value else ()
    if ids:
        return ids[0]
    return f"sb-{hashlib.blake2b(raw, digest_size=16).hexdigest()}@switchboard.invalid"


def message_ids(value: str) -> tuple[str, ...]:
    """Message ids in a header value, brackets stripped; tolerates commas and bare ids."""
    found: list[str] = []
    for angled, bare in _ANGLE_OR_BARE.findall(_COMMENT.sub(" ", value)):
        candidate = "".join(angled.split()) if angled else bare
        # bare words are ids only when they look like one ("Re", dates and names are not)
        if candidate and (angled or "@" in candidate):
            found.append(candidate)
    return tuple(dict.fromkeys(found))


def _ids(headers: dict[str, list[str]], name: str) -> tuple[str, ...]:
    return message_ids(" ".join(headers.get(name, ())))


def _references(headers: dict[str, list[str]]) -> tuple[str, ...]:
    refs = _ids(headers, "references")
    if len(refs) <= MAX_REFERENCES:
        return refs
    return (refs[0], *refs[-(MAX_REFERENCES - 1) :])


def _list_id(headers: dict[str, list[str]]) -> str | None:
    value = _first(headers, "list-id")
    if value is None:
        return None
    ids = message_ids(value)
    return ids[0] if ids else value


def _date(headers: dict[str, list[str]]) -> datetime:
    """The Date header as an aware datetime, else now (the caller normally passes one)."""
    value = _first(headers, "date")
    if value:
        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            parsed = None
        if parsed is not None:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return datetime.now(UTC)


def _plus_token(addresses: Sequence[str], account: str) -> str | None:
    """The tag of our plus-addressed reply address (`support+<token>@...`)."""
    for address in addresses:
        local, _, domain = address.rpartition("@")
        base, plus, tag = local.partition("+")
        if plus and _PLUS_TAG.match(tag) and _is_ours(base, domain, account):
            return tag
    return None


def _is_ours(base: str, domain: str, account: str) -> bool:
    """Tell whether `base@domain` is our mailbox `account` (an address or a bare login)."""
    if not account:
        return True
    own_local, at, own_domain = account.lower().rpartition("@")
    if not at:
        return base.lower() == account.lower()
    return (base.lower(), domain.lower()) == (own_local, own_domain)


def _ref_token(subject: str | None, text: str) -> str | None:
    """A `[ref:<token>]` we put in our replies, found in the subject or anywhere in the body."""
    for where in (subject or "", text):
        match = _REF_TOKEN.search(where)
        if match:
            return match.group(1)
    return None


# ---- body -------------------------------------------------------------------------------


def _find_body(msg: Message) -> Message | None:
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
    for part, _, enclosed in _walk(msg):
        payload = part.get_payload()
        if not enclosed and part.get_content_type() == "message/rfc822" and payload:
            inner = payload[0] if isinstance(payload, list) else None
            return _find_body(inner) if isinstance(inner, Message) else None
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


def _body_text(part: Message) -> str:
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


# ---- attachments ------------------------------------------------------------------------


def _attachments(msg: Message, body: Message | None) -> tuple[Attachment, ...]:
    """Metadata of every attachment and inline file; alternative bodies are not files."""
    found = []
    for part, _, enclosed in _walk(msg):
        if enclosed or part is body or part.get_content_maintype() == "multipart":
            continue
        if not _is_file(part):
            continue
        found.append(
            Attachment(
                name=_filename(part),
                content_type=part.get_content_type(),
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
    except _BAD_HEADER:
        return None
    if name is None:
        return None
    name = _CONTROL.sub("", decode_words(_repair(str(name))))
    # a file name, never a path
    return name.replace("\\", "/").rsplit("/", 1)[-1].strip() or None


def _size(part: Message) -> int:
    """Decoded size in bytes; an attached message counts as its serialised length."""
    payload = part.get_payload()
    if isinstance(payload, list):
        try:
            return len(part.as_bytes(policy=policy.compat32)) if payload else 0
        except _BAD_HEADER:
            return 0
    data = part.get_payload(decode=True)
    return len(data) if isinstance(data, bytes) else 0


def _content_id(part: Message) -> str | None:
    for name, value in part.raw_items():
        if name.lower() == "content-id":
            cid = "".join(str(value).split()).strip("<>")
            return cid or None
    return None
