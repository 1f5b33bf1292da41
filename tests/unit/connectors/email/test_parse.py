"""parse_email: real and ugly mail in, an InboundMessage or a ParseError out, never else."""

from __future__ import annotations

import importlib
import random
import sysconfig
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.email.parse import decode_bytes, message_ids, parse_email
from schemas.errors import ParseError
from schemas.identity import parse_sender
from schemas.ids import inbound_event_id
from schemas.inbound import Attachment, EmailExtras, InboundMessage
from tests.paths import FIXTURES

# the package exports a parse() function that hides the module attribute of that name
parse = importlib.import_module("connectors.email.parse")
FIXTURES = FIXTURES / "email"
# Python's own email test corpus, installed with the standard library
STDLIB = Path(sysconfig.get_paths()["stdlib"])
CORPUS = sorted((STDLIB / "test" / "test_email" / "data").glob("msg_*.txt"))
WHEN = datetime(2024, 3, 15, 12, 0, tzinfo=UTC)
MIB = 1024 * 1024


def _parse(raw: bytes, **kwargs: Any) -> InboundMessage:
    kwargs.setdefault("received_at", WHEN)
    return parse_email(raw, **kwargs)


def _extras(message: InboundMessage) -> EmailExtras:
    assert isinstance(message.extras, EmailExtras)
    return message.extras


def _fixture(name: str, **kwargs: Any) -> InboundMessage:
    return _parse((FIXTURES / name).read_bytes(), account="support@acme.test", **kwargs)


def _outcome(raw: bytes) -> str:
    """'parsed' or 'refused'; any other exception fails the calling test."""
    try:
        _parse(raw)
    except ParseError as e:
        assert e.reason
        return "refused"
    return "parsed"


# ---- (a) robustness on Python's own email test corpus ----------------------------------


def test_corpus_is_there() -> None:
    assert len(CORPUS) >= 40


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_corpus_message_parses_or_is_refused(path: Path) -> None:
    assert _outcome(path.read_bytes()) in ("parsed", "refused")


def test_most_of_the_corpus_parses() -> None:
    outcomes = [_outcome(path.read_bytes()) for path in CORPUS]
    # the refusals are fragments without a From header (or without any header)
    assert outcomes.count("parsed") >= 0.8 * len(outcomes)


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_mangled_corpus_message_parses_or_is_refused(path: Path) -> None:
    raw = path.read_bytes()
    rnd = random.Random(path.name)
    variants = [raw[: len(raw) * k // 5] for k in range(1, 5)]
    for _ in range(6):
        data = bytearray(raw)
        for _ in range(1 + len(raw) // 200):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        variants.append(bytes(data))
    variants.append(raw.replace(b"\n", b"\r"))
    variants.append(raw.replace(b":", b"=?x?q?=FF?=:", 3))
    for variant in variants:
        assert _outcome(variant) in ("parsed", "refused")


# ---- (c) hand-written ugly mail --------------------------------------------------------


def test_encoded_names() -> None:
    message = _fixture("encoded_names.eml")
    assert message.sender == parse_sender("Zoe.Dupre@example.fr")
    assert message.subject == "Facture n° 42 — réclamation à traiter"
    assert message.text == "Bonjour,\n\nVoici la facture n° 42 et une photo :"
    assert message.attachments == (
        Attachment(name=None, content_type="image/png", size=70, content_id="photo-1@example.fr"),
        Attachment(name="Facture n° 42 — décembre.pdf", content_type="application/pdf", size=19),
        Attachment(
            name="Résumé.docx",
            content_type="application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            size=10,
        ),
        Attachment(name="notes sur le café.txt", content_type="text/plain", size=10),
    )


FIXTURE_CASES = [
    pytest.param(
        "utf8_body.eml",
        {
            "sender": "ada@example.com",
            "subject": "Ünïcödé everywhere ✓",
            "text": "Grüße aus Zürich! 👋\nMein Paket (№ 4711) ist nicht angekommen — "
            "könnt ihr nachsehen?\n日本語も大丈夫です。",
        },
        id="utf8-body",
    ),
    pytest.param(
        "latin1_labelled_utf8.eml",
        {
            "sender": "jose@example.es",
            "subject": "Pedido nº 12 \u2013 no llegó",
            "text": "Hola, mi pedido no llegó. ¿Pueden ayudarme? Gracias \u2013 José",
        },
        id="latin1-labelled-utf8",
    ),
    pytest.param(
        "utf8_labelled_latin1.eml",
        {"subject": "Café", "text": "Mi café llegó frío."},
        id="utf8-labelled-latin1",
    ),
    pytest.param(
        "unknown_charset.eml",
        {"subject": "Café crème", "text": "Le café coûte 3 € \u2013 merci."},
        id="unknown-charset",
    ),
    pytest.param(
        "no_subject.eml",
        {"subject": None, "text": "Hi, no subject here, just a question about my invoice."},
        id="no-subject",
    ),
    pytest.param(
        "invalid_utf8_headers.eml",
        {
            "sender": "renee@example.org",
            "subject": "Réclamation ÿ urgente",
            "text": "Grüße, \ufffd( voici des octets invalides \ufffd\ufffd\ufffd et la suite "
            "— déjà vu.",
            "extras.to": ("support@acme.test", "other@example.org"),
        },
        id="invalid-utf8",
    ),
    pytest.param(
        "html_only.eml",
        {
            "text": "Ciao,\nil prodotto è arrivato rotto & incompleto.\n- scatola aperta\n"
            "- manca il cavo\n\nGrazie mille,\nCarla",
            "thread_key": "ticket-77@acme.test",
        },
        id="html-only",
    ),
    pytest.param(
        "outlook_reply.eml",
        {
            "sender": "Mei.Wong@contoso.com",
            "subject": "RE: Refund for order 8812",
            "text": "Hi,\n\nThe refund still hasn't arrived. Can you check?\n\nThanks,\nMei",
            "native_id": "DM6PR11MB4321.namprd11.prod.outlook.com",
            "thread_key": "ticket-8812@acme.test",
            "extras.in_reply_to": ("ack-8812@acme.test",),
            "extras.references": (
                "ticket-8812@acme.test",
                "ack-8812@acme.test",
                "follow-up-8812@acme.test",
            ),
            "extras.reply_to": "mei.wong@contoso.com",
            "extras.to": ("support+tk-9F3A@acme.test",),
            "extras.cc": ("sam.lee@contoso.com", "support@acme.test"),
            "extras.reply_token": "tk-9F3A",
            "extras.account": "support@acme.test",
        },
        id="outlook-reply",
    ),
    pytest.param(
        "apple_mail_reply.eml",
        {"text": "Perfect, thank you!", "thread_key": "order-31@acme.test"},
        id="apple-mail",
    ),
    pytest.param(
        "ref_token_in_quote.eml",
        {"text": "Still broken, sorry.", "extras.reply_token": "Q7X2-55"},
        id="ref-token-in-quoted-history",
    ),
    pytest.param(
        "flowed.eml",
        {
            "text": "This paragraph was wrapped by the sender's client and should come back "
            "as one line.\n >not a quote: space-stuffed\nSecond paragraph."
        },
        id="format-flowed",
    ),
    pytest.param(
        "forwarded.eml",
        {"text": "See below, the amount is wrong.\n\n---------- Forwarded message ---------\n"
         "From: Billing <billing@acme.test>\nDate: Thu, 14 Mar 2024 at 09:00\n"
         "Subject: Your invoice is wrong\nTo: <lena@example.com>\n\n"
         "Invoice 2024-118: 1,200.00 EUR"},
        id="forwarded",
    ),
    pytest.param(
        "mbox_from_line.eml",
        {"sender": "someone@example.com", "text": "Body after an mbox From_ line."},
        id="mbox-from-line",
    ),
    pytest.param(
        "auto_reply.eml",
        {"tags": ("auto_reply",), "extras.auto_submitted": "auto-replied"},
        id="auto-reply",
    ),
    pytest.param("out_of_office_de.eml", {"tags": ("auto_reply",)}, id="out-of-office-de"),
    pytest.param("exchange_suppress_only.eml", {"tags": ()}, id="exchange-suppress-only"),
    pytest.param(
        "mailing_list.eml",
        {"tags": ("mailing_list",), "extras.list_id": "announce.lists.example.org"},
        id="mailing-list",
    ),
    pytest.param("delivered_report.eml", {"tags": ("auto_reply",)}, id="delivered-report"),
    pytest.param("read_receipt.eml", {"tags": ("auto_reply",)}, id="read-receipt"),
    # auto_reply is what keeps the acknowledgement away (processors' ALWAYS_SKIPPED)
    pytest.param(
        "abuse_report_arf.eml",
        {
            "tags": ("abuse_report", "auto_reply"),
            "sender": "fbl@feedback.mailhost.example",
            "extras.bounce_message_ids": (),
        },
        id="abuse-report-arf",
    ),
    pytest.param(
        "fake_bounce_from_customer.eml",
        {
            "tags": (),
            "sender": "mallory@example.net",
            "text": "Your reply could not be delivered. (It was, but this says otherwise.)",
            "extras.bounce_message_ids": (),
            "extras.bounce_action": None,
        },
        id="bounce-look-alike-from-a-customer",
    ),
]


@pytest.mark.parametrize(("name", "expected"), FIXTURE_CASES)
def test_fixture(name: str, expected: dict[str, Any]) -> None:
    message = _fixture(name)
    for key, value in expected.items():
        if key.startswith("extras."):
            actual = getattr(_extras(message), key.removeprefix("extras."))
        else:
            actual = getattr(message, key)
        assert actual == (parse_sender(value) if key == "sender" else value), key


BOUNCE_CASES = [
    pytest.param(
        "bounce_dsn.eml",
        {
            "sender": "MAILER-DAEMON@mx.acme.test",
            "bounce_message_ids": ("reply-77-1@acme.test",),
            "bounce_recipients": ("gone@example.com",),
            "bounce_action": "failed",
            "bounce_status": "5.1.1",
            "bounce_reason": "550 5.1.1 <gone@example.com>: Recipient address rejected: "
            "User unknown",
        },
        id="postfix-dsn-with-original",
    ),
    pytest.param(
        "bounce_headers_only.eml",
        {
            "sender": "mailer-daemon@googlemail.com",
            "bounce_message_ids": ("refund-42@acme.test",),
            "bounce_recipients": ("slow@example.net",),
            "bounce_action": "delayed",
            "bounce_status": "4.4.7",
            "bounce_reason": "421 4.4.7 Try again later",
        },
        id="dsn-with-rfc822-headers",
    ),
    pytest.param(
        "bounce_plain_text.eml",
        {
            "sender": "MAILER-DAEMON@old.example.net",
            "bounce_message_ids": ("order-reply-9@acme.test",),
            "bounce_action": None,
        },
        id="qmail-plain-text",
    ),
]


@pytest.mark.parametrize(("name", "expected"), BOUNCE_CASES)
def test_bounce(name: str, expected: dict[str, Any]) -> None:
    message = _fixture(name)
    assert "bounce" in message.tags
    assert message.sender == parse_sender(expected.pop("sender"))
    for key, value in expected.items():
        assert getattr(_extras(message), key) == value, key


def test_bounce_from_a_null_sender_is_from_the_reporting_mta() -> None:
    raw = (FIXTURES / "bounce_dsn.eml").read_bytes().replace(
        b"From: Mail Delivery System <MAILER-DAEMON@mx.acme.test>", b"From: MAILER DAEMON <>"
    )
    message = _parse(raw)
    assert message.sender == parse_sender("mailer-daemon@mx.acme.test")
    assert _extras(message).bounce_message_ids == ("reply-77-1@acme.test",)


REFUSALS = [
    pytest.param(b"", "empty", id="empty"),
    pytest.param(b"\r\n\r\n", "empty", id="only-newlines"),
    pytest.param((FIXTURES / "outlook.msg").read_bytes(), "Outlook .msg", id="outlook-msg"),
    pytest.param((FIXTURES / "no_header.eml").read_bytes(), "header field", id="no-header"),
    pytest.param(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "header field", id="pdf"),
    pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00", "header field", id="png"),
    pytest.param(b"From: a@b.com\nX-Bin: \x00\x01\n\nbody", "binary", id="nul-in-headers"),
    pytest.param(b"To: support@acme.test\nSubject: hi\n\nbody\n", "no From", id="no-from"),
    pytest.param(
        (FIXTURES / "display_name_only_from.eml").read_bytes(),
        "not an email address",
        id="from-without-address",
    ),
    pytest.param(b"From: <>\nSubject: x\n\nbody\n", "not an email", id="empty-from"),
    pytest.param(b"From: Team:;\nSubject: x\n\nbody\n", "no address", id="group-from"),
]


@pytest.mark.parametrize(("raw", "reason"), REFUSALS)
def test_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        _parse(raw)


LEADING_BLANK_LINES = [
    pytest.param(b"\r\n\r\n", id="crlf"),
    pytest.param(b"\n", id="lf"),
    pytest.param(b"   \n\t\n", id="spaces-and-tabs"),
    pytest.param(b" \t \r\n\r\n  \r\n", id="whitespace-crlf"),
    pytest.param(b"\t\r \r", id="whitespace-cr"),
]


@pytest.mark.parametrize("blank", LEADING_BLANK_LINES)
def test_blank_and_whitespace_only_lines_before_the_headers_are_skipped(blank: bytes) -> None:
    raw = blank + b"From: Ada <ada@example.org>\nSubject: exported\n\nStill waiting.\n"
    message = _parse(raw)
    assert message.sender == parse_sender("ada@example.org")
    assert (message.subject, message.text) == ("exported", "Still waiting.")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(b" \t\n   \n\t", "empty", id="whitespace-only"),
        pytest.param(b"\n  From: ada@example.org\n\nhi\n", "header field", id="indented-header"),
    ],
)
def test_whitespace_is_not_a_header(raw: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        _parse(raw)


def test_unexpected_stdlib_errors_become_parse_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(data: bytes) -> None:
        raise IndexError("list index out of range")

    monkeypatch.setattr(parse._PARSER, "parsebytes", broken)
    with pytest.raises(ParseError, match="malformed message: IndexError"):
        _parse(b"From: a@example.com\n\nhi\n")


# ---- guard rails: size, MIME bombs ------------------------------------------------------


def _big_attachment(size: int) -> bytes:
    line = b"2024-03-15,order,4711,shipped,EUR,12.00,ok\n"
    data = line * (size // len(line)) + b"x" * (size % len(line))
    return (
        b"From: exporter@example.com\nTo: support@acme.test\nSubject: export\n"
        b"Message-ID: <big@example.com>\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="big-b"\n\n'
        b"--big-b\nContent-Type: text/plain\n\nThe export is attached.\n"
        b'--big-b\nContent-Type: text/csv; name="export.csv"\n'
        b'Content-Disposition: attachment; filename="export.csv"\n'
        b"Content-Transfer-Encoding: 7bit\n\n" + data + b"\n--big-b--\n"
    )


def test_20_mib_attachment_parses_under_the_default_limit() -> None:
    message = _parse(_big_attachment(20 * MIB))
    assert message.text == "The export is attached."
    (attachment,) = message.attachments
    assert attachment.name == "export.csv"
    assert attachment.content_type == "text/csv"
    assert abs(attachment.size - 20 * MIB) < 16


def test_oversized_message_is_refused() -> None:
    raw = _big_attachment(20 * MIB)
    with pytest.raises(ParseError, match=f"message is {len(raw)} bytes, limit is {10 * MIB}"):
        _parse(raw, max_bytes=10 * MIB)


def _nested(depth: int) -> bytes:
    head = b"From: bomb@example.com\nMIME-Version: 1.0\n"
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (level, level)
        for level in range(depth)
    )
    closing = b"".join(b"\n--b%d--\n" % level for level in reversed(range(depth)))
    return head + opening + b"Content-Type: text/plain\n\ndeep inside\n" + closing


def test_nesting_up_to_the_limit_parses() -> None:
    assert _parse(_nested(parse.MAX_DEPTH)).text == "deep inside"


@pytest.mark.parametrize(
    ("depth", "reason"),
    [
        (parse.MAX_DEPTH + 1, "nested deeper than 20"),
        (400, "nested deeper than 20"),
        (5000, "nested deeper than 20"),
    ],
)
def test_deeply_nested_mime_bomb_is_refused(depth: int, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        _parse(_nested(depth))


# every way the stdlib parser reads a boundary parameter, and the line ends it splits on
BOUNDARY_SPELLINGS = [
    pytest.param(lambda b: b'boundary="%s"' % b, b"\n", id="quoted"),
    pytest.param(lambda b: b"boundary=%s" % b, b"\n", id="bare"),
    pytest.param(lambda b: b"boundary=<%s>" % b, b"\n", id="angle-brackets"),
    pytest.param(lambda b: b"boundary*=''%s" % b, b"\n", id="rfc2231"),
    pytest.param(lambda b: b"boundary*=us-ascii'en'%s" % b, b"\n", id="rfc2231-charset"),
    pytest.param(lambda b: b'boundary*0*=%s; boundary*1="-x"' % b, b"\n", id="rfc2231-continued"),
    pytest.param(lambda b: b'boundary="%s   "' % b, b"\n", id="trailing-spaces"),
    pytest.param(lambda b: b'BOUNDARY = "%s"' % b, b"\n", id="upper-case-and-spaces"),
    pytest.param(lambda b: b'charset=us-ascii;\n boundary="%s"' % b, b"\n", id="folded"),
    pytest.param(lambda b: b'boundary="%s"' % b, b"\r", id="cr-line-ends"),
    pytest.param(lambda b: b'boundary="%s"' % b, b"\r\n", id="crlf-line-ends"),
]


def _spelled_nest(spell: Any, nl: bytes, depth: int, filler_lines: int) -> bytes:
    # what the parser takes as the boundary of this spelling
    suffix = b"-x" if b"*1=" in spell(b"") else b""
    opening = b"".join(
        b"Content-Type: multipart/mixed; %s\n\n--b%d%s\n" % (spell(b"b%d" % level), level, suffix)
        for level in range(depth)
    )
    body = b"Content-Type: text/plain\n\ndeep inside\nxy" + b"\n" * filler_lines
    closing = b"".join(b"\n--b%d%s--\n" % (level, suffix) for level in reversed(range(depth)))
    raw = b"From: bomb@example.com\nMIME-Version: 1.0\n" + opening + body + closing
    return raw.replace(b"\n", nl)


@pytest.mark.parametrize(("spell", "nl"), BOUNDARY_SPELLINGS)
def test_every_boundary_spelling_counts_towards_the_depth(spell: Any, nl: bytes) -> None:
    assert _parse(_spelled_nest(spell, nl, 3, 1)).text == "deep inside\nxy"
    # 490 levels over 50,000 lines cost 4.5 s of CPU when this spelling slipped past the guard
    bomb = _spelled_nest(spell, nl, 490, 50_000)
    started = time.process_time()
    with pytest.raises(ParseError, match="nested deeper than 20 levels"):
        _parse(bomb)
    assert time.process_time() - started < 0.5


def test_legitimately_nested_three_levels_parse() -> None:
    message = _fixture("nested_three_levels.eml")
    assert message.text == "The parcel arrived crushed. Photo and receipt attached."
    assert [(a.name, a.content_type) for a in message.attachments] == [
        ("box.png", "image/png"),
        ("receipt.pdf", "application/pdf"),
    ]


def test_deep_chain_of_attached_messages_is_refused() -> None:
    inner = b"From: a@example.com\n\nbottom\n"
    for _ in range(30):
        inner = b"From: a@example.com\nContent-Type: message/rfc822\n\n" + inner
    with pytest.raises(ParseError, match="nested deeper than 20"):
        _parse(inner)


def test_many_dash_lines_in_plain_text_are_not_parts() -> None:
    raw = b"From: a@example.com\nSubject: x\n\n" + b"--\nline\n" * 2000
    assert _parse(raw).text == ""  # everything after the first "--" is signature


def test_too_many_parts_is_refused() -> None:
    parts = b"".join(b"--w\nContent-Type: text/plain\n\n%d\n" % n for n in range(2000))
    raw = b'From: a@example.com\nContent-Type: multipart/mixed; boundary="w"\n\n' + parts
    with pytest.raises(ParseError, match="more than 500 MIME parts"):
        _parse(raw + b"--w--\n")


# ---- long subjects: decoded within limits, cut with a mark ---------------------------------


def _with_subject(subject: bytes) -> bytes:
    return b"From: a@example.com\nSubject: " + subject + b"\n\nhello\n"


def test_huge_encoded_subject_is_decoded_fast_and_cut() -> None:
    # 160,000 encoded words, 3.5 MB: 26 s in the stdlib decoder when nothing was capped
    raw = _with_subject(b" ".join([b"=?utf-8?q?caf=C3=A9s?="] * 160_000))
    assert len(raw) > 3_500_000
    started = time.process_time()
    subject = _parse(raw).subject
    assert time.process_time() - started < 1.0
    assert subject == "cafés" * parse.MAX_SUBJECT_WORDS + " " + parse.SUBJECT_CUT_MARK


SUBJECT_LIMITS = [
    pytest.param(b"=?utf-8?q?ab?= " * 300, "ab" * 256 + " […]", id="too-many-words"),
    pytest.param(b"=?utf-8?q?ab?= " * 256, "ab" * 256, id="words-at-the-limit"),
    pytest.param(b"word " * 2000, ("word " * 1638).rstrip() + " […]", id="too-long-plain"),
    pytest.param(b"x" * 9000, "x" * 8192 + " […]", id="too-long-without-spaces"),
    pytest.param(b"=?utf-8?q?caf=C3=A9?= au lait", "café au lait", id="ordinary"),
]


@pytest.mark.parametrize(("subject", "expected"), SUBJECT_LIMITS)
def test_subject_limits(subject: bytes, expected: str) -> None:
    assert _parse(_with_subject(subject)).subject == expected


# ---- (d) identity and determinism -------------------------------------------------------


def test_same_bytes_give_the_same_event() -> None:
    raw = (FIXTURES / "outlook_reply.eml").read_bytes()
    first, second = _parse(raw), _parse(raw)
    assert first.event_id == second.event_id == inbound_event_id("email", first.native_id)
    assert first == second


def test_missing_message_id_is_derived_from_the_bytes() -> None:
    raw = (FIXTURES / "no_message_id.eml").read_bytes()
    message = _parse(raw)
    assert message.native_id.endswith("@switchboard.invalid")
    assert _extras(message).message_id == message.native_id == message.thread_key
    assert _parse(raw).event_id == message.event_id
    assert _parse(raw + b"\n").event_id != message.event_id


def test_received_at_defaults_to_the_date_header() -> None:
    message = parse_email((FIXTURES / "utf8_body.eml").read_bytes())
    assert message.received_at == datetime(2024, 3, 6, 9, 0, tzinfo=UTC)


def test_raw_ref_is_left_to_the_caller() -> None:
    message = _fixture("utf8_body.eml")
    assert message.raw_ref is None
    assert message.channel == "email"


THREADS = [
    pytest.param("References: <r1@x> <r2@x>\nIn-Reply-To: <r2@x>\n", "r1@x", id="references"),
    pytest.param("In-Reply-To: <p@x>\n", "p@x", id="in-reply-to"),
    pytest.param("", "own@x", id="own-id"),
    pytest.param("References: garbage\nIn-Reply-To: <p@x>\n", "p@x", id="junk-references"),
]


@pytest.mark.parametrize(("headers", "root"), THREADS)
def test_thread_key_is_the_root(headers: str, root: str) -> None:
    raw = f"From: a@example.com\nMessage-ID: <own@x>\n{headers}\nhi\n".encode()
    assert _parse(raw).thread_key == root


MESSAGE_IDS = [
    pytest.param("<a@x>", ("a@x",), id="plain"),
    pytest.param("<a@x> <b@x>\t<c@x>", ("a@x", "b@x", "c@x"), id="list"),
    pytest.param("<a@x>,<b@x>", ("a@x", "b@x"), id="outlook-commas"),
    pytest.param("a@x b@x", ("a@x", "b@x"), id="no-brackets"),
    pytest.param("<a@x> b@x", ("a@x", "b@x"), id="mixed"),
    pytest.param("< a@x >", ("a@x",), id="spaces-inside"),
    pytest.param("<a@x> (Ann's message of Monday)", ("a@x",), id="comment"),
    pytest.param("<a@x> <a@x>", ("a@x",), id="duplicates"),
    pytest.param("Re: something", (), id="no-ids"),
    pytest.param("<local-only>", ("local-only",), id="angle-without-at"),
]


@pytest.mark.parametrize(("value", "expected"), MESSAGE_IDS)
def test_message_ids(value: str, expected: tuple[str, ...]) -> None:
    assert message_ids(value) == expected


def test_very_long_references_keep_root_and_recent() -> None:
    refs = " ".join(f"<r{n}@x>" for n in range(500))
    message = _parse(f"From: a@example.com\nReferences: {refs}\n\nhi\n".encode())
    references = _extras(message).references
    assert len(references) == parse.MAX_REFERENCES
    assert references[0] == "r0@x"
    assert references[-1] == "r499@x"


TOKENS = [
    pytest.param("support@acme.test", "To: support+abc123@acme.test\n", "abc123", id="to"),
    pytest.param("support@acme.test", "Cc: Support <support+X9@ACME.test>\n", "X9", id="cc"),
    pytest.param("support@acme.test", "To: sales+abc@acme.test\n", None, id="other-box"),
    pytest.param("support@acme.test", "To: support+abc@other.test\n", None, id="other-domain"),
    pytest.param("support", "To: support+abc@acme.test\n", "abc", id="login-account"),
    pytest.param("", "To: support+abc@acme.test\n", "abc", id="no-account-to"),
    pytest.param("", "Cc: bob+news@example.com\n", None, id="no-account-ignores-cc"),
    pytest.param("support@acme.test", "Delivered-To: support+d1@acme.test\n", "d1", id="env"),
    pytest.param("", "Subject: Re: help [ref:R-42]\n", "R-42", id="subject-ref"),
    pytest.param("", "To: support@acme.test\n", None, id="none"),
]


@pytest.mark.parametrize(("account", "headers", "token"), TOKENS)
def test_reply_token(account: str, headers: str, token: str | None) -> None:
    raw = f"From: c@example.com\n{headers}\nhello\n".encode()
    assert _extras(_parse(raw, account=account)).reply_token == token


# ---- text decoding ------------------------------------------------------------------

DECODES = [
    pytest.param("café".encode(), "utf-8", "café", id="declared"),
    pytest.param("café".encode("latin-1"), "utf-8", "café", id="latin1-labelled-utf8"),
    pytest.param("café".encode(), "iso-8859-1", "café", id="utf8-labelled-latin1"),
    pytest.param(b"caf\xe9 \x80", "x-unknown", "café €", id="unknown-charset"),
    pytest.param(b"caf\xe9", None, "café", id="undeclared"),
    pytest.param(b"\x81\x8d", "us-ascii", "\x81\x8d", id="latin1-last-resort"),
    pytest.param(b"ok", "base64", "ok", id="not-a-text-codec"),
    pytest.param("привет".encode("koi8-r"), "koi8-r", "привет", id="koi8-r"),
    pytest.param("日本".encode("iso-2022-jp"), "iso-2022-jp", "日本", id="iso-2022-jp"),
    pytest.param("表".encode("shift_jis"), "shift_jis", "表", id="shift-jis"),
    pytest.param(b"Gr\xc3\xbc\xc3\x9fe \xff", "utf-8", "Grüße \ufffd", id="mostly-utf8"),
]


@pytest.mark.parametrize(("data", "charset", "text"), DECODES)
def test_decode_bytes(data: bytes, charset: str | None, text: str) -> None:
    assert decode_bytes(data, charset) == text
