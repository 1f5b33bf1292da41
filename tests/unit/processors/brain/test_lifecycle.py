"""A conversation's life after routing: events, the customer's answers, plans and their firing."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from processors.brain import lifecycle, route, sla
from processors.brain.thread import ThreadRules
from processors.intake.stage import identified_message
from processors.policy.load import load_policy
from processors.policy.model import FollowUp, Lifecycle, Policy, Sla
from processors.stores.clocks import SlaEntry
from processors.stores.history import ConversationSummary
from processors.watch.lifecycle_watch import Planned, fire
from router.vocabulary import VOCABULARY
from schemas import Decision, Identity, InboundMessage, OutboundMessage, decode
from schemas.conversation import ConversationEvent, LifecycleKind
from schemas.identified import CustomerProfile
from schemas.topics import CONVERSATION, OUTBOUND
from tests.paths import ROOT

POLICY = load_policy(ROOT / "deploy" / "policy.example.yaml", VOCABULARY)
NO_PAUSE = dataclasses.replace(POLICY, sla=Sla(pause_when_waiting_on_customer=False))
NO_CONFIRM = dataclasses.replace(POLICY, lifecycle=dataclasses.replace(POLICY.lifecycle, confirm=None))
# Tuesday 3 March 2026, 10:00 in Berlin: eu-support is open
NOW = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
CID = "con_life0000000000000001"
ADA = Identity(kind="email", value="ada@example.com")


def summary(status: str = "open", **fields: Any) -> ConversationSummary:
    base: dict[str, Any] = {"conversation_id": CID, "queue": "general", "status": status,
                            "last_at": NOW - timedelta(minutes=30), "agent": "ana"}
    return ConversationSummary(**(base | fields))


def entry(*kinds: sla.EventKind, channel: str = "email", tier: str = "premium") -> SlaEntry:
    clock = sla.SlaClock(tier=tier, urgency="normal", queue="general")
    for i, kind in enumerate(("customer_message", *kinds)):
        clock, _ = sla.apply(clock, sla.ClockEvent(kind, NOW - timedelta(minutes=30 - i)), POLICY)
    return SlaEntry(conversation_id=CID, customer_id="cus_1", channel=channel, recipient=ADA,
                    clock=clock, name="Ada", subject="Parcel", in_reply_to="<m1@example.com>")


def event(kind: LifecycleKind, **fields: Any) -> ConversationEvent:
    base: dict[str, Any] = {"event_id": f"evt_{kind}", "conversation_id": CID, "customer_id": "cus_1",
                            "kind": kind, "at": NOW, "author": "ana"}
    return ConversationEvent(**(base | fields))


# kind, status before, status after, history line direction (None: ignored), plans, cancels
TRANSITIONS: list[tuple[LifecycleKind, str, str, str | None, tuple[str, ...], bool]] = [
    ("agent_reply", "open", "open", "out", (), False),
    ("agent_reply", "waiting_on_customer", "waiting_on_customer", "out", (), False),
    ("agent_reply", "resolved", "resolved", "out", (), False),
    ("note", "open", "open", "note", (), False),
    ("note", "closed", "closed", "note", (), False),
    ("waiting_on_customer", "open", "waiting_on_customer", "event", (), False),
    ("waiting_on_customer", "waiting_on_customer", "waiting_on_customer", None, (), False),
    ("waiting_on_customer", "resolved", "resolved", None, (), False),
    ("resolved", "open", "resolved", "event", ("follow_up", "close"), True),
    ("resolved", "waiting_on_customer", "resolved", "event", ("follow_up", "close"), True),
    ("resolved", "resolved", "resolved", None, (), False),
    ("resolved", "closed", "closed", None, (), False),
    ("closed", "open", "closed", "event", (), True),
    ("closed", "resolved", "closed", "event", (), True),
    ("closed", "closed", "closed", None, (), False),
    ("reopened", "resolved", "open", "event", (), True),
    ("reopened", "closed", "closed", None, (), False),
    ("reopened", "open", "open", None, (), False),
    ("follow_up_sent", "resolved", "resolved", "out", (), False),
    ("follow_up_sent", "open", "open", "out", (), False),
    ("outcome", "resolved", "resolved", None, (), False),  # no follow-up went out
]


@pytest.mark.parametrize(("kind", "before", "after", "direction", "plans", "cancel"), TRANSITIONS,
                         ids=[f"{k}-from-{b}" for k, b, *_ in TRANSITIONS])
def test_every_transition(kind: LifecycleKind, before: str, after: str, direction: str | None,
                          plans: tuple[str, ...], cancel: bool) -> None:
    change = lifecycle.apply(event(kind, text="words"), summary(before), entry(), POLICY)
    assert change.summary.status == after and change.status == after
    assert change.ignored is (direction is None)
    assert (change.line.direction if change.line else None) == direction
    assert tuple(d.kind for d in change.plan) == plans
    assert change.cancel is cancel
    if change.line is not None:
        assert (change.line.conversation_id, change.line.channel) == (CID, "email")


@pytest.mark.parametrize(("kind", "clock_event"), [
    ("agent_reply", "agent_public_reply"), ("waiting_on_customer", "waiting_on_customer"),
    ("resolved", "resolved"), ("closed", "resolved"), ("note", None), ("reopened", None),
])
def test_the_clock_event_each_kind_applies(kind: LifecycleKind, clock_event: str | None) -> None:
    before = "resolved" if kind == "reopened" else "open"
    change = lifecycle.apply(event(kind), summary(before), entry(), POLICY)
    assert (change.clock_event.kind if change.clock_event else None) == clock_event


def test_an_agent_reply_meets_the_first_response_and_starts_the_next() -> None:
    change = lifecycle.apply(event("agent_reply", text="Your parcel left today.", author="ben"),
                             summary(agent=None), entry(), POLICY)
    clock = change.entry.clock
    assert (clock.target, clock.replied, clock.paused) == ("next_response", True, False)
    assert "first response 2h met after" in change.reason
    assert change.summary.agent == "ben", "the agent who answered now knows the case"
    assert change.line is not None and change.line.summary == "Your parcel left today."
    assert change.summary.last_at == NOW


def test_waiting_pauses_the_clock_and_the_customer_resumes_it() -> None:
    change = lifecycle.apply(event("waiting_on_customer"), summary(), entry("agent_public_reply"), POLICY)
    assert change.entry.clock.paused and change.entry.clock.running_since is None
    assert change.line is not None and "paused while waiting on the customer" in change.line.summary
    # a reply while waiting does not start the clock running: the team still waits
    reply = lifecycle.apply(event("agent_reply"), change.summary, change.entry, POLICY)
    assert reply.entry.clock.paused and reply.summary.status == "waiting_on_customer"
    answer = lifecycle.on_message(change.summary, "here is the photo", queue="general", agent="ana",
                                  policy=POLICY)
    assert (answer.status, answer.clock, answer.cancel) == ("open", True, False)
    assert answer.decision is not None and answer.decision.reasons[0].startswith("resumed:")
    resumed, why = sla.apply(change.entry.clock, sla.ClockEvent("customer_message", NOW), POLICY)
    assert not resumed.paused and why.endswith("resumed")


def test_waiting_keeps_the_clock_running_when_the_policy_says_so() -> None:
    change = lifecycle.apply(event("waiting_on_customer"), summary(), entry(), NO_PAUSE)
    assert change.summary.status == "waiting_on_customer"
    assert not change.entry.clock.paused and change.entry.clock.running_since is not None
    assert "keeps the clock running" in change.reason


def test_resolving_stops_the_clock_and_plans_follow_up_and_close() -> None:
    change = lifecycle.apply(event("resolved"), summary(), entry("agent_public_reply"), POLICY)
    assert change.entry.clock.resolved and sla.next_due(change.entry.clock, POLICY) is None
    assert change.plan == (lifecycle.Due("follow_up", NOW + timedelta(hours=24)),
                           lifecycle.Due("close", NOW + timedelta(hours=72)))
    assert (change.summary.resolved_at, change.summary.follow_up_at) == (NOW, None)
    assert change.line is not None and "open → resolved" in change.line.summary
    assert "follow-up due 2026-03-04T09:00:00+00:00" in change.line.summary


def test_a_channel_without_follow_up_templates_only_closes() -> None:
    change = lifecycle.apply(event("resolved"), summary(), entry(channel="api"), POLICY)
    assert [d.kind for d in change.plan] == ["close"]


def test_a_sent_follow_up_awaits_the_answer_unless_reopened_meanwhile() -> None:
    sent = lifecycle.apply(event("follow_up_sent", text="Is it solved?"), summary("resolved"),
                           entry("resolved"), POLICY)
    assert sent.summary.follow_up_at == NOW and sent.summary.last_at == NOW
    late = lifecycle.apply(event("follow_up_sent"), summary("open"), entry(), POLICY)
    assert late.summary.follow_up_at is None and "no answer awaited" in late.reason


AWAITING = summary("resolved", resolved_at=NOW - timedelta(days=1), follow_up_at=NOW - timedelta(hours=1))


@pytest.mark.parametrize(("before", "text", "policy", "status", "outcome", "clock", "cancel", "why"), [
    (None, "hello", POLICY, "open", None, True, False, None),
    (summary(), "any news?", POLICY, "open", None, True, False, None),
    (summary("waiting_on_customer"), "here it is", POLICY, "open", None, True, False, "resumed: "),
    (summary("resolved"), "it broke again", POLICY, "open", None, True, True,
     f"reopened: resolved conversation {CID} continues with queue general, agent ana"),
    (AWAITING, "Yes it works now, thank you!", POLICY, "closed", "confirmed", False, True,
     "closed: the customer's answer to the follow-up"),
    (AWAITING, "No, still broken", POLICY, "open", "not solved", True, True,
     "reopened: the customer's answer to the follow-up"),
    (AWAITING, "Yes it works now", NO_CONFIRM, "open", "not solved", True, True,
     "the policy lists no confirming words"),
], ids=["new", "open", "waiting", "resolved", "confirmed", "not-solved", "no-confirm-words"])
def test_what_a_customer_message_does(before: ConversationSummary | None, text: str, policy: Policy,
                                      status: str, outcome: str | None, clock: bool, cancel: bool,
                                      why: str | None) -> None:
    answer = lifecycle.on_message(before, text, queue="general", agent="ana", policy=policy)
    assert (answer.status, answer.outcome, answer.clock, answer.cancel) == (status, outcome, clock, cancel)
    reasons = answer.decision.reasons if answer.decision else ()
    assert (why is None and not reasons) or (why is not None and why in reasons[0])


@pytest.mark.parametrize(("text", "status", "outcome"), [
    ("all good, thanks", "closed", "confirmed"), ("not at all", "open", "not solved")])
def test_an_outcome_event_answers_the_follow_up(text: str, status: str, outcome: str) -> None:
    change = lifecycle.apply(event("outcome", text=text), AWAITING, entry("resolved"), POLICY)
    assert change.summary.status == status and change.cancel and change.summary.follow_up_at is None
    assert change.line is not None and change.line.outcome == outcome
    assert (change.clock_event is not None) is (status == "open")


def test_a_transfer_is_counted_and_visible_in_history() -> None:
    change = lifecycle.apply(event("transferred", queue="billing", author="lead"),
                             summary(transfers=1), entry(), POLICY)
    assert (change.summary.queue, change.summary.transfers, change.summary.agent) == ("billing", 2, None)
    assert change.entry.clock.queue == "billing", "the new team's calendar and chain apply"
    assert change.line is not None and change.line.direction == "event"
    assert change.line.summary == "transferred from general to billing: transfer 2 of at most 3"
    assert (change.line.queue, change.line.agent) == ("billing", "lead")
    assert lifecycle.apply(event("transferred", queue="general"), summary(), entry(), POLICY).ignored
    gone = lifecycle.apply(event("transferred", queue="dropped"), summary(), entry(), POLICY)
    assert gone.ignored and gone.reason == "transferred ignored: the policy has no queue 'dropped'"


def test_transfer_words() -> None:
    assert lifecycle.Transfer("gone", "general", 1).words() == "transferred from gone to general: transfer 1"
    assert lifecycle.Transfer("social", "escalations", 2, 1, escalated=True).words() == (
        "escalated from social to escalations: 2 transfers, more than the 1 queue social allows")


@pytest.mark.parametrize(("channel", "tier", "name", "expected"), [
    ("email", "enterprise", "Ada", "Hi Ada, following up on con_1: is everything"),
    ("email", "standard", None, "Hi there, we resolved your request con_1 yesterday."),
    ("x", "premium", "Bo", "Hi Bo, is everything working again after con_1?"),
    ("api", "standard", "Ada", None),
])
def test_follow_up_text_by_channel_then_tier(channel: str, tier: str, name: str | None,
                                             expected: str | None) -> None:
    text = lifecycle.follow_up_text(POLICY, channel=channel, tier=tier, name=name, reference="con_1")
    assert (text is None and expected is None) or (text is not None and expected is not None
                                                   and text.startswith(expected))


def test_an_unknown_placeholder_stays_as_written() -> None:
    odd = dataclasses.replace(POLICY, lifecycle=Lifecycle(follow_up=FollowUp(
        delay=timedelta(hours=1), templates={"email": {"default": "{name}: {reference} {when}"}})))
    text = lifecycle.follow_up_text(odd, channel="email", tier="x", name="Ada", reference="r")
    assert text == "Ada: r {when}"


def test_card_status() -> None:
    assert [lifecycle.card_status(s) for s in ("open", "resolved", "later")] == ["open", "resolved", "open"]


# --- routing: reopened conversations, answered follow-ups, closed threads, transfers ------

RULES = ThreadRules(token_key=b"k")


def routed(text: str, *recent: ConversationSummary, thread: str | None = None,
           channel: str = "email") -> route.Outcome:
    message = InboundMessage(event_id="ev_9", channel=channel, native_id="ev_9", thread_key="t-9",
                             sender=ADA, received_at=NOW, text=text)
    identified = identified_message(message, "cus_1", "first seen",
                                    Decision(stage="identify", outcome="known", reasons=("x",)),
                                    at=message.received_at)
    facts = route.Facts(profile=CustomerProfile(customer_id="cus_1", name="Ada"), recent=recent,
                        known_thread=thread)
    return route.decide(identified, facts, POLICY, RULES, NOW)


def test_a_resolved_conversation_reopens_to_the_same_queue_and_agent_until_it_closes() -> None:
    # resolved 30 hours ago: far outside the 2h sticky window, inside the 72h close
    out = routed("it stopped working again", summary("resolved", last_at=NOW - timedelta(hours=30)))
    assert (out.routed.conversation_id, out.routed.queue, out.routed.agent) == (CID, "general", "ana")
    assert not out.new_conversation and out.answer.status == "open" and out.ack is None
    decision = next(d for d in out.routed.decisions if d.stage == "lifecycle")
    assert decision.outcome == "reopened"
    assert decision.reasons == (f"reopened: resolved conversation {CID} continues with queue general, "
                                "agent ana",)
    assert [d.stage for d in out.routed.decisions][-3:] == ["route", "lifecycle", "acknowledge"]
    later = routed("hello?", summary("resolved", last_at=NOW - timedelta(hours=73)))
    assert later.new_conversation


def test_a_confirming_answer_closes_without_reopening_or_acknowledging() -> None:
    out = routed("Yes it works now", AWAITING)
    assert out.routed.conversation_id == CID and not out.new_conversation
    assert (out.answer.status, out.answer.outcome, out.answer.clock) == ("closed", "confirmed", False)
    assert out.ack is None
    assert any(r.startswith("closed: the customer's answer") for r in out.routed.reasons)


def test_a_reply_in_a_closed_conversations_thread_starts_a_new_one() -> None:
    out = routed("one more question", summary("closed"), thread=CID)
    assert out.new_conversation and out.routed.conversation_id != CID
    route_reasons = next(d for d in out.routed.decisions if d.stage == "route").reasons
    assert route_reasons[0] == f"conversation {CID} of this thread is closed: it is not continued"


def test_a_routing_transfer_is_reported_for_the_history() -> None:
    out = routed("hello", summary(queue="escalations", transfers=1), channel="x")
    assert out.transfer == lifecycle.Transfer("escalations", "social", 2, 3)
    stay = routed("any news?", summary())
    assert stay.transfer is None


# --- the lifecycle watch's pure part ---------------------------------------------------------

RESOLVED = summary("resolved", resolved_at=NOW - timedelta(days=1), last_at=NOW - timedelta(days=1))


def test_a_due_follow_up_is_a_message_and_an_event_with_ids_from_the_resolve() -> None:
    due = Planned("cus_1", CID, "follow_up", None)
    outputs, why = fire(due, RESOLVED, entry("resolved"), POLICY, NOW)
    assert why == "follow-up sent" and [o.topic for o in outputs] == [OUTBOUND, CONVERSATION]
    message = decode(outputs[0].value, OutboundMessage)
    sent = decode(outputs[1].value, ConversationEvent)
    assert message.kind == "follow_up" and message.text.startswith(f"Hi Ada, we resolved your request {CID}")
    assert (message.recipient, message.in_reply_to, message.customer_id, message.queue) == (
        ADA, "<m1@example.com>", "cus_1", "general")
    assert (sent.kind, sent.reply_id, outputs[1].key) == ("follow_up_sent", message.reply_id, b"cus_1")
    again, _ = fire(due, RESOLVED, entry("resolved"), POLICY, NOW + timedelta(minutes=5))
    assert again[0].value != outputs[0].value  # created_at differs ...
    assert decode(again[0].value, OutboundMessage).reply_id == message.reply_id  # ... the id does not
    other = msgspec.structs.replace(RESOLVED, resolved_at=NOW)
    assert decode(fire(due, other, entry("resolved"), POLICY, NOW)[0][0].value,
                  OutboundMessage).reply_id != message.reply_id


@pytest.mark.parametrize(("kind", "state", "why"), [
    ("follow_up", summary("open"), "conversation is open"),
    ("close", summary("closed"), "conversation is closed"),
    ("follow_up", msgspec.structs.replace(RESOLVED, follow_up_at=NOW), "follow-up already sent"),
    ("close", None, "no longer known"),
])
def test_nothing_fires_for_a_conversation_that_moved_on(kind: str, state: ConversationSummary | None,
                                                        why: str) -> None:
    outputs, reason = fire(Planned("cus_1", CID, kind, None), state, entry(), POLICY, NOW)  # type: ignore[arg-type]
    assert outputs == [] and why in reason


def test_a_due_close_is_a_closed_event() -> None:
    [out], _ = fire(Planned("cus_1", CID, "close", None), RESOLVED, entry("resolved"), POLICY, NOW)
    closed = decode(out.value, ConversationEvent)
    assert (out.topic, closed.kind, closed.source) == (CONVERSATION, "closed", "lifecycle")
    assert closed.text == "no word from the customer within 72h of resolution"
