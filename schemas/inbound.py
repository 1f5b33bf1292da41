"""InboundMessage: every channel's message in one normalised shape (topic `sb.inbound.v1`)."""

from __future__ import annotations

from datetime import datetime

import msgspec
from msgspec.structs import force_setattr

from schemas.identity import Identity

__all__ = [
    "ApiExtras",
    "Attachment",
    "ChatExtras",
    "Citation",
    "DeliveryReport",
    "EmailExtras",
    "Extras",
    "InboundMessage",
    "PhoneExtras",
    "ReplyRef",
    "XExtras",
]


class ReplyRef(msgspec.Struct, frozen=True, kw_only=True):
    """What a reply to a message must cite to stay in the customer's thread, in the channel's ids."""

    # the native id the reply answers: a Message-ID, a post id, a call id, a chat message id
    in_reply_to: str
    # the thread's native ids the reply carries along, oldest first; empty where the channel keeps none
    references: tuple[str, ...] = ()


class Citation(msgspec.Struct, frozen=True, kw_only=True):
    """A native id of an earlier message that this one says it answers."""

    native_id: str
    # where the channel found it, in its own words: "In-Reply-To", "References", "in reply to post"
    via: str


class DeliveryReport(msgspec.Struct, frozen=True, kw_only=True):
    """A channel's report that messages of ours did not (yet) arrive: a bounce, an undelivered text."""

    # the native ids of our messages it reports on
    message_ids: tuple[str, ...] = ()
    # the recipients it failed for, as the channel names them
    recipients: tuple[str, ...] = ()
    # what happened, in the channel's words: "failed", "delayed"
    outcome: str | None = None
    # the channel's status code ("5.1.1") and its diagnostic text
    status: str | None = None
    reason: str | None = None


class Attachment(msgspec.Struct, frozen=True, kw_only=True):
    """Metadata of one attachment; the bytes stay where the raw message lives."""

    name: str | None
    content_type: str
    size: int
    content_id: str | None = None


class ApiExtras(msgspec.Struct, frozen=True, kw_only=True, tag="api"):
    """What the built-in API channel carries beside the text."""

    metadata: dict[str, str] = {}


class EmailExtras(msgspec.Struct, frozen=True, kw_only=True, tag="email"):
    """The mail's own headers, for agents' tools; decisions read the neutral fields derived from them."""

    # message ids are kept without angle brackets
    message_id: str
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    reply_to: str | None = None
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    account: str = ""
    auto_submitted: str | None = None
    list_id: str | None = None
    # tag of our plus-addressed reply address (support+<token>@...) or a [ref:<token>]
    reply_token: str | None = None
    # set only on mail tagged "bounce": the returned message's id(s), the recipients it
    # failed for, and the DSN action ("failed", "delayed"), status ("5.1.1") and diagnostic
    bounce_message_ids: tuple[str, ...] = ()
    bounce_recipients: tuple[str, ...] = ()
    bounce_action: str | None = None
    bounce_status: str | None = None
    bounce_reason: str | None = None

    def reply_ref(self) -> ReplyRef:
        """A reply cites this mail's Message-ID, its References followed by that id."""
        return ReplyRef(in_reply_to=self.message_id, references=(*self.references, self.message_id))

    def cites(self) -> tuple[Citation, ...]:
        """The ids this mail answers: In-Reply-To's, then References'."""
        return (*(Citation(native_id=i, via="In-Reply-To") for i in self.in_reply_to),
                *(Citation(native_id=i, via="References") for i in self.references))

    def delivery_report(self) -> DeliveryReport | None:
        """What a bounce reports, or None when this mail is none."""
        report = DeliveryReport(
            message_ids=self.bounce_message_ids, recipients=self.bounce_recipients,
            outcome=self.bounce_action, status=self.bounce_status, reason=self.bounce_reason)
        return None if report == DeliveryReport() else report


class ChatExtras(msgspec.Struct, frozen=True, kw_only=True, tag="chat"):
    """A web chat message's session and place in its log, and the address the visitor gave."""

    session: str
    # the message's number in the conversation's chat log (0: not logged, e.g. parsed for `explain`)
    seq: int = 0
    # an address typed into the widget is only an attribute: it links to no customer
    # unless verified (the website's identity hash, or the visitor answering our mail)
    email: str | None = None
    email_verified: bool = False
    origin: str | None = None


class PhoneExtras(msgspec.Struct, frozen=True, kw_only=True, tag="phone"):
    """A call to our number: the voicemail's recording and transcript, and how far to trust the caller."""

    call_sid: str
    # the number the customer called (ours), E.164
    to: str
    # "voicemail", or "missed_call" when the caller hung up before leaving one
    kind: str = "voicemail"
    recording_sid: str | None = None
    recording_url: str | None = None
    recording_seconds: int | None = None
    transcription_sid: str | None = None
    # "completed", "failed", or None when no transcript came in time
    transcription_status: str | None = None
    # the carrier's STIR/SHAKEN verdict, e.g. "TN-Validation-Passed-A"; None when not given
    stir_verstat: str | None = None
    # only full attestation (A) vouches for the number; anything less may be spoofed
    caller_verified: bool = False
    caller_name: str | None = None
    caller_country: str | None = None



class XExtras(msgspec.Struct, frozen=True, kw_only=True, tag="x"):
    """What an X post or DM carries beside the text: ids, the author's handle and name."""

    # "post" for a public mention or reply, "dm" for a direct message
    kind: str
    # our account's user id, which the event was for
    account: str
    author_id: str
    # handle (without @) and display name at the time of the event: attributes, not identity
    handle: str | None = None
    name: str | None = None
    # the post's conversation id, or the DM conversation id
    conversation_id: str | None = None
    # the post this one replies to, when it is a reply
    replied_to: str | None = None
    lang: str | None = None
    # the post @mentioned or quoted our account, so X lets us answer it publicly
    summoned: bool = False
    # the X Activity API delivery that carried it ("" when read by polling)
    event_uuid: str = ""
    # an encrypted DM: only ciphertext arrived, the text is our notice
    encrypted: bool = False
    # partial errors X returned beside the data (a protected or deleted post it references)
    errors: tuple[str, ...] = ()


Extras = ApiExtras | EmailExtras | PhoneExtras | XExtras | ChatExtras


class InboundMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One customer message from any channel, normalised.

    Topic `sb.inbound.v1`, keyed by `thread_key` (the channel's own conversation key),
    because the customer is not yet known.
    """

    event_id: str
    channel: str
    native_id: str
    thread_key: str
    sender: Identity
    received_at: datetime
    text: str
    subject: str | None = None
    raw_ref: str | None = None
    attachments: tuple[Attachment, ...] = ()
    # markers such as "auto_reply", "mailing_list": they change handling, not routing
    tags: tuple[str, ...] = ()
    extras: Extras | None = None
    # what our reply must cite to stay in the customer's thread; None: the native id alone
    reply_ref: ReplyRef | None = None
    # a signed token of ours the message carries (reply address, [ref:] line, link): a
    # customer's names their conversation, an agent's marks the message as their answer
    reply_token: str | None = None
    # earlier messages this one says it answers, most direct first: threading evidence
    cites: tuple[Citation, ...] = ()
    # set when the message is the channel reporting on ours (a bounce), not someone writing
    delivery_report: DeliveryReport | None = None

    def __post_init__(self) -> None:
        """Give an email event written before the neutral fields existed those of its extras."""
        # connectors fill the neutral fields; an older event (still on a topic after an
        # upgrade) or one built from extras alone has them only in its email extras
        extras = self.extras
        if self.reply_ref is None and isinstance(extras, EmailExtras):
            force_setattr(self, "reply_ref", extras.reply_ref())
            force_setattr(self, "reply_token", self.reply_token or extras.reply_token)
            force_setattr(self, "cites", self.cites or extras.cites())
            force_setattr(self, "delivery_report", self.delivery_report or extras.delivery_report())
