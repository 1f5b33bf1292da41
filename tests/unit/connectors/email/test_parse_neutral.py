"""parse_email fills the channel-neutral fields decisions read: reply reference, cited ids, token, report."""

from __future__ import annotations

from datetime import UTC, datetime

from connectors.email.parse import parse_email
from schemas.inbound import Citation, DeliveryReport, InboundMessage, ReplyRef
from schemas.tokens import agent_key, make_token, verify_token
from tests.paths import FIXTURES

WHEN = datetime(2024, 3, 15, 12, 0, tzinfo=UTC)
KEY = b"test-key"
CONVERSATION = "con_00000000000000000042"


def _fixture(name: str) -> InboundMessage:
    raw = (FIXTURES / "email" / name).read_bytes()
    return parse_email(raw, account="support@acme.test", received_at=WHEN)


def _mail(headers: str, body: str = "hello") -> InboundMessage:
    raw = f"From: Ada <ada@example.com>\nMessage-ID: <m3@example.com>\n{headers}\n{body}\n".encode()
    return parse_email(raw, account="support@acme.test", received_at=WHEN)


def test_a_threaded_reply_cites_its_parents_and_is_answered_in_its_thread() -> None:
    message = _fixture("outlook_reply.eml")
    own = "DM6PR11MB4321.namprd11.prod.outlook.com"
    assert message.reply_ref == ReplyRef(in_reply_to=own, references=(
        "ticket-8812@acme.test", "ack-8812@acme.test", "follow-up-8812@acme.test", own))
    assert message.cites == (
        Citation(native_id="ack-8812@acme.test", via="In-Reply-To"),
        Citation(native_id="ticket-8812@acme.test", via="References"),
        Citation(native_id="ack-8812@acme.test", via="References"),
        Citation(native_id="follow-up-8812@acme.test", via="References"),
    )
    assert message.reply_token == "tk-9F3A"  # the plus-address it was sent to
    assert message.delivery_report is None


def test_a_first_mail_cites_nothing_and_is_answered_by_its_own_id() -> None:
    message = _mail("To: support@acme.test\nSubject: Order 7\n")
    assert message.reply_ref == ReplyRef(in_reply_to="m3@example.com", references=("m3@example.com",))
    assert (message.cites, message.reply_token, message.delivery_report) == ((), None, None)


def test_a_reply_to_our_mail_cites_our_message_id_with_its_token() -> None:
    ours = f"sb.{make_token(CONVERSATION, KEY)}.rep_1@acme.test"
    message = _mail(f"In-Reply-To: <{ours}>\nReferences: <root@example.com> <{ours}>\n")
    assert message.cites[0] == Citation(native_id=ours, via="In-Reply-To")
    assert [c.native_id for c in message.cites[1:]] == ["root@example.com", ours]
    assert message.reply_ref is not None
    assert message.reply_ref.references == ("root@example.com", ours, "m3@example.com")


def test_a_bounce_reports_which_of_our_mails_failed_and_why() -> None:
    message = _fixture("bounce_dsn.eml")
    assert message.delivery_report == DeliveryReport(
        message_ids=("reply-77-1@acme.test",), recipients=("gone@example.com",), outcome="failed",
        status="5.1.1",
        reason="550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown")


def test_a_delay_notice_is_reported_as_delayed() -> None:
    report = _fixture("bounce_headers_only.eml").delivery_report
    assert report is not None
    assert (report.message_ids, report.outcome, report.status) == (
        ("refund-42@acme.test",), "delayed", "4.4.7")


def test_a_customer_mail_is_no_delivery_report() -> None:
    assert _fixture("apple_mail_reply.eml").delivery_report is None


def test_an_agents_answer_carries_their_signed_token() -> None:
    token = make_token(CONVERSATION, agent_key(KEY))
    message = _mail(f"To: support+{token}@acme.test\nSubject: Re: Refund\n", "Refund sent today.")
    assert message.reply_token == token
    assert verify_token(message.reply_token, agent_key(KEY)) == CONVERSATION


def test_a_ref_line_is_the_token_when_no_plus_address_carries_one() -> None:
    token = make_token(CONVERSATION, KEY)
    message = _mail(f"To: support@acme.test\nSubject: Re: Order 7 [ref:{token}]\n")
    assert message.reply_token == token
