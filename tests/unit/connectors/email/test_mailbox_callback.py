"""The team mailbox shows a call-back task (the number, when, how to mark it made) and a transfer."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from msgspec.structs import replace

from connectors.email.mailbox import render
from connectors.email.settings import SmtpSettings
from schemas import Identity, InboundMessage, RoutedConversation
from schemas.conversation import ConversationCard
from schemas.handoff import Handoff
from schemas.routed import CallbackTask, TransferNote

T0 = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
ADA = Identity(kind="phone", value="+4915123456789")
SMTP = SmtpSettings(host="127.0.0.1", from_address="support@example.com", message_id_domain="example.com")


def handoff(callback: CallbackTask | None) -> Handoff:
    message = InboundMessage(event_id="ev_1", channel="phone", native_id="CA1", thread_key="call:CA1",
                             sender=ADA, received_at=T0, text="Please call me.",
                             subject="Voicemail from +4915123456789")
    routed = RoutedConversation(event_id="ev_1", conversation_id="con_1", customer_id="cus_1",
                                queue="general", priority=2, tier="premium", urgency="normal",
                                routed_at=T0, message=message,
                                first_response_due=T0 + timedelta(hours=2), decisions=(),
                                reply_mode="callback" if callback else "text", callback=callback)
    card = ConversationCard(conversation_id="con_1", customer_id="cus_1", channel="phone", recipient=ADA,
                            queue="general", tier="premium", urgency="normal", priority=2, status="open",
                            opened_at=T0, updated_at=T0, callback=callback)
    return Handoff(delivery_id="dlv_1", destination="team", event="conversation.routed", card=card,
                   routed=routed)


def body(callback: CallbackTask | None) -> str:
    mail, _ = render(handoff(callback), SMTP, "team@example.com", "tok", now=T0)
    return str(mail.get_content())


def test_the_task_leads_the_mail_with_the_number_and_the_due_time() -> None:
    text = body(CallbackTask(number=ADA.value, due=T0 + timedelta(hours=2)))
    assert ("CALL BACK +4915123456789 by 2026-03-03T11:00+00:00; mark it done with "
            "POST /v1/conversations/con_1/callback") in text
    assert "CALL BACK" not in body(None)


def test_a_transfer_tells_the_new_team_who_moved_it_and_why_instead_of_a_message() -> None:
    base = handoff(None)
    assert base.routed is not None
    note = TransferNote(from_queue="general", at=T0, by="maria", note="wants a refund")
    moved = replace(base.routed, message=None, transfer=note, queue="billing")
    mail, _ = render(dataclasses.replace(base, routed=moved, event="conversation.transferred"), SMTP,
                     "team@example.com", "tok", now=T0)
    text = str(mail.get_content())
    assert "Customer: +4915123456789 (premium), via phone" in text
    assert "\nTransferred from general by maria: wants a refund\n" in text
    assert "Please call me." not in text
    assert mail["X-Switchboard-Event"] == "conversation.transferred"
