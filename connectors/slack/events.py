"""Slack's Events API: check a request's signature, then read what it says.

Pure. Slack signs `v0:<X-Slack-Request-Timestamp>:<raw body>` with HMAC-SHA256 and the
app's signing secret and sends `X-Slack-Signature: v0=<hex>`; the timestamp is inside
the signed bytes, so a request older than five minutes is refused as a possible replay.
The signature is checked on the raw bytes before anything is parsed.

What counts as an agent's reply: a plain `message` event from a person (no `bot_id`, no
subtype but `thread_broadcast`) inside a thread (`thread_ts` set and not its own `ts`).
Edits, deletions, bots (our own posts included), joins, top-level messages and every
other event type are ignored with a reason.

Agents also talk to each other in the thread: a message whose text starts with `note:`
or `//` (any case, after trimming) is an internal note (`SlackNote`, its text without the
prefix), which joins the conversation's history and never reaches the customer. A
message starting with `called:` marks the conversation's call back made (`SlackCalled`):
the agent reached the customer by phone, the words after it are kept as the note. A
message starting with `transfer:` moves the conversation to the queue named next, the
rest being the note for that queue's team (`SlackTransfer`: "transfer: billing wants a
refund"). Every other message in the thread is an answer to the customer.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

import msgspec

from connectors.slack.errors import SignatureError
from schemas.codec import decode_json
from schemas.errors import ParseError

__all__ = [
    "CALLED_PREFIX",
    "NOTE_PREFIXES",
    "RETRY_NUM_HEADER",
    "RETRY_REASON_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "TOLERANCE_SECONDS",
    "TRANSFER_PREFIX",
    "Ignored",
    "SlackCalled",
    "SlackEvent",
    "SlackNote",
    "SlackReply",
    "SlackTransfer",
    "UrlVerification",
    "note_text",
    "parse",
    "plain_text",
    "signature",
    "verify",
]

SIGNATURE_HEADER = "X-Slack-Signature"
TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"
RETRY_NUM_HEADER = "X-Slack-Retry-Num"
RETRY_REASON_HEADER = "X-Slack-Retry-Reason"
TOLERANCE_SECONDS = 300.0
_SECONDS = re.compile(r"[0-9]{1,12}")  # ASCII digits only, few enough to compare with a float clock
_SIGNED = re.compile(r"v0=[0-9a-fA-F]{64}")
_REPLY_SUBTYPES = frozenset({None, "thread_broadcast"})
# what marks a thread message as agents talking among themselves, not to the customer
NOTE_PREFIXES = ("note:", "//")
# what marks a thread message as "I called the customer back and reached them"
CALLED_PREFIX = "called:"
# what marks a thread message as "this belongs to another queue": the queue, then the note
TRANSFER_PREFIX = "transfer:"
# <https://x|label>, <mailto:a@b|a@b>, <@U123>, <@U123|ana>, <#C123|general>, <!here>, ...
_MARKUP = re.compile(r"<([^<>\n]*)>")


@dataclass(frozen=True, slots=True)
class SlackReply:
    """A person's message in a thread: what an agent answered in a conversation's thread."""

    channel: str
    thread_ts: str
    ts: str
    user: str
    text: str
    event_id: str


@dataclass(frozen=True, slots=True)
class SlackNote(SlackReply):
    """A person's internal note in a thread (`note:` or `//`): for the history, not the customer."""


@dataclass(frozen=True, slots=True)
class SlackCalled(SlackReply):
    """A person marking the conversation's call back made (`called:`), with what they say of it."""


@dataclass(frozen=True, slots=True)
class SlackTransfer(SlackReply):
    """A person moving the conversation to `queue` (`transfer:`); `text` is their note for its team."""

    queue: str = ""


@dataclass(frozen=True, slots=True)
class UrlVerification:
    """Slack checking the endpoint when the app's request URL is set: echo the challenge."""

    challenge: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """A genuine request that asks nothing of us, and why."""

    reason: str
    event_id: str | None = None


SlackEvent = SlackReply | SlackNote | SlackCalled | SlackTransfer | UrlVerification | Ignored


class _Envelope(msgspec.Struct):
    type: str
    challenge: str | None = None
    event_id: str | None = None
    event: msgspec.Raw = msgspec.Raw()


class _Kind(msgspec.Struct):
    type: str = ""
    subtype: str | None = None


class _Message(msgspec.Struct):
    channel: str = ""
    user: str | None = None
    text: str | None = None
    ts: str = ""
    thread_ts: str | None = None
    subtype: str | None = None
    bot_id: str | None = None
    hidden: bool = False


_envelope = msgspec.json.Decoder(_Envelope)
_kind = msgspec.json.Decoder(_Kind)
_message = msgspec.json.Decoder(_Message)


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The `X-Slack-Signature` value of a body sent at `timestamp` (unix seconds, as sent)."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret, base, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, *, timestamp: str | None, signed: str | None, now: float,
           tolerance: float = TOLERANCE_SECONDS) -> None:
    """Check a request's signature headers against its raw body; SignatureError says what is wrong.

    Each header's length and characters are checked before it is converted or compared,
    so a hostile header is refused like any other, never an error of another kind.
    """
    if not timestamp or not signed:
        raise SignatureError(f"{TIMESTAMP_HEADER} and {SIGNATURE_HEADER} are both required")
    if not _SECONDS.fullmatch(timestamp):
        raise SignatureError(f"{TIMESTAMP_HEADER} {timestamp[:20]!r} is not a whole number of unix seconds")
    if abs(now - int(timestamp)) > tolerance:
        raise SignatureError(f"timestamp is {abs(now - int(timestamp)):.0f}s away from now, "
                             f"more than the {tolerance:.0f}s allowed")
    if not _SIGNED.fullmatch(signed):
        # a malformed value cannot match: said so, without comparing it
        raise SignatureError(f"signature does not match the body ({SIGNATURE_HEADER} is not v0=<hex>)")
    if not hmac.compare_digest(signature(secret, timestamp, body), signed.lower()):
        raise SignatureError("signature does not match the body")


def parse(body: bytes) -> SlackEvent:
    """Read a verified Events API body; ParseError if it is not an envelope at all."""
    try:
        envelope = decode_json(body, _envelope)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise ParseError(f"not a Slack Events API envelope: {e}") from e
    if envelope.type == "url_verification":
        if not envelope.challenge:
            raise ParseError("url_verification without a challenge")
        return UrlVerification(envelope.challenge)
    event_id = envelope.event_id
    if envelope.type != "event_callback":
        return Ignored(f"envelope type {envelope.type[:40]!r} is not handled", event_id)
    if not envelope.event:
        raise ParseError("event_callback without an event")
    try:
        kind = _kind.decode(envelope.event)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise ParseError(f"event is not an object with a type: {e}") from e
    if kind.type != "message":
        return Ignored(f"a {kind.type[:40] or 'untyped'} event, not a message", event_id)
    try:
        message = _message.decode(envelope.event)
    except msgspec.ValidationError as e:
        return Ignored(f"a message event of an unexpected shape: {e}", event_id)
    return _reply(message, event_id or "")


def _reply(m: _Message, event_id: str) -> SlackReply | SlackNote | SlackCalled | SlackTransfer | Ignored:
    """The agent's reply (or internal note) a message is, or why it is none."""
    user, thread_ts, text = m.user or "", m.thread_ts or "", plain_text(m.text or "")
    note = note_text(text)
    why: str | None = None
    if m.bot_id is not None:
        why = "a bot's message (our own posts included)"
    elif m.subtype not in _REPLY_SUBTYPES:
        why = f"a {m.subtype} message, not a plain answer (edits, deletions, files are not sent)"
    elif m.hidden or not user:
        why = "a message without an author"
    elif not thread_ts:
        why = "a message outside any thread"
    elif thread_ts == m.ts:
        why = "a thread's own first message"
    elif not m.channel or not m.ts:
        why = "a message without its channel or ts"
    elif not text:
        why = "a message without text (files are not carried to customers)"
    elif note == "":
        why = "an internal note without text"
    if why is not None:
        return Ignored(why, event_id or None)
    if note is not None:
        return SlackNote(channel=m.channel, thread_ts=thread_ts, ts=m.ts, user=user, text=note,
                         event_id=event_id)
    if text.strip()[:len(CALLED_PREFIX)].lower() == CALLED_PREFIX:
        return SlackCalled(channel=m.channel, thread_ts=thread_ts, ts=m.ts, user=user,
                           text=text.strip()[len(CALLED_PREFIX):].strip(), event_id=event_id)
    if text.strip()[:len(TRANSFER_PREFIX)].lower() == TRANSFER_PREFIX:
        # "transfer: billing, wants a refund": the queue's name, then the note (either may be empty)
        words = text.strip()[len(TRANSFER_PREFIX):].split(maxsplit=1)
        queue = words[0].rstrip(":,.") if words else ""
        note = words[1].lstrip("-:, ").strip() if len(words) > 1 else ""
        return SlackTransfer(channel=m.channel, thread_ts=thread_ts, ts=m.ts, user=user, text=note,
                             event_id=event_id, queue=queue)
    return SlackReply(channel=m.channel, thread_ts=thread_ts, ts=m.ts, user=user,
                      text=text, event_id=event_id)


def note_text(text: str) -> str | None:
    """The words of an internal note without its prefix; None when `text` is not a note."""
    trimmed = text.strip()
    for prefix in NOTE_PREFIXES:
        if trimmed[:len(prefix)].lower() == prefix:
            return trimmed[len(prefix):].strip()
    return None


def plain_text(text: str) -> str:
    """Slack's message markup made into the plain words a customer should read.

    Links become their label (and address when the label is not part of it), mentions
    their name, `<!here>` `@here`; then Slack's escapes (&amp; &lt; &gt;) are undone.
    """
    return _unescape(_MARKUP.sub(_plain, text)).strip()


def _plain(match: re.Match[str]) -> str:
    inner = match.group(1)
    target, _, label = inner.partition("|")
    if target.startswith(("@", "#")):
        return f"{target[0]}{label.lstrip('@#')}" if label else target
    if target.startswith("!"):
        if label:
            return label
        command = target[1:].split("^")[0]
        return f"@{command}" if command in ("here", "channel", "everyone") else ""
    address = target.removeprefix("mailto:")
    # Slack's own auto-links label an address with itself, less its scheme
    if not label or label.rstrip("/") == address.split("://", 1)[-1].rstrip("/"):
        return label or address
    return f"{label} ({address})"


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
