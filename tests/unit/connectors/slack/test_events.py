"""Slack's Events API: the signature checked before anything is read, then what a request says."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connectors.slack.errors import SignatureError
from connectors.slack.events import (
    Ignored,
    SlackCalled,
    SlackEvent,
    SlackNote,
    SlackReply,
    SlackTransfer,
    UrlVerification,
    note_text,
    parse,
    plain_text,
    signature,
    verify,
)
from connectors.slack.routes import destination_for
from connectors.slack.settings import SlackDestination
from connectors.webhook.settings import WebhookDestination
from schemas.errors import ParseError
from tests.emulators import slack

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
NOW = 1_772_366_400
CHANNEL = "C0SUPPORT"
THREAD = "1772366000.000100"


def body_of(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def test_signature_known_answer() -> None:
    # Slack's documented example: this secret, timestamp and body give this signature
    body = (b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
            b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect"
            b"&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F"
            b"96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")
    assert signature(SECRET.encode(), "1531420618", body) == (
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503")


BODY = body_of(slack.thread_reply(CHANNEL, THREAD, "Your parcel left today."))
GOOD = slack.signed_headers(SECRET, BODY, timestamp=NOW)
STAMP, SIGNED = GOOD["X-Slack-Request-Timestamp"], GOOD["X-Slack-Signature"]
OTHER = slack.signed_headers("other", BODY, timestamp=NOW)["X-Slack-Signature"]


@pytest.mark.parametrize(("case", "body", "timestamp", "signed", "now", "problem"), [
    ("good", BODY, STAMP, SIGNED, NOW, None),
    ("clock 4m59s ahead", BODY, STAMP, SIGNED, NOW + 299, None),
    ("tampered body", BODY.replace(b"parcel", b"refund"), STAMP, SIGNED, NOW, "does not match"),
    ("another secret", BODY, str(NOW), OTHER, NOW, "does not match"),
    ("timestamp swapped", BODY, str(NOW + 1), SIGNED, NOW, "does not match"),
    ("stale: a replay", BODY, STAMP, SIGNED, NOW + 301, "301s away from now"),
    ("from the future", BODY, STAMP, SIGNED, NOW - 400, "400s away"),
    ("no signature", BODY, str(NOW), None, NOW, "are both required"),
    ("no timestamp", BODY, None, SIGNED, NOW, "are both required"),
    ("empty signature", BODY, str(NOW), "", NOW, "are both required"),
    ("timestamp not a number", BODY, "12e9", SIGNED, NOW, "not a whole number"),
    ("unversioned signature", BODY, str(NOW), SIGNED.removeprefix("v0="), NOW, "does not match"),
])
def test_verify(case: str, body: bytes, timestamp: str | None, signed: str | None, now: float,
                problem: str | None) -> None:
    if problem is None:
        verify(SECRET.encode(), body, timestamp=timestamp, signed=signed, now=now)
        return
    with pytest.raises(SignatureError, match=problem):
        verify(SECRET.encode(), body, timestamp=timestamp, signed=signed, now=now)


def reply_in_thread(text: str = "Your parcel left today.", **more: Any) -> dict[str, Any]:
    return slack.envelope(slack.message(CHANNEL, text, ts="1772366100.000200", thread_ts=THREAD, **more),
                          event_id="Ev0REPLY")


def test_a_thread_reply() -> None:
    assert parse(body_of(reply_in_thread())) == SlackReply(
        channel=CHANNEL, thread_ts=THREAD, ts="1772366100.000200", user=slack.AGENT,
        text="Your parcel left today.", event_id="Ev0REPLY")


def test_a_reply_also_sent_to_the_channel_is_a_reply() -> None:
    event = parse(body_of(reply_in_thread(subtype="thread_broadcast")))
    assert type(event) is SlackReply and event.text == "Your parcel left today."


@pytest.mark.parametrize(("text", "note"), [
    ("note: the warehouse says Monday", "the warehouse says Monday"),
    ("NOTE:checked with billing", "checked with billing"),
    ("  Note:   two spaces  ", "two spaces"),
    ("// asked Bob to look", "asked Bob to look"),
    ("//no space", "no space"),
    ("note:", ""),
    ("Your parcel left today.", None),
    ("notes: not the prefix", None),
    ("note - a dash is not the prefix", None),
    ("a note: inside the text", None),
    ("/ one slash", None),
    ("https://track.example/1234", None),
])
def test_note_text(text: str, note: str | None) -> None:
    assert note_text(text) == note


def test_a_thread_message_starting_with_note_is_an_internal_note() -> None:
    assert parse(body_of(reply_in_thread("Note: customer is <@U0BOB|bob>'s neighbour"))) == SlackNote(
        channel=CHANNEL, thread_ts=THREAD, ts="1772366100.000200", user=slack.AGENT,
        text="customer is @bob's neighbour", event_id="Ev0REPLY")
    slashes = parse(body_of(reply_in_thread("  // refund approved &amp; booked")))
    assert isinstance(slashes, SlackNote) and slashes.text == "refund approved & booked"


@pytest.mark.parametrize(("text", "queue", "note"), [
    ("transfer: billing wants a refund", "billing", "wants a refund"),
    ("  TRANSFER:billing,   - double charge\nsee the invoice", "billing", "double charge\nsee the invoice"),
    ("transfer: escalations", "escalations", ""),
    ("transfer:", "", ""),
])
def test_transfer_names_the_queue_then_the_note(text: str, queue: str, note: str) -> None:
    said = parse(body_of(reply_in_thread(text)))
    assert isinstance(said, SlackTransfer)
    assert (said.queue, said.text) == (queue, note)


def test_a_transfer_mentioned_mid_sentence_is_an_answer() -> None:
    assert type(parse(body_of(reply_in_thread("We can transfer: no problem")))) is SlackReply


def test_called_marks_the_call_back_made_with_what_came_of_it() -> None:
    assert parse(body_of(reply_in_thread("  CALLED: reached, all good"))) == SlackCalled(
        channel=CHANNEL, thread_ts=THREAD, ts="1772366100.000200", user=slack.AGENT,
        text="reached, all good", event_id="Ev0REPLY")
    bare = parse(body_of(reply_in_thread("called:")))
    assert isinstance(bare, SlackCalled) and bare.text == ""
    # only as the first word: anything else is an answer to the customer
    assert type(parse(body_of(reply_in_thread("We called: no answer")))) is SlackReply


def test_a_note_outside_a_thread_is_still_ignored() -> None:
    event = parse(body_of(slack.envelope(slack.message(CHANNEL, "note: lunch?"))))
    assert isinstance(event, Ignored) and "outside any thread" in event.reason


def test_url_verification() -> None:
    assert parse(body_of(slack.url_verification("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"))) == (
        UrlVerification("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"))


def message_replied() -> dict[str, Any]:
    # Slack's documented shape: the parent nested, no author on the outer event, hidden
    return slack.envelope({"type": "message", "message": {"type": "message", "user": slack.AGENT,
                                                          "text": "parent", "thread_ts": THREAD,
                                                          "reply_count": 1, "ts": THREAD},
                           "subtype": "message_replied", "hidden": True, "channel": CHANNEL,
                           "event_ts": "1772366100.000300", "ts": "1772366100.000300"})


@pytest.mark.parametrize(("case", "payload", "reason"), [
    ("our own post", slack.bot_message(CHANNEL, "Ada · premium", thread_ts=THREAD), "a bot's message"),
    ("a bot_message subtype", reply_in_thread(subtype="bot_message", user=None), "a bot_message message"),
    ("an edit", slack.edited(CHANNEL, THREAD, "1772366100.000200", "fixed typo"),
     "a message_changed message"),
    ("a deletion", reply_in_thread(subtype="message_deleted", hidden=True), "a message_deleted message"),
    ("a join", reply_in_thread(subtype="channel_join"), "a channel_join message"),
    ("a file share", reply_in_thread(subtype="file_share"), "a file_share message"),
    ("message_replied", message_replied(), "a message_replied message"),
    ("message_replied, subtype missing", {**message_replied(), "event": {
        k: v for k, v in message_replied()["event"].items() if k != "subtype"}}, "without an author"),
    ("top-level message", slack.envelope(slack.message(CHANNEL, "lunch?")), "outside any thread"),
    ("the thread's first message", slack.envelope(slack.message(CHANNEL, "hi", ts=THREAD, thread_ts=THREAD)),
     "first message"),
    ("no text", reply_in_thread(text="   "), "without text"),
    ("only a mention", reply_in_thread(text="<!subteam^S0TEAM>"), "without text"),
    ("an empty note", reply_in_thread(text="note:  "), "an internal note without text"),
    ("a note of only a mention", reply_in_thread(text="// <!subteam^S0TEAM>"), "note without text"),
    ("a bot's note", slack.bot_message(CHANNEL, "note: ours", thread_ts=THREAD), "a bot's message"),
    ("a reaction", slack.envelope({"type": "reaction_added", "user": slack.AGENT, "reaction": "thumbsup",
                                   "item": {"type": "message", "channel": CHANNEL, "ts": THREAD},
                                   "event_ts": "1772366100.000400"}), "a reaction_added event"),
    ("a user change: `user` is an object", slack.envelope({"type": "user_change", "user": {"id": "U1"}}),
     "a user_change event"),
    ("an app rate-limit notice", {"token": "t", "type": "app_rate_limited", "team_id": "T1",
                                  "minute_rate_limited": 1518467820, "api_app_id": "A1"},
     "'app_rate_limited' is not handled"),
    ("message with an odd shape", slack.envelope({"type": "message", "user": {"id": "U1"}}),
     "unexpected shape"),
])
def test_ignored(case: str, payload: dict[str, Any], reason: str) -> None:
    event: SlackEvent = parse(body_of(payload))
    assert isinstance(event, Ignored), event
    assert reason in event.reason


@pytest.mark.parametrize(("body", "problem"), [
    (b"", "not a Slack Events API envelope"),
    (b"{oops", "not a Slack Events API envelope"),
    (b"[1, 2]", "not a Slack Events API envelope"),
    (b'{"challenge": "x"}', "not a Slack Events API envelope"),
    (b'{"type": "url_verification"}', "without a challenge"),
    (b'{"type": "event_callback", "event_id": "Ev1"}', "without an event"),
    (b'{"type": "event_callback", "event": "text"}', "not an object with a type"),
])
def test_malformed(body: bytes, problem: str) -> None:
    with pytest.raises(ParseError, match=problem):
        parse(body)


@pytest.mark.parametrize(("markup", "plain"), [
    ("Fixed &amp; shipped &lt;today&gt;", "Fixed & shipped <today>"),
    ("See <https://status.example.com/incidents/42>", "See https://status.example.com/incidents/42"),
    ("See <https://status.example.com|status.example.com>", "See status.example.com"),
    ("See <https://status.example.com/x?a=1&amp;b=2|our status page>",
     "See our status page (https://status.example.com/x?a=1&b=2)"),
    ("Mail <mailto:help@example.com|help@example.com>", "Mail help@example.com"),
    ("<@U0BOB|bob> will call you", "@bob will call you"),
    ("<@U0BOB> will call you", "@U0BOB will call you"),
    ("in <#C0BILLING|billing>", "in #billing"),
    ("<!here> heads up", "@here heads up"),
    ("<!subteam^S0TEAM|@oncall> knows", "@oncall knows"),
    ("due <!date^1772366400^{date}|1 March>", "due 1 March"),
    ("  padded\n", "padded"),
    ("a &lt; b and c &gt; d", "a < b and c > d"),
])
def test_plain_text(markup: str, plain: str) -> None:
    assert plain_text(markup) == plain


def test_a_channel_id_names_its_destination() -> None:
    destinations = {"helpdesk": WebhookDestination(url="http://x", secret_env="K"),
                    "slack-support": SlackDestination(channel=CHANNEL),
                    "slack-social": SlackDestination(channel="C0SOCIAL")}
    assert destination_for(destinations, CHANNEL) == "slack-support"
    assert destination_for(destinations, "C0SOCIAL") == "slack-social"
    assert destination_for(destinations, "C0ELSEWHERE") is None
