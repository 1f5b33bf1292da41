from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from connectors.email.mime import message_id_for
from processors.brain.thread import ThreadContext, ThreadRules, decide, normalise_subject
from processors.intake.bounce import receipt_for_bounce, reply_of
from schemas import EmailExtras, Identity, InboundMessage
from schemas.ids import new_conversation_id
from schemas.tokens import continuation_key, continuation_token, make_token

KEY = b"test-key"
RULES = ThreadRules(token_key=KEY)
T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
OURS = "con_00000000000000000001"
TOKEN = make_token(OURS, KEY)
FORGED = "con_00000000000000000002.0123456789"
# a continuation mail's Reply-To token, for ada's address, good until a day after T0
CONTINUED = continuation_token(OURS, "ada@example.com", date(2026, 5, 5), continuation_key(KEY))


def mail(subject: str | None = "Order", at: datetime = T0, **extras: object) -> InboundMessage:
    return InboundMessage(
        event_id="ev_m1", channel="email", native_id="m1@x", thread_key="root@x",
        sender=Identity(kind="email", value="ada@example.com"), received_at=at, text="hi",
        subject=subject, extras=EmailExtras(message_id="m1@x", **extras),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("message", "ctx", "conversation", "outcome", "because"),
    [
        (mail(in_reply_to=(f"sb.{TOKEN}.rep_1@support.example.com",)),
         ThreadContext(known_thread="con_thread00000000000000"),
         OURS, "token", "In-Reply-To matches our reply"),
        # Outlook rewrote In-Reply-To; References still has our id
        (mail(in_reply_to=("AM0PR01@outlook.com",), references=(f"sb.{TOKEN}.rep_1@s.example",)),
         ThreadContext(), OURS, "token", "References matches our reply"),
        (mail(reply_token=TOKEN), ThreadContext(), OURS, "token", "reply address token"),
        (mail(in_reply_to=(f"sb.{FORGED}.x@s.example",)), ThreadContext(), None, "new", "no token"),
        # the answer to a continuation mail whose client dropped In-Reply-To and References
        (mail(reply_token=CONTINUED), ThreadContext(), OURS, "token", "continuation token mailed to them"),
        # expired: it still names the conversation; whether it may join is the thread guard's (ownership)
        (mail(reply_token=CONTINUED, at=T0 + timedelta(days=3)), ThreadContext(), OURS, "token",
         "continuation token"),
        # altered (a later last day): no conversation of ours
        (mail(reply_token=CONTINUED.replace(".0", ".f", 1)), ThreadContext(), None, "new", "no token"),
        (mail(), ThreadContext(known_thread="con_thread00000000000000"),
         "con_thread00000000000000", "channel_thread", "already this conversation"),
        (mail(), ThreadContext(), None, "new", "no token of ours and no known channel thread"),
    ],
)
def test_threading_signals_in_order_of_strength(
    message: InboundMessage, ctx: ThreadContext, conversation: str | None, outcome: str, because: str
) -> None:
    decision = decide(message, ctx, RULES)
    assert decision.conversation_id == (conversation or new_conversation_id(message.event_id))
    assert decision.joined == (outcome != "new")
    assert decision.decision.outcome == outcome
    assert because in decision.decision.reasons[0]


@pytest.mark.parametrize(
    ("subject", "normalised"),
    [("Re: RE: Aw: Order 7", "order 7"), ("  Fwd:  Re[2]: Hello  World ", "hello world"),
     (None, ""), ("Réponse", "réponse"), ("re:", "")],
)
def test_subjects_are_normalised(subject: str | None, normalised: str) -> None:
    assert normalise_subject(subject) == normalised


def test_a_bounce_names_the_reply_our_message_id_carried() -> None:
    built = message_id_for(OURS, "rep_0123456789abcdef01234567", KEY, "support.example.com")
    assert reply_of(built, KEY) == (OURS, "rep_0123456789abcdef01234567")
    odd = message_id_for(OURS, "rep with spaces", KEY, "support.example.com")
    assert " " not in odd and reply_of(odd, KEY) is not None


def test_bounce_of_our_reply_becomes_a_failed_receipt() -> None:
    ours = f"sb.{TOKEN}.rep_42@support.example.com"
    assert reply_of(ours, KEY) == (OURS, "rep_42")
    assert reply_of(f"sb.{FORGED}.rep_42@x", KEY) is None
    bounce = mail(bounce_message_ids=("other@x", ours), bounce_status="5.1.1",
                  bounce_reason="user unknown")
    receipt = receipt_for_bounce(bounce, KEY)
    assert receipt is not None
    assert (receipt.reply_id, receipt.conversation_id, receipt.status) == ("rep_42", OURS, "failed")
    assert receipt.reason == "bounced: 5.1.1; user unknown"
    assert receipt_for_bounce(mail(bounce_message_ids=("other@x",)), KEY) is None


def test_a_continuation_token_from_another_address_names_no_conversation() -> None:
    other = InboundMessage(
        event_id="ev_m2", channel="email", native_id="m2@x", thread_key="m2@x",
        sender=Identity(kind="email", value="eve@example.net"), received_at=T0, text="hi",
        reply_token=CONTINUED)
    assert not decide(other, ThreadContext(), RULES).joined
