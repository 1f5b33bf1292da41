"""Decisions know no channel: threading, bounces and agents' answers from neutral fields alone."""

from __future__ import annotations

from datetime import UTC, datetime

from processors.brain.thread import ThreadContext, ThreadRules, decide
from processors.intake.agent_mail import answered_conversation
from processors.intake.bounce import receipt_for_bounce
from schemas import Citation, DeliveryReport, Identity, InboundMessage
from schemas.tokens import agent_key, make_token

KEY = b"test-key"
OURS = "con_00000000000000000007"
AT = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


def message(channel: str = "x", **fields: object) -> InboundMessage:
    return InboundMessage(event_id="ev_1", channel=channel, native_id="1790001", thread_key="1790000",
                          sender=Identity(kind="x", value="@ada"), received_at=AT, text="still waiting",
                          **fields)  # type: ignore[arg-type]


def test_a_message_citing_our_post_joins_its_conversation() -> None:
    ours = f"sb.{make_token(OURS, KEY)}.rep_3"
    cites = (Citation(native_id="1789999", via="in reply to post"),
             Citation(native_id=ours, via="in reply to post"))
    decision = decide(message(cites=cites), ThreadContext(), ThreadRules(token_key=KEY))
    assert (decision.conversation_id, decision.decision.outcome) == (OURS, "token")
    assert decision.decision.reasons[0].endswith(f"in reply to post matches our reply <{ours}>")


def test_a_token_the_message_carries_joins_its_conversation() -> None:
    decision = decide(message("chat", reply_token=make_token(OURS, KEY)), ThreadContext(),
                      ThreadRules(token_key=KEY))
    assert (decision.conversation_id, decision.joined) == (OURS, True)


def test_a_delivery_report_on_our_message_is_a_failed_receipt_on_its_channel() -> None:
    report = DeliveryReport(message_ids=(f"sb.{make_token(OURS, KEY)}.rep_3",), outcome="failed",
                            status="30003", reason="unreachable handset")
    receipt = receipt_for_bounce(message("phone", delivery_report=report), KEY)
    assert receipt is not None
    assert (receipt.channel, receipt.conversation_id, receipt.reply_id, receipt.status) == (
        "phone", OURS, "rep_3", "failed")
    assert receipt.reason == "bounced: 30003; unreachable handset"
    assert receipt_for_bounce(message("phone"), KEY) is None


def test_an_agent_token_makes_the_message_an_agents_answer_on_any_channel() -> None:
    token = make_token(OURS, agent_key(KEY))
    assert answered_conversation(message("chat", reply_token=token), KEY) == OURS
    assert answered_conversation(message("chat", reply_token=make_token(OURS, KEY)), KEY) is None
