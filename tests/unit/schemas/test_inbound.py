"""InboundMessage's neutral fields: older events stay decodable, and an email one keeps its thread."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from schemas import (
    ApiExtras,
    Citation,
    DeliveryReport,
    EmailExtras,
    Identity,
    InboundMessage,
    ReplyRef,
    decode,
    encode,
)

NEW_FIELDS = ("reply_ref", "reply_token", "cites", "delivery_report")
AT = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


def message(extras: EmailExtras | ApiExtras | None, channel: str = "email") -> InboundMessage:
    return InboundMessage(event_id="ev_1", channel=channel, native_id="m2@x", thread_key="root@x",
                          sender=Identity(kind="email", value="ada@example.com"), received_at=AT,
                          text="hi", extras=extras)


def written_before_the_fields(event: InboundMessage) -> bytes:
    """The event as a connector of the previous release wrote it."""
    doc = json.loads(encode(event))
    for name in NEW_FIELDS:
        doc.pop(name)
    return json.dumps(doc).encode()


def test_an_older_email_event_gets_the_neutral_fields_from_its_extras() -> None:
    extras = EmailExtras(message_id="m2@x", in_reply_to=("m1@x",), references=("root@x", "m1@x"),
                         reply_token="tk-1", bounce_message_ids=("ours@x",), bounce_status="5.1.1")
    old = decode(written_before_the_fields(message(extras)), InboundMessage)
    assert old.reply_ref == ReplyRef(in_reply_to="m2@x", references=("root@x", "m1@x", "m2@x"))
    assert old.cites == (Citation(native_id="m1@x", via="In-Reply-To"),
                         Citation(native_id="root@x", via="References"),
                         Citation(native_id="m1@x", via="References"))
    assert old.reply_token == "tk-1"
    assert old.delivery_report == DeliveryReport(message_ids=("ours@x",), status="5.1.1")


def test_an_older_event_of_another_channel_decodes_with_empty_fields() -> None:
    old = decode(written_before_the_fields(message(ApiExtras(), channel="api")), InboundMessage)
    assert (old.reply_ref, old.reply_token, old.cites, old.delivery_report) == (None, None, (), None)


def test_fields_a_connector_filled_are_kept_as_they_are() -> None:
    ref = ReplyRef(in_reply_to="post-9")
    event = InboundMessage(event_id="ev_1", channel="email", native_id="m2@x", thread_key="t",
                           sender=Identity(kind="email", value="ada@example.com"), received_at=AT,
                           text="hi", extras=EmailExtras(message_id="m2@x", reply_token="tk-1"),
                           reply_ref=ref)
    assert (event.reply_ref, event.reply_token) == (ref, None)
    assert decode(encode(event), InboundMessage) == event


def test_a_mail_that_is_no_bounce_reports_nothing() -> None:
    assert message(EmailExtras(message_id="m2@x")).delivery_report is None
