"""Reply mode by tier: a premium caller is called back (a task with the number, due by the SLA),
a standard caller is texted back; the policy's setting is checked against what each channel offers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from processors.brain import acknowledge, callback, lifecycle, route, sla
from processors.brain.thread import ThreadRules
from processors.dispatch.plan import card_for
from processors.intake.stage import identified_message
from processors.policy.load import check, load_policy, parse_policy
from processors.policy.model import Policy, Vocabulary
from processors.stores.clocks import SlaEntry
from processors.stores.history import ConversationSummary
from router.vocabulary import VOCABULARY
from schemas import Decision, Identity, InboundMessage
from schemas.conversation import ConversationEvent
from schemas.errors import ConfigError
from schemas.identified import CustomerProfile
from schemas.routed import CallbackTask
from tests.paths import ROOT

EXAMPLE = ROOT / "deploy" / "policy.example.yaml"
MINIMAL = (ROOT / "tests" / "fixtures" / "policy" / "valid_minimal.yaml").read_text()
# a Tuesday, 10:00 in Berlin: the team is open
NOW = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
ADA = "+4915123456789"


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(EXAMPLE, VOCABULARY)


def call(sender: str = ADA, kind: str = "phone") -> InboundMessage:
    return InboundMessage(event_id="ev_call", channel="phone", native_id="CA1", thread_key="call:CA1",
                          sender=Identity(kind=kind, value=sender), received_at=NOW,
                          text="My line is dead, please call me.")


def decide(message: InboundMessage, policy: Policy, tier: str | None,
           identities: tuple[Identity, ...] = (),
           recent: tuple[ConversationSummary, ...] = ()) -> route.Outcome:
    seen = Decision(stage="identify", outcome="new", reasons=("x",))
    identified = identified_message(message, "cus_1", "seen", seen, at=message.received_at)
    profile = CustomerProfile(customer_id="cus_1", tier=tier, name="Ada", identities=identities)
    return route.decide(identified, route.Facts(profile=profile, recent=recent), policy,
                        ThreadRules(token_key=b"k"), NOW)


def test_a_premium_caller_is_a_callback_task_due_by_the_tiers_sla_and_gets_no_text(policy: Policy) -> None:
    out = decide(call(), policy, "premium")
    routed = out.routed
    assert routed.reply_mode == "callback"
    assert routed.callback == CallbackTask(number=ADA, due=routed.first_response_due)
    assert routed.first_response_due == NOW + timedelta(hours=2)  # premium, normal: 2 business hours
    assert out.ack is None
    [mode] = [d for d in routed.decisions if d.stage == "reply_mode"]
    assert mode.outcome == "callback"
    assert mode.reasons[0].startswith("reply_mode=callback: tier premium on phone is called back "
                                      "(tiers.premium.reply_mode), due 2026-03-03T11:00")
    assert mode.reasons[1] == f"call back {ADA}; mark it done when you have reached them"
    [ack] = [d for d in routed.decisions if d.stage == "acknowledge"]
    assert (ack.outcome, ack.reasons) == ("skip", (
        "no acknowledgement: tier premium on phone is called back, and the call is the answer",))


def test_a_standard_caller_is_texted_back_and_carries_no_task(policy: Policy) -> None:
    out = decide(call(), policy, None)
    assert (out.routed.tier, out.routed.reply_mode, out.routed.callback) == ("standard", "text", None)
    assert out.ack is not None and out.ack.text.startswith("Thanks for calling, Ada.")
    assert not [d for d in out.routed.decisions if d.stage == "reply_mode"]


def test_the_same_premium_customer_by_mail_is_answered_in_writing(policy: Policy) -> None:
    mail = msgspec.structs.replace(call(), channel="email",
                                   sender=Identity(kind="email", value="ada@example.com"))
    out = decide(mail, policy, "premium")
    assert (out.routed.reply_mode, out.routed.callback) == ("text", None)
    assert out.ack is not None


def test_a_withheld_caller_is_called_on_a_number_on_file_or_the_task_says_there_is_none(
        policy: Policy) -> None:
    withheld = call("withheld-CA1")
    on_file = decide(withheld, policy, "premium", (Identity(kind="email", value="ada@example.com"),
                                                   Identity(kind="phone", value="+4930123456")))
    assert on_file.routed.callback is not None and on_file.routed.callback.number == "+4930123456"
    nobody = decide(withheld, policy, "enterprise")
    assert nobody.routed.callback is not None and nobody.routed.callback.number is None
    [mode] = [d for d in nobody.routed.decisions if d.stage == "reply_mode"]
    assert "no number to call" in mode.reasons[1]


def test_calling_again_joins_the_conversation_and_its_one_task(policy: Policy) -> None:
    first = decide(call(), policy, "premium").routed
    earlier = ConversationSummary(conversation_id=first.conversation_id, queue=first.queue, status="open",
                                  last_at=NOW - timedelta(minutes=20))
    again = msgspec.structs.replace(call(), event_id="ev_again", native_id="CA2", thread_key="call:CA2")
    out = decide(again, policy, "premium", recent=(earlier,))
    assert out.routed.conversation_id == first.conversation_id and not out.new_conversation
    assert out.ack is None
    card = card_for(first, None, NOW)
    assert card.callback == first.callback
    # the repeat call keeps the one task; so does a mail in the same conversation, answered by text
    assert card_for(out.routed, card, NOW).callback == out.routed.callback
    mail = msgspec.structs.replace(decide(call(), policy, None).routed, callback=None, reply_mode="text")
    assert card_for(mail, card, NOW).callback == first.callback


def test_number_to_call_prefers_the_sender_and_takes_only_e164() -> None:
    assert callback.number_to_call(Identity(kind="phone", value=ADA),
                                   (Identity(kind="phone", value="+4930123456"),)) == ADA
    assert callback.number_to_call(Identity(kind="email", value="a@b.c"), ()) is None


def test_the_greetings_outlook_carries_the_tiers_reply_mode(policy: Policy) -> None:
    seen = {t: acknowledge.prospect(channel="phone", tier=t, backlog={}, policy=policy, now=NOW).reply_mode
            for t in ("premium", "enterprise", "standard", None)}
    assert seen == {"premium": "callback", "enterprise": "callback", "standard": "text", None: "text"}


def test_marking_the_call_made_is_the_first_response() -> None:
    policy = load_policy(EXAMPLE, VOCABULARY)
    clock, _ = sla.apply(sla.SlaClock(tier="premium", urgency="normal", queue="general"),
                         sla.ClockEvent("customer_message", NOW), policy)
    entry = SlaEntry(conversation_id="con_1", customer_id="cus_1", channel="phone",
                     recipient=Identity(kind="phone", value=ADA), clock=clock)
    summary = ConversationSummary(conversation_id="con_1", queue="general", status="open", last_at=NOW)
    done = ConversationEvent(event_id="ev_cb", conversation_id="con_1", customer_id="cus_1",
                             kind="called_back", at=NOW + timedelta(minutes=40), author="maria",
                             text="line fixed remotely")
    change = lifecycle.apply(done, summary, entry, policy)
    assert change.entry.clock.replied and change.summary.agent == "maria"
    assert change.line is not None and change.line.direction == "out"
    assert change.line.summary == "called back by maria: line fixed remotely"
    closed = msgspec.structs.replace(summary, status="closed")
    assert lifecycle.apply(done, closed, entry, policy).ignored


# --- the policy setting, checked at load -----------------------------------------------

PHONE = Vocabulary(channels=frozenset({"api", "email", "phone"}), tools=VOCABULARY.tools,
                   reply_modes={"phone": ("text", "callback")})


def with_mode(setting: str) -> str:
    tier = "    rank: 1\n"
    assert tier in MINIMAL
    return MINIMAL.replace(tier, f"{tier}    reply_mode: {setting}\n", 1)


def test_a_tier_may_be_called_back_on_a_channel_that_offers_it() -> None:
    policy = parse_policy(with_mode("{phone: callback, email: text}"), "p.yaml", PHONE)
    tier = policy.tiers[policy.default_tier]
    assert dict(tier.reply_modes) == {"phone": "callback", "email": "text"}
    assert policy.reply_mode("phone", tier.name) == "callback"
    assert policy.reply_mode("api", tier.name) == "text"


@pytest.mark.parametrize(("setting", "error"), [
    ("{email: callback}", "reply_mode.email: channel 'email' is answered by 'text' only; 'callback' "
                          "needs a channel that offers it"),
    ("{phone: fax}", "reply_mode.phone: channel 'phone' is answered by 'text' or 'callback' only, not 'fax'"),
    ("{fone: callback}", "reply_mode.fone: unknown channel 'fone'; known: api, email, phone"),
    ("callback", "reply_mode: must be a mapping"),
])
def test_a_reply_mode_the_channel_does_not_offer_is_refused_with_its_place(setting: str, error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_policy(with_mode(setting), "p.yaml", PHONE)
    assert str(caught.value).startswith("p.yaml:")
    assert error in str(caught.value)


def test_the_registered_phone_channel_offers_text_and_callback_and_check_says_who_is_called_back() -> None:
    assert VOCABULARY.reply_modes["phone"] == ("text", "callback")
    assert VOCABULARY.reply_modes["email"] == ("text",)
    assert "answered otherwise than by text: enterprise on phone by callback, premium on phone by callback" \
        in check(EXAMPLE, VOCABULARY)


def test_a_caller_waiting_for_a_late_call_back_is_texted_a_status_update(policy: Policy) -> None:
    update = acknowledge.status_update(
        channel="phone", recipient="phone", name="Ada", reference="con_1", tier="premium", queue="general",
        backlog=0, handling_time=None, due=NOW + timedelta(minutes=30), policy=policy, now=NOW)
    assert update.ack is not None
    assert update.ack.text.startswith("We haven't forgotten you, Ada: you will hear from us by")
