"""Our outgoing MIME: subjects, threading headers, tokens, bodies, automatic-reply marks."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest

from connectors.email.mime import (
    MAX_REFERENCES,
    build_reply,
    message_id_for,
    reply_subject,
    thread_references,
)
from connectors.email.parse import parse_email
from connectors.email.settings import SmtpSettings
from schemas.errors import PermanentError
from schemas.identity import Identity
from schemas.inbound import EmailExtras
from schemas.outbound import OutboundMessage
from schemas.tokens import find_tokens, make_token, verify_token

KEY = b"unit-test-key"
CONVERSATION = "con_00112233445566778899"
NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
SMTP = SmtpSettings(host="smtp.example.com", from_address="help@example.com",
                    from_name="Example Help", message_id_domain="sb.example.com")
TOKEN = make_token(CONVERSATION, KEY)


def outbound(**overrides: Any) -> OutboundMessage:
    values: dict[str, Any] = {
        "reply_id": "rep_1", "conversation_id": CONVERSATION, "channel": "email",
        "recipient": Identity(kind="email", value="ada@example.org"), "kind": "agent_reply",
        "text": "Line one\nLine <two> & more", "created_at": NOW, "subject": "Help",
    }
    values.update(overrides)
    return OutboundMessage(**values)


def built(**overrides: Any) -> tuple[EmailMessage, bytes]:
    reply = build_reply(outbound(**overrides), SMTP, KEY, now=NOW)
    message = message_from_bytes(reply.data.replace(b"\r\n", b"\n"), policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message, reply.data


@pytest.mark.parametrize(("original", "expected"), [
    ("Help", "Re: Help"),
    ("Re: Help", "Re: Help"),
    ("RE: re: Re:Help", "Re: Help"),
    ("Aw: Sv: AW: Antw: Odp: VS: Ynt: Help", "Re: Help"),
    ("Re[2]: Re(3): Help", "Re: Help"),
    ("Re : Help", "Re: Help"),
    ("回复\uff1a帮助", "Re: 帮助"),
    ("Fwd: Help", "Re: Fwd: Help"),
    ("Re: Fwd: Re: Help", "Re: Fwd: Re: Help"),
    ("Reset my password", "Re: Reset my password"),
    ("Area 51: Re: x", "Re: Area 51: Re: x"),
    ("", "Re:"),
    (None, "Re:"),
    ("Re:", "Re:"),
    ("  spaced\tout  ", "Re: spaced out"),
    ("Help\r\nBcc: victim@example.org", "Re: Help Bcc: victim@example.org"),
])
def test_reply_subject(original: str | None, expected: str) -> None:
    assert reply_subject(original) == expected


def test_reply_subject_is_bounded() -> None:
    subject = reply_subject("x" * 5000)
    assert len(subject) < 300 and subject.endswith("…")


@pytest.mark.parametrize(("previous", "parent", "expected"), [
    ((), None, ()),
    ((), "<p@x>", ("p@x",)),
    (("a@x", "<b@x>"), "<p@x>", ("a@x", "b@x", "p@x")),
    (("a@x", "p@x", "a@x"), "p@x", ("a@x", "p@x")),
    (("a@x", "has space@x", "<bad<@x>", ""), "p@x", ("a@x", "p@x")),
    (("<ré@x>", "<a@x>", "<日本@x>", "<tab\t@x>", "<nbsp\xa0@x>"), "<ünï@x>", ("a@x",)),
])
def test_thread_references(previous: tuple[str, ...], parent: str | None,
                           expected: tuple[str, ...]) -> None:
    assert thread_references(previous, parent) == expected


def test_thread_references_keep_the_root_and_the_latest() -> None:
    chain = tuple(f"m{i}@x" for i in range(100))
    kept = thread_references(chain, "parent@x")
    assert len(kept) == MAX_REFERENCES
    assert kept[0] == "m0@x" and kept[-1] == "parent@x" and kept[-2] == "m99@x"


def test_message_id_is_stable_per_reply_and_carries_a_valid_token() -> None:
    first = message_id_for(CONVERSATION, "rep_1", KEY, "sb.example.com")
    assert first == message_id_for(CONVERSATION, "rep_1", KEY, "sb.example.com")
    assert first != message_id_for(CONVERSATION, "rep_2", KEY, "sb.example.com")
    match = re.fullmatch(r"sb\.(.+)\.(rep_1)@sb\.example\.com", first)
    assert match and verify_token(match.group(1), KEY) == CONVERSATION
    assert find_tokens(first) == [TOKEN]


def test_agent_reply_headers() -> None:
    message, raw = built(in_reply_to="<parent@example.org>", references=("root@example.org",))
    assert message["From"] == "Example Help <help@example.com>"
    assert message["To"] == "ada@example.org"
    assert message["Reply-To"] == f"Example Help <help+{TOKEN}@example.com>"
    assert message["Subject"] == "Re: Help"
    assert message["Date"] == "Mon, 23 Nov 2026 09:30:00 +0000"
    assert message["In-Reply-To"] == "<parent@example.org>"
    assert message["References"] == "<root@example.org> <parent@example.org>"
    assert message["Message-ID"] == f"<{message_id_for(CONVERSATION, 'rep_1', KEY, 'sb.example.com')}>"
    assert message["Auto-Submitted"] is None and message["X-Auto-Response-Suppress"] is None
    # a long id stays on its header's line
    assert re.search(rb"\r\nMessage-ID: <sb\.[^\r\n]+>\r\n", raw)
    assert b"\n\n" not in raw.split(b"\r\n\r\n")[0]
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


def test_no_parent_means_no_threading_headers() -> None:
    message, _ = built()
    assert message["In-Reply-To"] is None and message["References"] is None


@pytest.mark.parametrize(("kind", "automatic"), [
    ("agent_reply", False), ("acknowledgement", True), ("status_update", True), ("follow_up", True),
])
def test_automatic_kinds_are_marked(kind: str, automatic: bool) -> None:
    message, _ = built(kind=kind)
    assert (message["Auto-Submitted"] == "auto-replied") is automatic
    assert (message["X-Auto-Response-Suppress"] == "All") is automatic
    if not automatic:
        assert message["Auto-Submitted"] is None


def test_text_and_html_alternatives_with_the_footer() -> None:
    message, _ = built()
    assert message.get_content_type() == "multipart/alternative"
    text, html = (part.get_content() for part in message.iter_parts())
    assert text == f"Line one\nLine <two> & more\n\n[ref:{TOKEN}]\n"
    assert "Line one<br>\nLine &lt;two&gt; &amp; more" in html
    assert f"[ref:{TOKEN}]" in html


def test_given_html_gets_the_footer_inside_its_body() -> None:
    message, _ = built(html="<html><body><p>Hi <b>Ada</b></p></BODY></html>")
    html = next(p for p in message.iter_parts() if p.get_content_type() == "text/html").get_content()
    assert html.startswith("<html><body><p>Hi <b>Ada</b></p>")
    assert html.index(f"[ref:{TOKEN}]") < html.index("</BODY>")


def test_non_ascii_is_encoded_for_the_wire() -> None:
    reply = build_reply(outbound(text="Grüße, Zoë 👋", subject="Überweisung"), SMTP.model_copy(
        update={"from_name": "Kundendienst Müller"}), KEY, now=NOW)
    reply.data.decode("ascii")  # 7-bit clean: any server takes it
    message = message_from_bytes(reply.data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    assert message["Subject"] == "Re: Überweisung"
    assert message["From"] == "Kundendienst Müller <help@example.com>"
    body = message.get_body(("plain",))
    assert body is not None and "Grüße, Zoë 👋" in body.get_content()


def test_reply_to_a_customer_with_a_non_ascii_message_id() -> None:
    # RFC 6532 clients may send UTF-8 message ids; the 7-bit fold used to raise UnicodeEncodeError
    message, raw = built(in_reply_to="<ünïcödé-42@exämple.org>",
                         references=("<root@example.org>", "<rüt@example.org>"))
    raw.decode("ascii")
    assert message["In-Reply-To"] is None
    assert message["References"] == "<root@example.org>"


def test_reply_to_a_parsed_mail_whose_ids_are_utf8() -> None:
    raw = ("From: Zoë <zoe@example.org>\nSubject: Frage\nMessage-ID: <ünï-1@exämple.org>\n"
           "References: <root@example.org> <wurzel-ü@example.org>\n\nHallo\n").encode()
    customer = parse_email(raw, received_at=NOW)
    extras = customer.extras
    assert isinstance(extras, EmailExtras) and extras.message_id == "ünï-1@exämple.org"
    message, data = built(in_reply_to=extras.message_id,
                          references=(*extras.references, extras.message_id))
    data.decode("ascii")
    assert message["In-Reply-To"] is None
    assert message["References"] == "<root@example.org>"


def test_idn_recipient_domain_goes_out_as_ascii() -> None:
    reply = build_reply(outbound(recipient=Identity(kind="email", value="ada@exämple.org")),
                        SMTP, KEY, now=NOW)
    reply.data.decode("ascii")
    assert reply.recipient == "ada@xn--exmple-cua.org"
    assert reply.message["To"] == "ada@xn--exmple-cua.org"


@pytest.mark.parametrize("recipient", [
    Identity(kind="email", value="jörg@example.org"),
    Identity(kind="email", value="ada@exa\u200bmple..org"),
    Identity(kind="phone", value="+14155550100"),
    Identity(kind="email", value="not an address@example.org"),
])
def test_unaddressable_recipients_are_permanent_errors(recipient: Identity) -> None:
    with pytest.raises(PermanentError):
        build_reply(outbound(recipient=recipient), SMTP, KEY, now=NOW)


def test_envelope_and_returned_id() -> None:
    reply = build_reply(outbound(), SMTP, KEY, now=NOW)
    assert (reply.sender, reply.recipient) == ("help@example.com", "ada@example.org")
    assert reply.message_id == message_id_for(CONVERSATION, "rep_1", KEY, "sb.example.com")
    assert reply.message["Message-ID"] == f"<{reply.message_id}>"
