from __future__ import annotations

from datetime import UTC, datetime

import pytest

from processors.intake.evidence import MAX_QUOTE_CHARS, find, is_private
from schemas import Identity, InboundMessage

OURS = frozenset({"company.com", "support.example.net"})
CHAT = Identity(kind="chat", value="s_81f3")


def message(text: str, channel: str = "chat", tags: tuple[str, ...] = (),
            sender: Identity = CHAT) -> InboundMessage:
    return InboundMessage(event_id="ev_1", channel=channel, native_id="1", thread_key="t", sender=sender,
                          received_at=datetime(2026, 3, 1, tzinfo=UTC), text=text, tags=tags)


@pytest.mark.parametrize(("text", "stated", "quote"), [
    ("Hi, my email is ada@example.com, thanks", "email:ada@example.com", "Hi, my email is ada@example.com"),
    ("My work e-mail: <Ada.Lovelace@Example.co.uk>.", "email:ada.lovelace@example.co.uk",
     "My work e-mail: <Ada.Lovelace@Example.co.uk"),
    ("my email address is now ada@example.com", "email:ada@example.com", None),
    ("you can reach me at +44 20 7946 0958.", "phone:+442079460958", "you can reach me at +44 20 7946 0958"),
    ("My number is 0044 (0)20 7946 0958", "phone:+442079460958", None),
    ("call me on +1 (415) 555-0100 tomorrow", "phone:+14155550100", "call me on +1 (415) 555-0100"),
    ("my mobile number: +33 6 12 34 56 78", "phone:+33612345678", None),
    ("email me at ada@example.com", "email:ada@example.com", None),
    ("Thanks.\nBy the way my new email is ada@example.com", "email:ada@example.com",
     "By the way my new email is ada@example.com"),
])
def test_statements_of_ones_own_identity_count(text: str, stated: str, quote: str | None) -> None:
    [candidate] = find(message(text), our_domains=OURS)
    assert str(candidate.identity) == stated
    assert candidate.quote == (quote or " ".join(text.split()).rstrip(".,"))


@pytest.mark.parametrize(("text", "why"), [
    ("please email support@company.com about it", "not a statement about oneself"),
    ("my email is help@support.example.net", "our own support domain"),
    ("my email is noreply@shop.example", "a no-reply mailbox"),
    ("my email is https://example.com/u/ada@example.com", "inside a URL"),
    ("my email is ada@example.com/profile", "a URL path"),
    ("my wife's email is eve@example.com", "somebody else's"),
    ("my colleague can be reached at bob@example.com", "somebody else's"),
    ("my phone is 020 7946 0958", "national number: ambiguous without a country"),
    ("my number is +44 20 7946 0958 1234 5678", "longer than E.164 allows"),
    ("text me at +44 20 7946 0958abc", "runs into a word"),
    ("Thanks!\n---------- Forwarded message ---------\nFrom: Bob\nmy email is bob@example.com",
     "inside a forward"),
    ("See below\n> my email is bob@example.com", "a quoted line"),
    ("Ok.\nOn Mon, 2 Mar 2026, Bob wrote:\nmy email is bob@example.com", "below a quote header"),
    ("my ticket number is 0012345678", "not a phone or address noun"),
    ("my chat is s_81f3", "no identity in it"),
])
def test_what_must_not_link(text: str, why: str) -> None:
    assert find(message(text), our_domains=OURS) == [], why


@pytest.mark.parametrize(("channel", "tags", "private"), [
    ("chat", (), True),
    ("phone", (), True),
    ("voicemail", (), True),
    ("api", (), True),
    ("x", ("dm",), True),
    ("x", (), False),  # a public mention: anyone can claim anything
    ("email", (), False),  # the From already is the address; forwards and signatures abound
    ("fax", (), False),  # a channel nobody declared private is not
])
def test_only_private_channels_are_evidence(channel: str, tags: tuple[str, ...], private: bool) -> None:
    m = message("my email is ada@example.com", channel=channel, tags=tags)
    assert is_private(m) is private
    assert bool(find(m)) is private


def test_the_senders_own_identity_and_repeats_are_not_candidates() -> None:
    ada = Identity(kind="email", value="ada@example.com")
    text = "my email is ada@example.com and my phone is +442079460958, again my phone is +44 20 7946 0958"
    found = find(message(text, channel="api", sender=ada))
    assert [str(c.identity) for c in found] == ["phone:+442079460958"]


def test_two_statements_give_two_candidates_in_order() -> None:
    found = find(message("my email is ada@example.com. You can also reach me at +14155550100"))
    assert [str(c.identity) for c in found] == ["email:ada@example.com", "phone:+14155550100"]


def test_quotes_are_short() -> None:
    text = "x" * 500 + " my email is " + "a" * 60 + "@example.com"
    [candidate] = find(message(text))
    assert len(candidate.quote) <= MAX_QUOTE_CHARS and candidate.quote.startswith("x")
