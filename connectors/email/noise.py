"""Recognise mail no customer wrote to us: auto-replies, mailing-list traffic, bounces, abuse reports.

Works on headers already unfolded and decoded by the parser (lower-case names, every
value of a repeated header) and on the parsed MIME tree; pure, no I/O.

A bounce turns into a failed receipt for one of our replies, so it must come from a
mailer daemon: a null envelope sender (`Return-Path: <>`, which RFC 3464 reports are
sent with) or a From local part such as MAILER-DAEMON or postmaster. A daemon's mail is
a bounce when it is a delivery-status report (`multipart/report;
report-type=delivery-status` with a `message/delivery-status` part), carries such a
part, or (qmail, old Exim) has a bounce subject. The same report from anyone else is an
ordinary customer message. An abuse report (ARF, RFC 5965: `multipart/report;
report-type=feedback-report`) is tagged `abuse_report` and, being machine mail, also
`auto_reply`, so it is never acknowledged.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.message import Message

__all__ = [
    "ABUSE_REPORT",
    "AUTO_REPLY",
    "BOUNCE",
    "MAILING_LIST",
    "BounceReport",
    "bounce_report",
    "from_mailer_daemon",
    "is_delivery_report",
    "tags",
]

AUTO_REPLY = "auto_reply"
MAILING_LIST = "mailing_list"
BOUNCE = "bounce"
ABUSE_REPORT = "abuse_report"

Headers = Mapping[str, Sequence[str]]

_OUT_OF_OFFICE = re.compile(
    r"^\W{0,3}(?:out of (?:the )?office|automatic reply|auto[- ]?reply|auto[- ]?response|"
    r"autoreply|abwesenheitsnotiz|automatische antwort|réponse automatique|"
    r"absent du bureau|respuesta automática|fuera de la oficina|risposta automatica|"
    r"fuori sede|automatisch antwoord|afwezigheidsbericht|resposta automática|autosvar|"
    r"frånvaro|odpowiedź automatyczna)\b",
    re.IGNORECASE,
)
# bounces that carry no delivery-status part (qmail, old Exim) are told by their subject
_BOUNCE_SUBJECT = re.compile(
    r"^\W{0,3}(?:undeliver(?:ed|able)|returned mail|failure notice|mail delivery failed|"
    r"delivery (?:status notification \((?:failure|delay)\)|failure|has failed)|"
    r"non[- ]?delivery|unzustellbar|nicht zustellbar|non remis|no se puede entregar)",
    re.IGNORECASE,
)
# From local parts of mailer daemons: MAILER-DAEMON, postmaster, mail delivery subsystem,
# and the system mailbox Exchange sends its reports from
_DAEMON_LOCAL_PART = re.compile(
    r"mailer[-_.]?daemon|postmaster|mail[-_.]?delivery(?:[-_.]?(?:sub)?system)?"
    r"|microsoftexchange[0-9a-f]{32}",
    re.IGNORECASE,
)
_DSN_REPORT_TYPES = frozenset({"delivery-status", "global-delivery-status"})
_AUTO_PRECEDENCE = frozenset({"bulk", "junk", "auto_reply"})
_NO = frozenset({"", "no", "false", "0"})
# DSN actions saying the message did reach (or was passed on to) its recipient
_SUCCESS_ACTIONS = frozenset({"delivered", "relayed", "expanded"})
_EMBEDDED_MESSAGE_ID = re.compile(
    r"^[ \t>]*message-id:[ \t]*(?:\r?\n[ \t]+)?(<[^>\r\n]{1,300}>|\S{1,300})",
    re.IGNORECASE | re.MULTILINE,
)
_BLANK_LINE = re.compile(r"\r?\n[ \t]*\r?\n")
_FIELD = re.compile(r"^([\w-]{1,60})[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.MULTILINE)
_SCAN_CHARS = 200_000
_REASON_CHARS = 500


@dataclass(frozen=True, slots=True)
class BounceReport:
    """What a bounce says about the message it returns; ids are raw header values."""

    original_ids: tuple[str, ...] = ()
    recipients: tuple[str, ...] = ()
    action: str | None = None
    status: str | None = None
    reason: str | None = None
    reporting_mta: str | None = None


def tags(headers: Headers, msg: Message, *, sender: str, subject: str | None) -> tuple[str, ...]:
    """Name the kinds of machine mail `msg` is, in a stable order (empty for a person)."""
    found: set[str] = set()
    if _is_auto_reply(headers, subject) or _is_receipt(msg):
        found.add(AUTO_REPLY)
    if _report_type(msg) == "feedback-report":
        found.update((ABUSE_REPORT, AUTO_REPLY))  # machine mail: never acknowledged
    if _is_list(headers):
        found.add(MAILING_LIST)
    if _is_bounce(headers, msg, sender, subject):
        if _only_success(msg):
            found.add(AUTO_REPLY)  # a "delivered" report is noise, not a failure
        else:
            found.add(BOUNCE)
    return tuple(sorted(found))


def is_delivery_report(msg: Message) -> bool:
    """Tell whether `msg` is a real delivery-status report: the RFC 3464 type and its DSN part."""
    return _report_type(msg) in _DSN_REPORT_TYPES and any(
        _is_dsn(part) for part in _report_parts(msg)
    )


def from_mailer_daemon(headers: Headers, sender: str) -> bool:
    """A null envelope sender (Return-Path <>) or a mailer daemon's From local part."""
    return_path = _first(headers, "return-path")
    if return_path is not None and "".join(return_path.split()) == "<>":
        return True
    return bool(_DAEMON_LOCAL_PART.fullmatch(sender.rpartition("@")[0]))


def bounce_report(msg: Message) -> BounceReport:
    """Read the original message's id and the failure from a bounce's report parts."""
    ids: list[str] = []
    blocks: list[dict[str, str]] = []
    for part in _report_parts(msg):
        ctype = part.get_content_type()
        if _is_dsn(part):
            blocks.extend(_dsn_blocks(part))
        elif ctype in ("message/rfc822", "message/global"):
            ids.extend(_embedded_message_ids(part))
        elif ctype in ("text/rfc822-headers", "message/global-headers"):
            ids.extend(_EMBEDDED_MESSAGE_ID.findall(_payload_text(part)))
    # bounces without (or with broken) MIME structure say it all in their text
    texts = [] if ids and blocks else [_payload_text(part) for part in _text_parts(msg)]
    if not blocks:
        blocks = [fields for text in texts for fields in _text_blocks(text)]
    if not ids:
        ids = [i for text in texts for i in _EMBEDDED_MESSAGE_ID.findall(text)]
    return _summarise(ids, blocks)


def _first(headers: Headers, name: str) -> str | None:
    values = headers.get(name)
    return values[0].strip() if values else None


def _is_auto_reply(headers: Headers, subject: str | None) -> bool:
    """RFC 3834 Auto-Submitted, vendor flags, bulk precedence or an out-of-office subject."""
    submitted = (_first(headers, "auto-submitted") or "no").split(";")[0].strip().lower()
    if submitted != "no":
        return True
    for flag in ("x-autoreply", "x-autorespond", "x-autogenerated"):
        value = _first(headers, flag)
        if value is not None and value.lower() not in _NO:
            return True
    precedence = (_first(headers, "precedence") or "").lower()
    if precedence in _AUTO_PRECEDENCE:
        return True
    return bool(subject and _OUT_OF_OFFICE.match(subject))


def _is_receipt(msg: Message) -> bool:
    """A read receipt (MDN) is an automatic answer too."""
    return _report_type(msg) == "disposition-notification"


def _is_list(headers: Headers) -> bool:
    if "list-id" in headers or "list-unsubscribe" in headers:
        return True
    return (_first(headers, "precedence") or "").lower() == "list"


def _is_bounce(headers: Headers, msg: Message, sender: str, subject: str | None) -> bool:
    """A mailer daemon returning mail: with a delivery-status part, or a bounce subject."""
    if not from_mailer_daemon(headers, sender):
        return False  # anyone can write a report that quotes one of our Message-IDs
    if any(_is_dsn(part) for part in _report_parts(msg)):
        return True
    return bool(subject and _BOUNCE_SUBJECT.match(subject))


def _report_type(msg: Message) -> str:
    if msg.get_content_type() != "multipart/report":
        return ""
    return str(msg.get_param("report-type", "")).strip().lower()


def _is_dsn(part: Message) -> bool:
    return part.get_content_type() in (
        "message/delivery-status",
        "message/global-delivery-status",
    )


def _only_success(msg: Message) -> bool:
    parts = [part for part in _report_parts(msg) if _is_dsn(part)]
    blocks = [fields for part in parts for fields in _dsn_blocks(part)]
    actions = [recipient[1] for recipient in _recipients(blocks)]
    return bool(actions) and all(action in _SUCCESS_ACTIONS for action in actions)


def _report_parts(msg: Message) -> Iterator[Message]:
    """Every part of `msg`, without descending into attached messages."""
    stack = [msg]
    while stack:
        part = stack.pop()
        yield part
        payload = part.get_payload()
        if part.get_content_maintype() == "multipart" and isinstance(payload, list):
            stack.extend(child for child in reversed(payload) if isinstance(child, Message))


def _text_parts(msg: Message) -> Iterator[Message]:
    """Parts whose payload is text, including a multipart whose boundary is broken."""
    for part in _report_parts(msg):
        maintype = part.get_content_maintype()
        if maintype == "text" or (maintype == "multipart" and isinstance(part.get_payload(), str)):
            yield part


def _recipients(blocks: list[dict[str, str]]) -> Iterator[tuple[str, str, str, str]]:
    """(recipient, action, status, diagnostic) of each per-recipient DSN block."""
    for fields in blocks:
        recipient = fields.get("final-recipient") or fields.get("original-recipient")
        if recipient is None and "action" not in fields:
            continue  # the per-message block
        action = fields.get("action", "").split()
        yield (
            _strip_type(recipient or ""),
            action[0].lower() if action else "",
            fields.get("status", ""),
            _strip_type(fields.get("diagnostic-code", "")),
        )


def _dsn_blocks(part: Message) -> Iterator[dict[str, str]]:
    """The field blocks of a delivery-status part, however the parser stored them."""
    payload = part.get_payload()
    if isinstance(payload, list):
        for block in payload:
            if isinstance(block, Message):
                yield {name.lower(): _unfold(str(value)) for name, value in block.raw_items()}
        return
    yield from _text_blocks(_payload_text(part))


def _text_blocks(text: str) -> Iterator[dict[str, str]]:
    """DSN-style field blocks ("Name: value" lines separated by blank lines) in text."""
    for chunk in _BLANK_LINE.split(text):
        fields: dict[str, str] = {}
        for name, value in _FIELD.findall(chunk):
            fields.setdefault(name.lower(), _unfold(value))
        if fields:
            yield fields


def _unfold(value: str) -> str:
    return " ".join(value.split())


def _strip_type(value: str) -> str:
    """Drop the address/diagnostic type prefix: "rfc822; a@b" → "a@b", "smtp; 550 …" → "550 …"."""
    kind, sep, rest = value.partition(";")
    return rest.strip() if sep and " " not in kind.strip() else value.strip()


def _embedded_message_ids(part: Message) -> Iterator[str]:
    payload = part.get_payload()
    if isinstance(payload, list):
        for inner in payload:
            if not isinstance(inner, Message):
                continue
            for name, value in inner.raw_items():
                if name.lower() == "message-id":
                    yield str(value)


def _payload_text(part: Message) -> str:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    # message ids and DSN fields are ASCII; latin-1 never fails on the rest
    return data[:_SCAN_CHARS].decode("latin-1")


def _summarise(ids: list[str], blocks: list[dict[str, str]]) -> BounceReport:
    """Pick the recipient that failed (else the first) as the bounce's action and reason."""
    mta = next((_strip_type(b["reporting-mta"]) for b in blocks if "reporting-mta" in b), None)
    recipients = list(_recipients(blocks))
    failed = [r for r in recipients if r[1] not in _SUCCESS_ACTIONS] or recipients
    if not failed:
        return BounceReport(original_ids=tuple(dict.fromkeys(ids)), reporting_mta=mta)
    _, action, status, diagnostic = failed[0]
    code = status.split()[0] if status.split() else None
    reason = diagnostic or status or None
    return BounceReport(
        original_ids=tuple(dict.fromkeys(ids)),
        recipients=tuple(dict.fromkeys(r[0] for r in failed if r[0])),
        action=action or None,
        status=code,
        reason=reason[:_REASON_CHARS] if reason else None,
        reporting_mta=mta,
    )
