"""Our outgoing mail as MIME: a threaded reply that carries the conversation's token. Pure.

The token rides in three places (schemas/tokens.py): the Message-ID, the plus-address of
Reply-To and a `[ref:TOKEN]` footer, so the customer's answer finds its conversation even
when their client drops one of them.

Every header goes out 7-bit: a customer's message id that is not printable ASCII (RFC
6532 allows UTF-8 ones) is left out of In-Reply-To and References rather than encoded
into something no client would match, and an internationalised recipient domain is
written in its ASCII (IDNA) form; a reply that still cannot be encoded is a
PermanentError, never an exception from deep in the header folding.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime

from connectors.email.settings import SmtpSettings
from schemas.errors import PermanentError
from schemas.ids import mail_nonce
from schemas.outbound import OutboundKind, OutboundMessage
from schemas.tokens import make_token

_PLAIN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

__all__ = [
    "AUTOMATIC_KINDS",
    "MAIL_POLICY",
    "MAX_REFERENCES",
    "BuiltReply",
    "build_reply",
    "message_id_for",
    "reply_subject",
    "thread_references",
]

# RFC 3834: mail we send without a person writing it; it must not start autoresponder loops
AUTOMATIC_KINDS: frozenset[OutboundKind] = frozenset({"acknowledgement", "status_update", "follow_up"})
# the thread's root and the most recent ancestors are what clients thread by
MAX_REFERENCES = 20
MAX_SUBJECT_CHARS = 250

# reply prefixes in the languages clients write them: Re, Aw (de), Sv (sv/da/no),
# Antw (nl), Odp (pl), Vs (fi), Ynt (tr), 回复/答复 (zh, also with a full-width colon);
# with counters like "Re[2]:"
_REPLY_PREFIX = re.compile(
    r"^\s*(?:(?:re|aw|sv|antw|odp|vs|ynt|回复|答复)\s*(?:\[\d+\]|\(\d+\))?\s*[:\uff1a]\s*)+",
    re.IGNORECASE,
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
# a message id our 7-bit headers can carry: printable ASCII without "<" and ">"
_SENDABLE_ID = re.compile(r"[!-;=?-~]{1,250}")
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
_ONE_LINE_HEADERS = frozenset({"message-id", "in-reply-to"})


class _ReplyPolicy(EmailPolicy):
    """policy.SMTP, except that a message id stays on its header's line however long.

    The stdlib would move a long id to a continuation line: legal, but some clients then
    read the id with a leading space and lose the thread.
    """

    def fold_binary(self, name: str, value: str) -> bytes:
        """Fold like policy.SMTP, keeping Message-ID and In-Reply-To whole."""
        if name.lower() in _ONE_LINE_HEADERS:
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


# 7-bit on the wire: no server needs 8BITMIME to take our mail
MAIL_POLICY = _ReplyPolicy(linesep="\r\n", cte_type="7bit")


@dataclass(frozen=True, slots=True)
class BuiltReply:
    """A reply ready for SMTP: the envelope, our Message-ID (no brackets) and the bytes."""

    message_id: str
    sender: str
    recipient: str
    data: bytes
    message: EmailMessage


def reply_subject(original: str | None) -> str:
    """`Re: <original>` with the original's own reply prefixes removed, on one line."""
    text = " ".join(_CONTROL.sub(" ", original or "").split())
    text = _REPLY_PREFIX.sub("", text).strip()
    if len(text) > MAX_SUBJECT_CHARS:
        text = text[:MAX_SUBJECT_CHARS].rstrip() + "…"
    return f"Re: {text}" if text else "Re:"


def _clean_id(value: str) -> str | None:
    """A message id without brackets, or None when it could break or not fit a 7-bit header."""
    bare = value.strip()
    if bare.startswith("<") and bare.endswith(">"):
        bare = bare[1:-1].strip()
    return bare if _SENDABLE_ID.fullmatch(bare) else None


def _ascii_domain(address: str) -> str:
    """The address with its domain in IDNA (xn--) form; PermanentError if it has none."""
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError as e:
        raise PermanentError(f"cannot address the reply: domain {domain!r} is not a valid IDN") from e


def thread_references(previous: Sequence[str], in_reply_to: str | None) -> tuple[str, ...]:
    """The References of a reply: the parent's References then the parent, deduplicated."""
    ids = [c for c in (_clean_id(v) for v in (*previous, in_reply_to or "")) if c]
    unique = list(dict.fromkeys(ids))
    if len(unique) > MAX_REFERENCES:
        unique = [unique[0], *unique[-(MAX_REFERENCES - 1):]]
    return tuple(unique)


def message_id_for(conversation_id: str, reply_id: str, key: bytes, domain: str) -> str:
    """`sb.TOKEN.REPLY@domain`: a resend keeps the id, and a bounce names the reply it concerns.

    REPLY is the reply id itself when it is a plain word (ours always are); anything else
    is replaced by a nonce derived from it, so a Message-ID never carries odd characters.
    """
    token = make_token(conversation_id, key)
    local = reply_id if _PLAIN_ID.fullmatch(reply_id) else mail_nonce(reply_id)
    return f"sb.{token}.{local}@{domain}"


def _plus_address(address: str, token: str) -> str:
    local, _, domain = address.rpartition("@")
    return f"{local}+{token}@{domain}"


def _text_body(text: str, token: str) -> str:
    return f"{text.replace(chr(13) + chr(10), chr(10)).rstrip()}\n\n[ref:{token}]\n"


def _html_body(message: OutboundMessage, token: str) -> str:
    footer = f'<p style="color:#888888;font-size:11px">[ref:{token}]</p>'
    if message.html is None:
        escaped = html.escape(message.text.replace("\r\n", "\n").rstrip()).replace("\n", "<br>\n")
        return f"<!DOCTYPE html>\n<html><body>\n<div>{escaped}</div>\n{footer}\n</body></html>\n"
    ends = list(_BODY_END.finditer(message.html))
    if not ends:
        return f"{message.html}\n{footer}\n"
    cut = ends[-1].start()
    return f"{message.html[:cut]}{footer}\n{message.html[cut:]}"


def build_reply(message: OutboundMessage, smtp: SmtpSettings, key: bytes, *,
                now: datetime, reply_token: str | None = None) -> BuiltReply:
    """The MIME reply to send for `message`; PermanentError when it cannot be addressed.

    `reply_token`, when given, is what Reply-To and the `[ref:]` line carry instead of the
    conversation's token (the Message-ID keeps it: threading and bounces read it there).
    """
    if message.recipient.kind != "email":
        raise PermanentError(f"recipient {message.recipient} is not an email address")
    token = reply_token or make_token(message.conversation_id, key)
    own_id = message_id_for(message.conversation_id, message.reply_id, key, smtp.message_id_domain)
    recipient = _ascii_domain(message.recipient.value)
    mail = EmailMessage(policy=MAIL_POLICY)
    try:
        mail["From"] = Address(display_name=smtp.from_name, addr_spec=smtp.from_address)
        mail["To"] = Address(addr_spec=recipient)
        mail["Reply-To"] = Address(display_name=smtp.from_name,
                                   addr_spec=_plus_address(smtp.from_address, token))
    except (ValueError, IndexError, HeaderParseError) as e:  # the registry's verdict on an address
        raise PermanentError(f"cannot address the reply: {e}") from e
    mail["Subject"] = reply_subject(message.subject)
    mail["Date"] = format_datetime(now)
    mail["Message-ID"] = f"<{own_id}>"
    parent = _clean_id(message.in_reply_to or "")
    if parent:
        mail["In-Reply-To"] = f"<{parent}>"
    references = thread_references(message.references, parent)
    if references:
        mail["References"] = " ".join(f"<{r}>" for r in references)
    if message.kind in AUTOMATIC_KINDS:
        mail["Auto-Submitted"] = "auto-replied"
        mail["X-Auto-Response-Suppress"] = "All"
    mail.set_content(_text_body(message.text, token), subtype="plain", charset="utf-8")
    html_part = EmailMessage(policy=MAIL_POLICY)
    html_part.set_content(_html_body(message, token), subtype="html", charset="utf-8")
    del html_part["MIME-Version"]  # set_content adds one; it belongs on the whole mail only
    mail.make_alternative()
    mail.attach(html_part)
    try:
        data = mail.as_bytes()
    except (UnicodeError, HeaderParseError) as e:  # nothing above should let one through
        raise PermanentError(f"cannot encode the reply: {type(e).__name__}: {e}"[:300]) from e
    return BuiltReply(message_id=own_id, sender=smtp.from_address, recipient=recipient,
                      data=data, message=mail)
