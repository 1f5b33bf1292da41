"""Evidence: other identities a customer states as their own in a private message; pure.

What counts, all of it at once:
- a private channel: chat, phone (voicemail transcriptions), the API, or a direct message
  on any channel (tagged `dm`, as an X DM is). A public X mention is not: anyone can post
  anything about anyone in public. Email is not: its sender address already is the
  identity, and mail carries signatures and forwards full of other people's addresses
  and numbers;
- a first-person statement directly before the identity: "my (new|work|…) email is",
  "my phone number:", "reach/contact/call/text/email me at|on";
- an email address, or a phone number written internationally — a leading `+` or `00` —
  normalised to E.164. A national number ("020 7946 0958") is ambiguous without a
  country and is skipped, as is anything longer than E.164 allows.

What never counts: text after a forward or quote marker and lines starting with `>`, an
address inside a URL, no-reply mailboxes and addresses at the domains passed as ours,
the sender's own identity, and any address not stated as the sender's ("please email
support@company.com", "my wife's email is ...").
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from schemas.errors import ParseError
from schemas.identity import Identity, parse_sender
from schemas.inbound import InboundMessage

__all__ = ["PRIVATE_CHANNELS", "Candidate", "find", "is_private"]

PRIVATE_CHANNELS = frozenset({"chat", "phone", "voicemail", "api"})
MAX_QUOTE_CHARS = 160
# statements about oneself come early; a huge paste is not read to its end
MAX_SCAN_CHARS = 20_000
_CONTEXT_CHARS = 60

_ADJ = r"(?:new|other|personal|private|work|home|current|usual|direct|second|alternative)"
_NOUN = (r"(?:e-?mail(?:\s+address)?|mail\s+address|address|(?:mobile\s+|cell\s+|tele)?phone"
         r"(?:\s+number)?|mobile(?:\s+number)?|cell(?:\s+number)?|number|tel|whatsapp)")
_MY = rf"\bmy\s+(?:{_ADJ}\s+)?{_NOUN}\s*(?:is|:|=)?\s*(?:now\s+)?"
_ME = r"\b(?:reach|contact|e-?mail|mail|call|text|ring|phone|message|write\s+to)\s+me\s+(?:at|on|via)\s*:?\s*"
# atomic groups: an address or number cut short to dodge the check after it is no match
_EMAIL = (r"(?>[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
          r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+)(?![\w@/-]|\.\w)")
_PHONE = r"(?>(?:\+|00)\s?[1-9]\d*(?:[ .-]?(?:\(\d{1,4}\)|\d+))*)(?![\w@/])"
_STATEMENT = re.compile(rf"(?:{_MY}|{_ME})[<(\"']?(?:(?P<email>{_EMAIL})|(?P<phone>{_PHONE}))",
                        re.IGNORECASE)
_QUOTED = re.compile(
    r"^\s*(?:-{2,}\s*(?:forwarded|original)\s+message|begin forwarded message|from:\s"
    r"|on .{1,200} wrote:\s*$)", re.IGNORECASE | re.MULTILINE)
_NO_REPLY = re.compile(r"^(?:no-?reply|do-?not-?reply|mailer-daemon|postmaster|bounces?)\b", re.IGNORECASE)
_TRUNK = re.compile(r"\(0\)")


@dataclass(frozen=True, slots=True)
class Candidate:
    """An identity the sender stated as their own, with the words that say so."""

    identity: Identity
    quote: str


def is_private(message: InboundMessage, private_channels: Collection[str] = PRIVATE_CHANNELS) -> bool:
    """True for a message only the customer and we read: a statement there is evidence."""
    return "dm" in message.tags or message.channel in private_channels


def _could_state(text: str) -> bool:
    """False when no address or international number can be in the text: most messages, cheaply."""
    # an address needs "@", an international number "+" or "00" (_EMAIL, _PHONE)
    return "@" in text or "+" in text or "00" in text


def _own_words(text: str) -> str:
    text = text[:MAX_SCAN_CHARS]
    marker = _QUOTED.search(text)
    if marker:
        text = text[: marker.start()]
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(">"))


def _phone(raw: str) -> Identity | None:
    digits = "".join(c for c in _TRUNK.sub("", raw) if c.isdigit())
    if raw.startswith("00"):
        digits = digits[2:]
    try:
        return parse_sender("+" + digits)
    except ParseError:
        return None


def _email(raw: str, our_domains: Collection[str]) -> Identity | None:
    local, _, domain = raw.lower().rpartition("@")
    if _NO_REPLY.match(local) or any(domain == d or domain.endswith("." + d) for d in our_domains):
        return None
    try:
        return parse_sender(raw)
    except ParseError:
        return None


def _quote(text: str, start: int, end: int) -> str:
    # from the start of the sentence (or a little before the statement) to its identity
    begin = max(text.rfind(c, max(0, start - _CONTEXT_CHARS), start) for c in ".!?\n") + 1
    words = " ".join(text[max(begin, start - _CONTEXT_CHARS):end].split())
    return words if len(words) <= MAX_QUOTE_CHARS else words[: MAX_QUOTE_CHARS - 1] + "…"


def find(message: InboundMessage, *, our_domains: Collection[str] = (),
         private_channels: Collection[str] = PRIVATE_CHANNELS) -> list[Candidate]:
    """The identities a private message states as the sender's own, each once, in order."""
    if not is_private(message, private_channels) or not _could_state(message.text):
        return []
    text = _own_words(message.text)
    found: dict[Identity, Candidate] = {}
    for m in _STATEMENT.finditer(text):
        email = m.group("email")
        identity = _email(email, our_domains) if email else _phone(m.group("phone"))
        if identity is not None and identity != message.sender and identity not in found:
            found[identity] = Candidate(identity, _quote(text, m.start(), m.end()))
    return list(found.values())
