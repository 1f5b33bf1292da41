from __future__ import annotations

import csv
import time
from datetime import UTC, datetime, timedelta

import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from processors.brain.classify import classify, sentiment
from processors.policy.load import load_policy, parse_policy
from router.vocabulary import VOCABULARY
from tests.paths import ROOT

CORPUS = ROOT / "tests" / "fixtures" / "support-text" / "bitext-customer-support-6480.csv"
POLICY = load_policy(ROOT / "deploy" / "policy.example.yaml", VOCABULARY)
AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

# --- sentiment: VADER's scores, in linear time ---------------------------------------------

TRICKY = [
    "VADER is VERY SMART, uber handsome, and FRIGGIN FUNNY!!!",
    "The plot was good, but the characters are uncompelling and the dialog is not great.",
    "Today only kinda sux! But I'll get by, lol",
    "Make sure you :) or :D today!",
    "Catch utf-8 emoji such as 💘 and 💋 and 😁",
    "💘💘x💘 y",
    "Not bad at all",
    "At least it isn't a horrible book.",
    "Roger Dodger is one of the least compelling variations on this theme.",
    "Without a doubt, excellent idea.",
    "Sentiment analysis has never been this good!",
    "no no bad, nor good",
    "good good but good good bad bad",
    "bad good bad but good bad good nice bad good but great good",  # scores scaled onto equal ones
    "great, but great and great??",
    "The book was only kind of good.",
    "With VADER, sentiment analysis is the shit!",
    "yeah right, cut the mustard",
    "",
    "   ",
    "!!!???",
]


def corpus_texts() -> list[str]:
    with CORPUS.open(newline="") as f:
        rows = list(csv.DictReader(f))
    instructions = [r["instruction"] for r in rows]
    responses = [r["response"] for r in rows]
    # long, email-sized texts, and many "but"s, where VADER's own code is slowest and quirkiest
    emails = [" ".join(instructions[i:i + 12]) for i in range(0, len(instructions), 12)]
    buts = [" but ".join(responses[i:i + 3]) for i in range(0, 1500, 3)]
    return instructions + responses + emails + buts


def test_sentiment_scores_are_identical_to_vader_on_the_support_corpus() -> None:
    vader = SentimentIntensityAnalyzer()
    texts = corpus_texts() + TRICKY
    assert len(texts) > 13_000
    different = [t for t in texts if sentiment(t) != vader.polarity_scores(t)["compound"]]
    assert different == []


def test_sentiment_is_linear_in_text_length() -> None:
    unit = "I am very unhappy, but the agent was not bad at all. "

    def cpu(repeats: int) -> float:
        # this process's CPU time, best of three: other load on the machine does not count
        best = float("inf")
        for _ in range(3):
            started = time.process_time()
            assert -1.0 <= sentiment(unit * repeats) <= 1.0
            best = min(best, time.process_time() - started)
        return best

    # ten times the text (42k characters) costs about ten times the work; quadratic, a hundred
    assert cpu(800) < 30 * max(cpu(80), 1e-3)


# --- urgency rules -------------------------------------------------------------------------


def urgency_of(text: str, *, channel: str = "email", tier: str = "standard",
               recent: list[datetime] | None = None,
               tags: tuple[str, ...] = ()) -> tuple[str, tuple[str, ...]]:
    c = classify(text, channel, tier, recent or [], POLICY, at=AT, tags=tags)
    return c.urgency, c.reasons


@pytest.mark.parametrize(("text", "urgency", "reason"), [
    ("Our dashboard has an outage since 9", "critical", "urgency=critical: keyword 'outage' (rule outage)"),
    ("Die App funktioniert nicht", "critical",
     "urgency=critical: keyword 'funktioniert nicht' (rule outage)"),
    ("site IS DOWN", "critical", "urgency=critical: keyword 'is down' (rule outage)"),
    ("I think my account was hacked", "high", "urgency=high: keyword 'hacked' (rule security)"),
    ("How do I change my address?", "normal", "urgency=normal: no urgency rule applied"),
    # whole words only
    ("outages are fun to read about", "normal", "urgency=normal: no urgency rule applied"),
])
def test_keyword_rules(text: str, urgency: str, reason: str) -> None:
    got, reasons = urgency_of(text)
    assert got == urgency
    assert reason in reasons


def test_negative_sentiment_raises_one_level_with_the_score_as_evidence() -> None:
    text = "This is terrible, the worst support ever. I hate this useless, awful app!"
    c = classify(text, "email", "standard", [], POLICY, at=AT)
    assert c.sentiment <= -0.5
    assert c.urgency == "high"
    assert f"urgency +1: sentiment {c.sentiment:.2f} ≤ -0.5 (rule negative-sentiment)" in c.reasons
    assert "urgency=high: normal +1" in c.reasons


@pytest.mark.parametrize(("earlier", "urgency"), [
    ([AT - timedelta(hours=1), AT - timedelta(hours=20)], "high"),  # 3 within 24h
    ([AT - timedelta(hours=1), AT - timedelta(hours=25)], "normal"),  # one is too old
    ([AT - timedelta(hours=1)], "normal"),
    ([AT - timedelta(hours=24), AT - timedelta(minutes=1)], "high"),  # the edge counts
])
def test_repeated_contacts(earlier: list[datetime], urgency: str) -> None:
    got, reasons = urgency_of("any news?", recent=earlier)
    assert got == urgency
    if urgency == "high":
        assert "urgency +1: 3 messages from this customer within 24h (rule repeat-contact)" in reasons


@pytest.mark.parametrize(("channel", "tags", "urgency"), [
    ("x", ("public",), "high"),
    ("x", ("dm",), "normal"),      # a direct message is not public
    ("email", ("public",), "normal"),
])
def test_public_mention(channel: str, tags: tuple[str, ...], urgency: str) -> None:
    got, reasons = urgency_of("where is my parcel", channel=channel, tags=tags)
    assert got == urgency
    if urgency == "high":
        assert "urgency +1: channel x, tag public (rule public-mention)" in reasons


def test_raises_are_capped_at_the_top_level() -> None:
    text = "Outage again!!! This is the worst, most useless, terrible service. I hate it."
    got, reasons = urgency_of(text, channel="x", tags=("public",))
    assert got == "critical"
    assert "urgency=critical: critical +2 (capped at the top level)" in reasons


FLOOR = """
default_tier: standard
tiers:
  enterprise:
    rank: 2
    first_response: {low: 1h, normal: 1h, high: 1h}
    next_response: {low: 1h, normal: 1h, high: 1h}
  standard:
    rank: 1
    first_response: {low: 1h, normal: 1h, high: 1h}
    next_response: {low: 1h, normal: 1h, high: 1h}
urgency:
  levels: [low, normal, high]
  default: low
  rules:
    - {name: angry, sentiment_at_most: -0.5, raise_by: 1}
    - {name: enterprise-floor, tiers: [enterprise], raise_to: normal}
    - {name: invoice, keywords: [invoice], raise_to: normal}
queues:
  general: {match: {}, destinations: [desk]}
default_queue: general
"""


@pytest.mark.parametrize(("text", "tier", "urgency", "reason"), [
    ("hello", "standard", "low", "urgency=low: no urgency rule applied"),
    ("hello", "enterprise", "normal", "urgency=normal: tier enterprise (rule enterprise-floor)"),
    # raise_to applies before raise_by whatever the order in the file: floor, then +1
    ("I hate this awful, terrible app", "enterprise", "high", "urgency=high: normal +1"),
    ("invoice please", "enterprise", "normal",
     "urgency=normal: keyword 'invoice' (rule invoice, already normal)"),
])
def test_tier_floor_and_order_of_effects(text: str, tier: str, urgency: str, reason: str) -> None:
    policy = parse_policy(FLOOR, "floor.yaml", VOCABULARY)
    c = classify(text, "email", tier, [], policy, at=AT)
    assert c.urgency == urgency
    assert reason in c.reasons


def test_contact_window_tells_the_caller_how_far_back_to_look() -> None:
    assert POLICY.contact_window == timedelta(hours=24)
    assert parse_policy(FLOOR, "floor.yaml", VOCABULARY).contact_window == timedelta(0)


def test_every_condition_of_a_rule_is_evidence_in_the_files_order() -> None:
    # channel, tier and tag hold for every message of that kind; sentiment, contacts and
    # keywords are checked per message: the evidence still reads in the rule's order
    policy = parse_policy(FLOOR.replace(
        "- {name: invoice, keywords: [invoice], raise_to: normal}",
        "- {name: invoice, keywords: [invoice], raise_to: normal}\n"
        "    - {name: loud, channels: [x], tiers: [enterprise], tags: [public], "
        "sentiment_at_most: -0.2, keywords: [refund], raise_by: 1}\n"
        "    - {name: vip-angry, tiers: [enterprise], sentiment_at_most: -0.2, raise_by: 1}"),
        "loud.yaml", VOCABULARY)
    loud = "I hate this awful refund mess"
    c = classify(loud, "x", "enterprise", [], policy, at=AT, tags=("public", "dm"))
    assert any(r.startswith("urgency +1: channel x, tier enterprise, tag public, sentiment -0.")
               and r.endswith(", keyword 'refund' (rule loud)") for r in c.reasons)
    assert any(r.startswith("urgency +1: tier enterprise, sentiment -0.") and r.endswith("(rule vip-angry)")
               for r in c.reasons)
    # the same text on another channel, tier or without the tag: the rule does not fire
    for channel, tier, tags in (("email", "enterprise", ("public",)), ("x", "standard", ("public",)),
                                ("x", "enterprise", ("dm",))):
        other = classify(loud, channel, tier, [], policy, at=AT, tags=tags)
        assert not any("(rule loud)" in r for r in other.reasons), (channel, tier, tags)
    # a calm message of the right kind fails at sentiment, one without the keyword at keywords
    assert not any("(rule loud)" in r for r in classify(
        "a refund please", "x", "enterprise", [], policy, at=AT, tags=("public",)).reasons)
    assert not any("(rule loud)" in r for r in classify(
        "I hate this awful mess", "x", "enterprise", [], policy, at=AT, tags=("public",)).reasons)


def test_a_reloaded_policy_is_judged_by_its_own_rules() -> None:
    # what classify works out once per (channel, tier, tags) belongs to one policy's rules
    before = parse_policy(FLOOR, "floor.yaml", VOCABULARY)
    after = parse_policy(FLOOR.replace("tiers: [enterprise], raise_to: normal",
                                       "tiers: [standard], raise_to: high"), "floor.yaml", VOCABULARY)
    for _ in range(2):
        assert classify("hello", "email", "enterprise", [], before, at=AT).urgency == "normal"
        assert classify("hello", "email", "enterprise", [], after, at=AT).urgency == "low"
        assert classify("hello", "email", "standard", [], after, at=AT).urgency == "high"
