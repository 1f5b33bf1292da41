"""Quoted history and signature stripping, on real reply bodies and hand-written cases."""

from __future__ import annotations

import pytest

from connectors.email.quotes import html_to_text, unflow, visible_text
from tests.paths import FIXTURES

REPLY_BODIES = FIXTURES / "email" / "reply-bodies"

RIAK_ANSWER = (
    "Hi,\n"
    "\n"
    "You can list the keys for the bucket and call delete for each. Or if you\n"
    "put the keys (and kept track of them in your test) you can delete them\n"
    "one at a time (without incurring the cost of calling list first.)\n"
    "\n"
    "Something like:\n"
    "\n"
    '        String bucket = "my_bucket";\n'
    "        BucketResponse bucketResponse = riakClient.listBucket(bucket);\n"
    "        RiakBucketInfo bucketInfo = bucketResponse.getBucketInfo();\n"
    "\n"
    "        for(String key : bucketInfo.getKeys()) {\n"
    "            riakClient.delete(bucket, key);\n"
    "        }\n"
    "\n"
    "would do it.\n"
    "\n"
    "See also\n"
    "\n"
    "http://wiki.basho.com/REST-API.html#Bucket-operations\n"
    "\n"
    "which says\n"
    "\n"
    '"At the moment there is no straightforward way to delete an entire\n'
    "Bucket. There is, however, an open ticket for the feature. To delete all\n"
    "the keys in a bucket, you\u2019ll need to delete them all individually.\""
)
TEXTMATE_ANSWER = (
    "On your remote host you can run:\n"
    "\n"
    "     telnet 127.0.0.1 52698\n"
    "\n"
    "This should connect to TextMate (on your Mac, via the tunnel). If that\n"
    "fails, the tunnel is not working."
)

# The visible reply of every fixture, following the expectations of the zapier
# email-reply-parser test suite (fragments neither quoted nor hidden), written out whole.
EXPECTED = {
    "correct_sig.txt": "this is an email with a correct -- signature.",
    "email_1_1.txt": (
        "Hi folks\n\nWhat is the best way to clear a Riak bucket of all key, values after\n"
        "running a test?\nI am currently using the Java HTTP API."
    ),
    "email_1_2.txt": RIAK_ANSWER,
    "email_1_3.txt": "Oh thanks.\n\nHaving the function would be great.",
    "email_1_4.txt": "Awesome! I haven't had another problem with it.",
    "email_1_5.txt": (
        "One: Here's what I've got.\n\n"
        "- This would be the first bullet point that wraps to the second line\nto the next\n"
        "- This is the second bullet point and it doesn't wrap\n"
        "- This is the third bullet point and I'm having trouble coming up with enough\n"
        "to say\n- This is the fourth bullet point\n\n"
        "Two:\n- Here is another bullet point\n- And another one\n\n"
        "This is a paragraph that talks about a bunch of stuff. It goes on and on\n"
        "for a while."
    ),
    # "Sent from a magnificent torch of pixels" is no known mobile signature: it stays
    "email_1_6.txt": "I get proper rendering as well.\n\nSent from a magnificent torch of pixels",
    "email_1_7.txt": ":+1:",
    "email_1_8.txt": "I will reply under this one\n\nand under this.",
    "email_2_1.txt": "Outlook with a reply",
    "email_2_2.txt": "Outlook with a reply directly above line",
    "email_2_3.txt": "Outlook with a reply above headers using unusual format",
    "email_BlackBerry.txt": "Here is another email",
    "email_bullets.txt": (
        "test 2 this should list second\n\nand have spaces\n\nand retain this formatting\n\n"
        "   - how about bullets\n   - and another"
    ),
    "email_gmail.txt": "This is a test for inbox replying to a github message.",
    "email_headers_no_delimiter.txt": "And another reply!",
    "email_iPhone.txt": "Here is another email",
    "email_multi_word_sent_from_my_mobile_device.txt": "Here is another email",
    "email_one_is_not_on.txt": (
        "Thank, this is really helpful.\n\nOne outstanding question I had:\n\n"
        "Locally (on development), when I run..."
    ),
    "email_partial_quote_header.txt": TEXTMATE_ANSWER,
    "email_sent_from_my_not_signature.txt": (
        "Here is another email\n\nSent from my desk, is much easier then my mobile phone."
    ),
    "email_sig_delimiter_in_middle_of_line.txt": (
        "Hi there!\n\nStuff happened.\n\nAnd here is a fix -- this is not a signature.\n\nkthxbai"
    ),
    "greedy_on.txt": TEXTMATE_ANSWER,
    "pathological.txt": (
        "I think you're onto something. I will try to fix the problem as soon as I\n"
        "get back to a computer."
    ),
}


def test_every_reply_body_fixture_has_an_expectation() -> None:
    assert sorted(p.name for p in REPLY_BODIES.glob("*.txt")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reply_body_fixture(name: str) -> None:
    text = (REPLY_BODIES / name).read_bytes().decode("utf-8")
    assert visible_text(text) == EXPECTED[name]


CASES = [
    pytest.param("Just new text.\n", "Just new text.", id="nothing-to-strip"),
    pytest.param("Yes.\n\n> old\n> older\n", "Yes.", id="quoted-lines"),
    pytest.param(
        "Thanks!\n\nOn Mon, 4 Mar 2024 at 10:00, Acme Support <s@acme.test> wrote:\n> We shipped\n",
        "Thanks!",
        id="gmail-header",
    ),
    pytest.param(
        "Thanks!\n\nOn Mon, 4 Mar 2024 at 10:00, Acme Support <\ns@acme.test> wrote:\n\n> x\n",
        "Thanks!",
        id="header-over-two-lines",
    ),
    pytest.param(
        "Merci !\n\nLe lun. 4 mars 2024 à 10:00, Acme <s@acme.test> a écrit :\n> Expédié\n",
        "Merci !",
        id="french-header",
    ),
    pytest.param(
        "Danke!\n\nAm Mo., 4. März 2024 um 10:00 Uhr schrieb Acme <s@acme.test>:\n> Versandt\n",
        "Danke!",
        id="german-header",
    ),
    pytest.param(
        "Gracias\n\nEl lun, 4 mar 2024 a las 10:00, Acme (<s@acme.test>) escribió:\n> Enviado\n",
        "Gracias",
        id="spanish-header",
    ),
    pytest.param(
        "Bedankt\n\nOp ma 4 mrt. 2024 om 10:00 schreef Acme <s@acme.test>:\n> Verzonden\n",
        "Bedankt",
        id="dutch-header",
    ),
    pytest.param(
        "Fine.\n\nOn 4 Mar 2024, at 10:00, Acme wrote:\n\nWe shipped it (pasted unquoted).\n",
        "Fine.",
        id="header-then-unquoted-original",
    ),
    pytest.param(
        "My colleague wrote:\nthe box was empty.\n",
        "My colleague wrote:\nthe box was empty.",
        id="wrote-in-a-sentence-is-kept",
    ),
    pytest.param(
        "Acme Support wrote:\n> we shipped\nIt never came.\n",
        "It never came.",
        id="undated-intro-before-quote",
    ),
    pytest.param(
        "New text\n\n-----Original Message-----\nFrom: a@b.c\nSent: Monday\nSubject: x\n\nold\n",
        "New text",
        id="outlook-original-message",
    ),
    pytest.param(
        "Neu\n\n-----Ursprüngliche Nachricht-----\nVon: a@b.c\nGesendet: Montag\n\nalt\n",
        "Neu",
        id="outlook-original-message-german",
    ),
    pytest.param(
        "Top\n\nVon: Acme <s@acme.test>\nGesendet: Montag, 4. März 2024 10:00\nAn: Kunde\n"
        "Betreff: Bestellung\n\nalt\n",
        "Top",
        id="outlook-header-block-german",
    ),
    pytest.param(
        "Top\nFrom: Acme Sent: Monday, March 4, 2024 10:00 AM To: me Subject: order\nold\n",
        "Top",
        id="outlook-header-block-on-one-line",
    ),
    pytest.param(
        "Ship to:\nFrom: Paris\nTo: Lyon\n\nThanks\n",
        "Ship to:\nFrom: Paris\nTo: Lyon\n\nThanks",
        id="from-and-to-without-date-is-text",
    ),
    pytest.param(
        "See below.\n\n---------- Forwarded message ---------\nFrom: Billing <b@acme.test>\n"
        "Date: Mon, 4 Mar 2024\nSubject: Invoice\nTo: <me@x.com>\n\nAmount: 12\n",
        "See below.\n\n---------- Forwarded message ---------\nFrom: Billing <b@acme.test>\n"
        "Date: Mon, 4 Mar 2024\nSubject: Invoice\nTo: <me@x.com>\n\nAmount: 12",
        id="forwarded-message-is-kept",
    ),
    pytest.param("Hi\n\n-- \nJane Doe\nACME Corp\n", "Hi", id="signature-delimiter"),
    pytest.param("Hi\n\nSent from my iPhone\n", "Hi", id="iphone"),
    pytest.param("Hi\n\nGet Outlook for Android\n", "Hi", id="outlook-mobile"),
    pytest.param("Hi\n\nVon meinem iPhone gesendet\n", "Hi", id="iphone-german"),
    pytest.param("Hi\n\nEnvoyé de mon iPad\n", "Hi", id="ipad-french"),
    pytest.param(
        "Sent from my iPhone\nbut this line is still new\n",
        "Sent from my iPhone\nbut this line is still new",
        id="mobile-signature-only-at-the-end",
    ),
    pytest.param("Thanks\n\n-Jo\n", "Thanks", id="dash-sign-off"),
    pytest.param("- first\n- Second\n", "- first\n- Second", id="bullets-are-not-sign-offs"),
    pytest.param("a\r\n\r\n\r\n\r\nb\r\n", "a\n\nb", id="crlf-and-blank-runs"),
    pytest.param("> all quoted\n> nothing new\n", "", id="only-history"),
    pytest.param("", "", id="empty"),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_visible_text(text: str, expected: str) -> None:
    assert visible_text(text) == expected


NEW_TEXT = "Thanks, that helps."
ORIGINAL = "Your parcel left the warehouse today."

# quote headers as the clients write them, in their users' languages
QUOTE_HEADERS = [
    pytest.param("On Thu, 3 Dec 2026 at 10:15, Ada Lovelace <ada@example.org> wrote:", id="en-gmail"),
    pytest.param("Am 03.12.2026 um 10:15 schrieb Ada Lovelace <ada@example.org>:", id="de-apple"),
    pytest.param("Am 03.12.26 um 10:15 schrieb Ada Lovelace:", id="de-thunderbird"),
    pytest.param("Am Do., 3. Dez. 2026 um 10:15 Uhr schrieb Ada Lovelace <ada@example.org>:",
                 id="de-gmail"),
    pytest.param("Le jeu. 3 déc. 2026 à 10:15, Ada <ada@example.org> a écrit :", id="fr-gmail"),
    pytest.param("Le jeu. 3 déc. 2026 à 10:15, Ada <ada@example.org> a écrit\u00a0:",
                 id="fr-no-break-space"),
    pytest.param("Le 3 déc. 2026 à 10:15, Ada Lovelace <ada@example.org> a écrit :", id="fr-apple"),
    pytest.param("3 дек. 2026 г., в 10:15, пользователь Ada <ada@example.org> написал:",  # noqa: RUF001
                 id="ru-mail-ru"),
    pytest.param("3 дек. 2026 г., в 10:15, Ada Lovelace <ada@example.org> написал(а):",  # noqa: RUF001
                 id="ru-apple"),
    pytest.param("чт, 3 дек. 2026 г. в 10:15, Ada Lovelace <ada@example.org>:", id="ru-gmail"),  # noqa: RUF001
    pytest.param("El jue, 3 dic 2026 a las 10:15, Ada Lovelace (<ada@example.org>) escribió:",
                 id="es-gmail"),
    pytest.param("El 3 dic 2026, a las 10:15, Ada Lovelace <ada@example.org> escribió:",
                 id="es-apple"),
    pytest.param("Il giorno gio 3 dic 2026 alle ore 10:15 Ada Lovelace <ada@example.org> ha scritto:",
                 id="it-gmail"),
    pytest.param("Il giorno 3 dic 2026, alle ore 10:15, Ada Lovelace <ada@example.org> ha scritto:",
                 id="it-apple"),
    pytest.param("Op do 3 dec. 2026 om 10:15 schreef Ada Lovelace <ada@example.org>:", id="nl-gmail"),
    pytest.param("Op 3 dec. 2026 om 10:15 heeft Ada Lovelace <ada@example.org> het volgende "
                 "geschreven:", id="nl-apple"),
    pytest.param("Em qui., 3 de dez. de 2026 às 10:15, Ada Lovelace <ada@example.org> escreveu:",
                 id="pt-gmail"),
    pytest.param("Em 3 de dez. de 2026, à(s) 10:15, Ada Lovelace <ada@example.org> escreveu:",
                 id="pt-br-apple"),
    pytest.param("Den tors 3 dec. 2026 kl 10:15 skrev Ada Lovelace <ada@example.org>:", id="sv-gmail"),
    pytest.param("3 dec. 2026 kl. 10:15 skrev Ada Lovelace <ada@example.org>:", id="sv-apple"),
    pytest.param("Den tor. 3. dec. 2026 kl. 10.15 skrev Ada Lovelace <ada@example.org>:",
                 id="da-gmail"),
    pytest.param("tor. 3. des. 2026 kl. 10:15 skrev Ada Lovelace <ada@example.org>:", id="no-gmail"),
    pytest.param("czw., 3 gru 2026 o 10:15 Ada Lovelace <ada@example.org> napisał(a):",
                 id="pl-gmail"),
    pytest.param("W dniu 3.12.2026 o 10:15, Ada Lovelace pisze:", id="pl-thunderbird"),
    pytest.param("Wiadomość napisana przez Ada Lovelace <ada@example.org> w dniu 03.12.2026, "
                 "o godz. 10:15:", id="pl-apple"),
]


@pytest.mark.parametrize("header", QUOTE_HEADERS)
def test_localised_quote_header_and_its_quoted_block_are_dropped(header: str) -> None:
    text = f"{NEW_TEXT}\n\n{header}\n> {ORIGINAL}\n>\n> Ada\n"
    assert visible_text(text) == NEW_TEXT


@pytest.mark.parametrize("header", QUOTE_HEADERS)
def test_localised_quote_header_ends_the_new_text_before_an_unquoted_original(header: str) -> None:
    text = f"{NEW_TEXT}\n\n{header}\n\n{ORIGINAL}\n"
    assert visible_text(text) == NEW_TEXT


# Outlook's header block above the original, as its localised versions write it
OUTLOOK_BLOCKS = [
    pytest.param(("Von: Ada Lovelace <ada@example.org>", "Gesendet: Donnerstag, 3. Dezember 2026 10:15",
                  "An: support@acme.test", "Betreff: Bestellung"), id="de"),
    pytest.param(("De : Ada Lovelace <ada@example.org>", "Envoyé : jeudi 3 décembre 2026 10:15",
                  "À : support@acme.test", "Objet : Commande"), id="fr"),
    pytest.param(("De\u00a0: Ada Lovelace <ada@example.org>", "Envoyé\u00a0: jeudi 3 décembre 2026 10:15",
                  "À\u00a0: support@acme.test", "Objet\u00a0: Commande"), id="fr-no-break-space"),
    pytest.param(("De: Ada Lovelace <ada@example.org>", "Enviado el: jueves, 3 de diciembre de 2026 10:15",
                  "Para: support@acme.test", "Asunto: Pedido"), id="es"),
    pytest.param(("Da: Ada Lovelace <ada@example.org>", "Inviato: giovedì 3 dicembre 2026 10:15",
                  "A: support@acme.test", "Oggetto: Ordine"), id="it"),
    pytest.param(("Van: Ada Lovelace <ada@example.org>", "Verzonden: donderdag 3 december 2026 10:15",
                  "Aan: support@acme.test", "Onderwerp: Bestelling"), id="nl"),
    pytest.param(("De: Ada Lovelace <ada@example.org>", "Enviada em: quinta-feira, 3 de dezembro de 2026",
                  "Para: support@acme.test", "Assunto: Pedido"), id="pt-br"),
    pytest.param(("Från: Ada Lovelace <ada@example.org>", "Skickat: den 3 december 2026 10:15",
                  "Till: support@acme.test", "Ämne: Beställning"), id="sv"),
    pytest.param(("Fra: Ada Lovelace <ada@example.org>", "Sendt: 3. december 2026 10:15",
                  "Til: support@acme.test", "Emne: Ordre"), id="da"),
    pytest.param(("Od: Ada Lovelace <ada@example.org>", "Wysłano: czwartek, 3 grudnia 2026 10:15",
                  "Do: support@acme.test", "Temat: Zamówienie"), id="pl"),
    pytest.param(("От: Ada Lovelace <ada@example.org>", "Отправлено: 3 декабря 2026 г. 10:15",  # noqa: RUF001
                  "Кому: support@acme.test", "Тема: Заказ"), id="ru"),
    pytest.param(("*From:* Ada Lovelace <ada@example.org>", "*Sent:* Thursday, December 3, 2026 10:15 AM",
                  "*To:* support@acme.test", "*Subject:* Order"), id="en-outlook-web-bold"),
    pytest.param(("-----Исходное сообщение-----", "От: Ada Lovelace <ada@example.org>"),
                 id="ru-original-message"),
    pytest.param(("-----Wiadomość oryginalna-----", "Od: Ada Lovelace <ada@example.org>"),
                 id="pl-original-message"),
]


@pytest.mark.parametrize("block", OUTLOOK_BLOCKS)
def test_localised_outlook_header_block_ends_the_new_text(block: tuple[str, ...]) -> None:
    text = f"{NEW_TEXT}\n\n" + "\n".join(block) + f"\n\n{ORIGINAL}\n"
    assert visible_text(text) == NEW_TEXT


# a verb of a quote header inside ordinary text is not a quote header
NOT_HEADERS = [
    pytest.param("Wie ich Ihnen gestern schrieb, fehlt noch die Rechnung.\nBitte prüfen Sie das.",
                 id="de-schrieb-mid-sentence"),
    pytest.param("Mein Kollege schrieb mir am 3.12. um 10:15 Uhr: bitte zurückrufen.\nDanke.",
                 id="de-colon-mid-line"),
    pytest.param("Am Montag schrieb ich Ihnen wegen der Rechnung 4711:\nDie Summe stimmt nicht.",
                 id="de-undated-intro-shape"),
    pytest.param("Op de factuur schreef u 12 euro:\nik heb 10 betaald.", id="nl-undated"),
    pytest.param("Hun skrev til oss i går:\nPakken er ikke kommet.", id="no-skrev-in-a-sentence"),
    pytest.param("Le 3 décembre, votre collègue a écrit :\nle colis est parti.", id="fr-undated"),
    pytest.param("Klient pisze:\nzamówienie nie dotarło.", id="pl-pisze-in-a-sentence"),
]


@pytest.mark.parametrize("text", NOT_HEADERS)
def test_quote_header_verbs_in_ordinary_text_are_kept(text: str) -> None:
    assert visible_text(text) == text


def test_forwarded_subject_keeps_outlook_blocks() -> None:
    text = (
        "FYI\n\nFrom: Billing <b@acme.test>\nSent: Monday\nTo: me\nSubject: Invoice\n\n"
        "Amount: 12\n"
    )
    assert visible_text(text) == "FYI"
    assert visible_text(text, forwarded=True).endswith("Amount: 12")


HTML = [
    pytest.param("<p>a</p><p>b</p>", "a\n\nb", id="paragraphs"),
    pytest.param("a<br>b<br/>c", "a\nb\nc", id="line-breaks"),
    pytest.param("<div>a</div><div>b</div>", "a\nb", id="divs"),
    pytest.param("<style>x{}</style><script>y()</script>z", "z", id="drop-script-style"),
    pytest.param("&lt;tag&gt; &amp; &eacute; &#8364; &nbsp;x", "<tag> & é € x", id="entities"),
    pytest.param("<ul><li>one</li><li>two</li></ul>", "- one\n- two", id="list"),
    pytest.param("<blockquote>old<br>older</blockquote>new", "> old\n> older\nnew", id="quote"),
    pytest.param("<pre>  a\n    b</pre>", "  a\n    b", id="pre"),
    pytest.param("a   \n  b", "a b", id="whitespace"),
    pytest.param("<![if !supportLists]>x<![endif]>", "x", id="outlook-conditional"),
    pytest.param("a<![bogus[ y]> z", "a", id="bogus-marked-section-keeps-what-came-before"),
    pytest.param("x <![bogus[ y", "x <![bogus[ y", id="unclosed-lt-is-text"),
    pytest.param("<a " * 1000 + "end", "<a " * 1000 + "end", id="unclosed-tags-are-text"),
    pytest.param("a<!-- <b>hidden</b> -->b<!-- unclosed", "ab", id="comments"),
    pytest.param("<p>unclosed <b>tags", "unclosed tags", id="unclosed"),
]


@pytest.mark.parametrize(("html", "text"), HTML)
def test_html_to_text(html: str, text: str) -> None:
    assert html_to_text(html).strip("\n") == text


FLOWED = [
    pytest.param("one \ntwo\n", False, "one two\n", id="soft-break"),
    pytest.param("one \ntwo\n", True, "onetwo\n", id="delsp"),
    pytest.param("hard\nbreak\n", False, "hard\nbreak\n", id="hard-break"),
    pytest.param("--\nsig \nname\n", False, "--\nsig name\n", id="sig-delimiter-stays"),
    pytest.param(" From here\n >not quote\n", False, "From here\n >not quote\n", id="stuffing"),
    pytest.param("> a \n> b\n", False, "> a \n> b\n", id="quoted-lines-kept-apart"),
]


@pytest.mark.parametrize(("text", "delsp", "expected"), FLOWED)
def test_unflow(text: str, delsp: bool, expected: str) -> None:
    assert unflow(text, delsp=delsp) == expected
