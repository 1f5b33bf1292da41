"""The brain's composed decision for one message, under the documented example policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from processors.brain import route
from processors.brain.thread import ThreadRules
from processors.intake.stage import identified_message
from processors.policy.load import load_policy
from processors.policy.model import Policy
from processors.stores.history import ConversationSummary
from router.vocabulary import VOCABULARY
from schemas import Decision, EmailExtras, Identity, InboundMessage
from schemas.identified import CustomerProfile
from schemas.ids import new_conversation_id
from schemas.tokens import make_token
from tests.paths import ROOT

KEY = b"k"
RULES = ThreadRules(token_key=KEY)
# a Tuesday, 10:00 in Berlin: the general team is open
NOW = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(ROOT / "deploy" / "policy.example.yaml", VOCABULARY)


def msg(text: str = "Where is my order?", channel: str = "api", tags: tuple[str, ...] = (),
        extras: EmailExtras | None = None, event: str = "ev_1") -> InboundMessage:
    return InboundMessage(event_id=event, channel=channel, native_id=event, thread_key=f"t-{event}",
                          sender=Identity(kind="email", value="ada@example.com"), received_at=NOW,
                          text=text, tags=tags, extras=extras)


def decide(m: InboundMessage, policy: Policy, tier: str | None = None,
           recent: tuple[ConversationSummary, ...] = (), known_thread: str | None = None) -> route.Outcome:
    identified = identified_message(m, "cus_1", "first seen", Decision(stage="identify", outcome="new",
                                                                       reasons=("x",)), at=m.received_at)
    facts = route.Facts(profile=CustomerProfile(customer_id="cus_1", tier=tier, name="Ada"), recent=recent,
                        known_thread=known_thread)
    return route.decide(identified, facts, policy, RULES, NOW)


def test_a_new_standard_message_is_routed_with_reasons_and_acknowledged(policy: Policy) -> None:
    out = decide(msg(channel="email"), policy)
    routed = out.routed
    assert (routed.queue, routed.tier, routed.urgency) == ("general", "standard", "normal")
    assert out.new_conversation
    assert routed.conversation_id == new_conversation_id(msg(channel="email").event_id)
    assert routed.first_response_due is not None and routed.first_response_due > NOW
    assert out.ack is not None and "Ada" in out.ack.text
    assert [d.stage for d in routed.decisions][-5:] == ["thread", "enrich", "classify", "route",
                                                        "acknowledge"]


def test_premium_is_ahead_of_standard_at_the_same_urgency(policy: Policy) -> None:
    standard, premium = decide(msg(), policy), decide(msg(), policy, tier="premium")
    enterprise = decide(msg(), policy, tier="enterprise")
    assert standard.routed.urgency == premium.routed.urgency
    assert enterprise.routed.priority < premium.routed.priority < standard.routed.priority
    assert premium.routed.first_response_due < standard.routed.first_response_due  # type: ignore[operator]


def test_an_outage_raises_urgency_with_the_keyword_as_evidence(policy: Policy) -> None:
    routed = decide(msg("Total outage, nothing works!"), policy).routed
    classify = next(d for d in routed.decisions if d.stage == "classify")
    assert routed.urgency in ("high", "critical")
    assert any("outage" in r for r in classify.reasons)


def test_the_same_customer_minutes_later_on_another_channel_continues_the_case(policy: Policy) -> None:
    earlier = ConversationSummary(conversation_id="con_earlier0000000000000", queue="general",
                                  status="open", last_at=NOW - timedelta(minutes=10), agent="maria")
    out = decide(msg("any news on my order?", channel="email", event="ev_2"), policy, recent=(earlier,))
    assert out.routed.conversation_id == "con_earlier0000000000000"
    assert (out.routed.queue, out.routed.agent) == ("general", "maria")
    assert not out.new_conversation and out.ack is None  # one acknowledgement per conversation


def test_a_reply_to_our_mail_joins_by_token(policy: Policy) -> None:
    ours = "con_00000000000000000042"
    mine = ConversationSummary(conversation_id=ours, queue="general", status="open",
                               last_at=NOW - timedelta(days=3))
    extras = EmailExtras(message_id="m2@x", in_reply_to=(f"sb.{make_token(ours, KEY)}.rep_1@s.example",))
    out = decide(msg(channel="email", extras=extras), policy, recent=(mine,))
    assert out.routed.conversation_id == ours
    thread = next(d for d in out.routed.decisions if d.stage == "thread")
    assert thread.outcome == "token"


@pytest.mark.parametrize("known_thread", [False, True], ids=["valid-token", "known-thread"])
def test_another_customers_conversation_is_never_joined(policy: Policy, known_thread: bool) -> None:
    # the attacker holds a real token (or the Message-ID of a known thread) of Ada's conversation
    adas = "con_00000000000000000042"
    extras = EmailExtras(message_id="m9@evil", in_reply_to=(
        () if known_thread else (f"sb.{make_token(adas, KEY)}.rep_1@s.example",)))
    out = decide(msg(channel="email", extras=extras), policy, known_thread=adas if known_thread else None)
    assert out.routed.conversation_id != adas and out.new_conversation
    thread = next(d for d in out.routed.decisions if d.stage == "thread")
    assert thread.outcome == "refused_join" and "not joined" in thread.reasons[0]


def test_a_reply_in_a_closed_conversations_thread_starts_one_named_by_the_message(policy: Policy) -> None:
    closed = ConversationSummary(conversation_id="con_closed00000000000000", queue="general",
                                 status="closed", last_at=NOW - timedelta(days=1))
    out = decide(msg(event="ev_after"), policy, recent=(closed,), known_thread=closed.conversation_id)
    assert out.new_conversation
    # the message's own id, as a message with no thread at all gets: never the closed one's
    assert out.routed.conversation_id == new_conversation_id("ev_after")
    assert decide(msg(event="ev_after"), policy).routed.conversation_id == new_conversation_id("ev_after")


def test_a_refused_join_is_named_by_the_message_like_any_new_conversation(policy: Policy) -> None:
    out = decide(msg(event="ev_forged"), policy, known_thread="con_00000000000000000042")
    assert out.routed.conversation_id == new_conversation_id("ev_forged")
    thread = next(d for d in out.routed.decisions if d.stage == "thread")
    assert thread.outcome == "refused_join" and new_conversation_id("ev_forged") in thread.reasons[0]


@pytest.mark.parametrize("tag", ["auto_reply", "mailing_list"])
def test_machines_are_never_acknowledged(policy: Policy, tag: str) -> None:
    out = decide(msg(channel="email", tags=(tag,)), policy)
    assert out.ack is None
    ack = next(d for d in out.routed.decisions if d.stage == "acknowledge")
    assert ack.outcome == "skip"


def test_the_same_subject_days_later_is_the_weakest_hint(policy: Policy) -> None:
    earlier = ConversationSummary(conversation_id="con_subject0000000000000", queue="general",
                                  status="open", last_at=NOW - timedelta(days=3), subject="order 7")
    m = msgspec.structs.replace(msg(channel="email", event="ev_3"), subject="Re: RE: Order 7")
    out = decide(m, policy, recent=(earlier,))
    assert out.routed.conversation_id == "con_subject0000000000000"
    assert any("same subject 'order 7'" in r for r in out.routed.reasons)
    other = msgspec.structs.replace(m, subject="Something new")
    assert decide(other, policy, recent=(earlier,)).new_conversation
