"""InboundMessage: every channel's message in one normalised shape (topic `sb.inbound.v1`)."""

from __future__ import annotations

from datetime import datetime

import msgspec

from schemas.identity import Identity

__all__ = [
    "ApiExtras",
    "Attachment",
    "EmailExtras",
    "Extras",
    "InboundMessage",
]




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
    """Mail headers that threading, replies and bounce handling need."""

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


Extras = ApiExtras | EmailExtras


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
