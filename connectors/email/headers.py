"""What the header section says: sender, subject, recipients, message ids, date and thread.

Headers are read once into a map of lower-case name → unfolded, repaired values. From is
read by the strict RFC 5322 parser (identity must not be misread), To/Cc/Reply-To by the
fast legacy one. `email_extras` gathers In-Reply-To, References (capped), List-Id,
Auto-Submitted and the reply token: the tag of our plus-address, else a `[ref:<token>]`
in the subject or body. Pure, no I/O.

The stdlib's RFC 2047 decoder is quadratic in the number of encoded words (160,000 of
them in a 3.5 MB Subject took 26 s), so a Subject is decoded only up to
MAX_SUBJECT_RAW_CHARS raw characters and MAX_SUBJECT_WORDS encoded words. Beyond
either, the mail is not refused (the body is what the customer wants read): the raw
value is cut before the encoded word that crosses the limit, the part before it is
decoded and the subject ends with SUBJECT_CUT_MARK.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from email.headerregistry import Address, HeaderRegistry
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

from connectors.email import noise
from connectors.email.body import CONTROL_CHARS, decode_words, repair
from connectors.email.guards import BAD_HEADER
from schemas.errors import ParseError
from schemas.identity import Identity, parse_sender
from schemas.ids import synthetic_message_id
from schemas.inbound import EmailExtras

__all__ = [
    "MAX_REFERENCES",
    "MAX_SUBJECT_RAW_CHARS",
    "MAX_SUBJECT_WORDS",
    "SUBJECT_CUT_MARK",
    "bare_address",
    "decoded_subject",
    "email_extras",
    "header_date",
    "header_map",
    "message_ids",
    "own_message_id",
    "sender_or_reporter",
    "thread_key",
]

# keep the thread root and the most recent ancestors of very long References chains
MAX_REFERENCES = 50
# the strict address parser is superlinear; no real From header comes near this
_FROM_MAX_CHARS = 1000
# RFC 2047 decoding is quadratic in the words; a real Subject is far below both limits
MAX_SUBJECT_RAW_CHARS = 8192
MAX_SUBJECT_WORDS = 256
SUBJECT_CUT_MARK = "[…]"

_REGISTRY = HeaderRegistry()
_FOLD = re.compile(r"\r?\n")
_ANGLE_OR_BARE = re.compile(r"<([^<>]*)>|([^\s<>,;]+)")
_COMMENT = re.compile(r"\([^()]*\)")
# "Name <a@b>" or "a@b" with nothing that could make the strict parser read it otherwise
_PLAIN_FROM = re.compile(
    r'^[^<>"@(),;\\]*<([^<>\s@"]+@[^<>\s@"]+)>\s*$|^\s*([^<>\s@"(),;]+@[^<>\s@"(),;]+)\s*$'
)
_HOSTNAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}\.)+[a-z0-9-]{1,63}$")
_REF_TOKEN = re.compile(r"\[ref:([A-Za-z0-9._=-]{1,128})\]")
_PLUS_TAG = re.compile(r"^[A-Za-z0-9._=-]{1,128}$")


def header_map(msg: Message) -> dict[str, list[str]]:
    """Lower-case name → unfolded, repaired values, read once without the header classes."""
    headers: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        headers.setdefault(name.lower(), []).append(_FOLD.sub("", repair(str(value))).strip())
    return headers


def _first(headers: dict[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    return values[0] if values and values[0] else None


def sender_or_reporter(headers: dict[str, list[str]], msg: Message) -> Identity:
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
        return parse_sender(bare_address(plain.group(1) or plain.group(2)))
    if len(value) > _FROM_MAX_CHARS:
        raise ParseError(f"From header is {len(value)} characters long")
    try:
        found = _parse_addresses("from", value)
    except BAD_HEADER as e:
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
    except BAD_HEADER:  # To/Cc/Reply-To are not worth refusing a customer's mail over
        return ()
    return tuple(dict.fromkeys(bare_address(addr) for _, addr in found if "@" in addr))


def _parse_addresses(name: str, value: str) -> tuple[Address, ...]:
    """Addresses by policy.default's strict parser: identity must not be misread."""
    return tuple(getattr(_REGISTRY(name, value), "addresses", ()))


def _normal_address(address: Address) -> str:
    local, _, domain = address.addr_spec.rpartition("@")
    return f"{local}@{domain.lower()}" if local else address.addr_spec


def bare_address(value: str) -> str:
    """An address without angle brackets or spaces, its domain lower-cased."""
    local, _, domain = value.strip().strip("<>").strip().rpartition("@")
    return f"{local}@{domain.lower()}" if local else domain


def decoded_subject(headers: dict[str, list[str]]) -> str | None:
    """The Subject decoded, control characters and runs of space collapsed; None if empty.

    A Subject over the raw or encoded-word limit is cut and ends with SUBJECT_CUT_MARK.
    """
    value = _first(headers, "subject")
    if value is None:
        return None
    raw, cut = _bounded_subject(value)
    text = " ".join(CONTROL_CHARS.sub(" ", decode_words(raw)).split())
    if cut:
        text = f"{text} {SUBJECT_CUT_MARK}" if text else SUBJECT_CUT_MARK
    return text or None


def _bounded_subject(value: str) -> tuple[str, bool]:
    """The raw Subject within the limits, and whether it had to be cut."""
    cut = len(value) > MAX_SUBJECT_RAW_CHARS
    if cut:
        value = value[:MAX_SUBJECT_RAW_CHARS]
        # an encoded word holds no space: cutting at the last one never halves a word
        space = value.rfind(" ")
        value = value[:space] if space > 0 else value
    # every encoded word starts with "=?": the limit's word starts where its mark does
    start = -1
    for _ in range(MAX_SUBJECT_WORDS + 1):
        start = value.find("=?", start + 1)
        if start < 0:
            return value, cut
    return value[:start], True


def own_message_id(headers: dict[str, list[str]], raw: bytes) -> str:
    """Return the message's own id, or one derived from its bytes so a re-read gets the same id."""
    value = _first(headers, "message-id")
    ids = message_ids(value) if value else ()
    if ids:
        return ids[0]
    return synthetic_message_id(raw)


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


def header_date(headers: dict[str, list[str]]) -> datetime:
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


def email_extras(
    headers: dict[str, list[str]], native_id: str, account: str, subject: str | None, text: str
) -> EmailExtras:
    """The email-only fields of the event: recipients, threading ids, list and reply token."""
    to = _addresses(headers, "to")
    cc = _addresses(headers, "cc")
    reply_to = _addresses(headers, "reply-to")
    envelope = tuple(
        bare_address(v) for name in ("delivered-to", "x-original-to") for v in headers.get(name, ())
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


def thread_key(extras: EmailExtras) -> str:
    """The thread's root: first of References, else In-Reply-To, else this message."""
    for ids in (extras.references, extras.in_reply_to):
        if ids:
            return ids[0]
    return extras.message_id


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
