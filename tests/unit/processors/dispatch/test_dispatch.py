"""Dispatch's pure decisions: destinations, cards, delivery ids, claims, retries and fallbacks."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from msgspec.structs import replace

from connectors.base import AgentTool, Handoff
from processors.dispatch.breaker import Breakers
from processors.dispatch.deliver import Courier, Retry, backoff, fallback_chain
from processors.dispatch.items import Item, receipt_item, receipt_notice, routed_item, sla_item, sla_text
from processors.dispatch.plan import (
    HandoffAction,
    card_for,
    delivery_result,
    delivery_verdict,
    notice_destinations,
    plan_batch,
    recorded,
    route_destinations,
)
from processors.policy.load import load_policy
from processors.policy.model import Destination, Policy, Queue
from processors.stage import Record
from router.vocabulary import VOCABULARY
from schemas import DeliveryReceipt, EmailExtras, Identity, InboundMessage, RoutedConversation, SlaEvent
from schemas.conversation import ConversationCard
from schemas.errors import PermanentError, TransientError
from schemas.ids import delivery_id
from schemas.outbound import GuardFlag
from schemas.routed import TransferNote
from tests.paths import FIXTURES

NOW = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
MINIMAL = FIXTURES / "policy" / "valid_minimal.yaml"


def make_policy(queues: dict[str, Sequence[str]], *destinations: Destination) -> Policy:
    return dataclasses.replace(
        load_policy(MINIMAL, VOCABULARY), queues={n: Queue(n, None, tuple(d)) for n, d in queues.items()},
        default_queue=next(iter(queues)), destinations={d.name: d for d in destinations})


POLICY = make_policy({"general": ["hook"], "billing": ["billing-hook", "slack"]},
                     Destination("hook", "webhook", fallback="mailbox"),
                     Destination("billing-hook", "webhook"), Destination("slack", "slack"),
                     Destination("mailbox", "mailbox"))


def routed(event: str = "ev_1", queue: str = "general", conversation: str = "con_1", *,
           extras: EmailExtras | None = None, subject: str | None = "Parcel", transfers: int = 0,
           channel: str = "email") -> RoutedConversation:
    message = InboundMessage(event_id=event, channel=channel, native_id=f"n-{event}", thread_key="t",
                             sender=Identity(kind="email", value="ada@example.com"),
                             received_at=NOW, text="Where is my parcel?", subject=subject, extras=extras)
    return RoutedConversation(event_id=event, conversation_id=conversation, customer_id="cus_ada",
                              queue=queue, priority=3, tier="standard", urgency="normal",
                              first_response_due=NOW + timedelta(hours=8), routed_at=NOW,
                              message=message, decisions=(), agent="ana", customer_name="Ada",
                              transfers=transfers)


def record(offset: int = 1) -> Record:
    return Record("sb.routed.v1", 0, offset, b"")


def receipt(status: str = "held", kind: str | None = "agent_reply", reply: str = "rep_1") -> DeliveryReceipt:
    return DeliveryReceipt(reply_id=reply, conversation_id="con_1", channel="email",
                           status=status, at=NOW, kind=kind, reason="held by the reply guard")  # type: ignore[arg-type]


def card(queue: str = "general", destinations: dict[str, str] | None = None) -> ConversationCard:
    return replace(card_for(routed(queue=queue), None, NOW), destinations=destinations or {})


# --- ids and claims ----------------------------------------------------------------------

def test_delivery_ids_are_stable_and_distinct_per_item_and_destination() -> None:
    a = delivery_id("routed:ev_1", "hook")
    assert a == delivery_id("routed:ev_1", "hook") and a.startswith("dlv_")
    assert len({a, delivery_id("routed:ev_1", "mailbox"), delivery_id("routed:ev_2", "hook")}) == 3


def test_item_sources_do_not_collide_across_topics() -> None:
    sla = SlaEvent(event_id="ev_1", kind="warn", conversation_id="con_1", customer_id="cus_ada",
                   target="first_response", due_at=NOW, at=NOW, reasons=())
    sources = {routed_item(record(), routed("ev_1")).source, sla_item(record(), sla).source,
               receipt_item(record(), receipt(reply="ev_1")).source}
    assert len(sources) == 3


def test_a_bounce_after_sent_is_a_new_item() -> None:
    assert receipt_item(record(), receipt("sent")).source != receipt_item(record(), receipt("failed")).source


OWNER = "sb.routed.v1/0/7"


@pytest.mark.parametrize(("previous", "verdict"), [
    (None, HandoffAction.DELIVER),
    (b"delivering:sb.routed.v1/0/7", HandoffAction.REDELIVER),
    (delivery_result(True, "sb.routed.v1/0/3", "hook").encode(), HandoffAction.DONE),
    (delivery_result(False, "sb.routed.v1/0/3", "hook: HTTP 500").encode(), HandoffAction.DONE),
    (b"delivered:hook", HandoffAction.DONE),  # written before results named their record
    (delivery_result(True, OWNER, "mailbox").encode(), HandoffAction.REPEAT),
    (delivery_result(False, OWNER, "hook: HTTP 500").encode(), HandoffAction.REPEAT),
])
def test_claim_verdicts(previous: bytes | None, verdict: HandoffAction) -> None:
    assert delivery_verdict(previous, OWNER)[0] is verdict


def test_a_result_says_where_it_went_or_why_not() -> None:
    assert recorded(delivery_result(True, OWNER, "mailbox").encode()) == (True, "mailbox")
    assert recorded(delivery_result(False, OWNER, "hook: 500 | down").encode()) == (False, "hook: 500 | down")


def test_a_crashed_claim_says_it_is_delivered_again_with_the_same_id() -> None:
    assert "same delivery id" in delivery_verdict(b"delivering:x/0/1", OWNER)[1]


# --- destinations ------------------------------------------------------------------------

def test_a_new_conversation_goes_to_its_queues_destinations() -> None:
    names, why = route_destinations(routed(queue="billing"), None, [], POLICY)
    assert names == ("billing-hook", "slack") and why.startswith("new conversation")


def test_a_follow_up_stays_where_the_conversation_is_even_if_the_queue_changed_its_destinations() -> None:
    previous = card(destinations={"mailbox": ""})
    names, why = route_destinations(routed("ev_2"), previous, ["mailbox"], POLICY)
    assert names == ("mailbox",) and why.startswith("follow-up")


def test_a_transfer_goes_to_the_new_queues_destinations() -> None:
    names, why = route_destinations(routed("ev_2", queue="billing", transfers=1), card(), ["hook"], POLICY)
    assert names == ("billing-hook", "slack") and "transferred from general" in why


def test_a_follow_up_without_destinations_or_with_removed_ones_uses_the_queue() -> None:
    assert route_destinations(routed("ev_2"), card(), [], POLICY)[0] == ("hook",)
    assert route_destinations(routed("ev_2"), card(), ["gone"], POLICY)[0] == ("hook",)


def test_an_unknown_queue_falls_back_to_the_default_queue() -> None:
    names, why = route_destinations(routed(queue="vanished"), None, [], POLICY)
    assert names == ("hook",) and "not in the policy" in why


def test_notices_go_where_the_conversation_is() -> None:
    assert notice_destinations(card(), ["slack"], POLICY)[0] == ("slack",)
    assert notice_destinations(card(queue="billing"), [], POLICY)[0] == ("billing-hook", "slack")


# --- the card ----------------------------------------------------------------------------

def test_card_of_a_new_email_conversation() -> None:
    extras = EmailExtras(message_id="m2@example.com", references=("m0@x", "m1@x", "m0@x"))
    c = card_for(routed(extras=extras), None, NOW)
    assert (c.status, c.messages, c.opened_at, c.updated_at) == ("open", 1, NOW, NOW)
    assert c.recipient == Identity(kind="email", value="ada@example.com")
    assert c.in_reply_to == "m2@example.com"
    assert c.references == ("m0@x", "m1@x", "m2@example.com")
    assert (c.queue, c.tier, c.urgency, c.priority, c.agent, c.customer_name) == (
        "general", "standard", "normal", 3, "ana", "Ada")
    assert c.first_response_due == NOW + timedelta(hours=8) and c.destinations == {}


def test_a_follow_up_keeps_what_the_conversation_had() -> None:
    first = replace(card_for(routed(), None, NOW), status="waiting_on_customer")
    later = NOW + timedelta(hours=2)
    follow = replace(routed("ev_2", subject=None, channel="api"), customer_name=None)
    c = card_for(follow, first, later)
    assert (c.status, c.messages, c.opened_at, c.updated_at) == ("waiting_on_customer", 2, NOW, later)
    assert (c.subject, c.customer_name, c.channel) == ("Parcel", "Ada", "api")
    assert (c.in_reply_to, c.references) == ("n-ev_2", ())


def test_an_answer_to_a_continuation_mail_leaves_the_conversation_on_its_channel() -> None:
    chat = replace(card_for(routed(channel="chat"), None, NOW), recipient=Identity(kind="chat", value="s_1"),
                   in_reply_to="s_1:m1", references=())
    answer = routed("ev_2", channel="email", extras=EmailExtras(message_id="m9@example.org"))
    tagged = replace(answer, message=replace(answer.message, tags=("continuation",)))
    c = card_for(tagged, chat, NOW)
    assert (c.channel, c.recipient, c.in_reply_to, c.references, c.messages) == (
        "chat", Identity(kind="chat", value="s_1"), "s_1:m1", (), 2)
    # the same mail without the verified marker is the email conversation's latest message
    assert card_for(answer, chat, NOW).channel == "email"
    # and a first message cannot keep what was never there
    assert card_for(tagged, None, NOW).channel == "email"


# --- notices -----------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "kind", "wanted"), [
    ("sent", "agent_reply", True), ("held", "agent_reply", True), ("failed", None, True),
    ("sent", "acknowledgement", False), ("failed", "acknowledgement", True),
    ("uncertain", "status_update", True), ("sent", "follow_up", False),
])
def test_which_receipts_agents_hear_of(status: str, kind: str | None, wanted: bool) -> None:
    assert receipt_notice(receipt(status, kind))[0] is wanted


def test_a_flagged_machine_message_is_told() -> None:
    flag = GuardFlag(rule="r", action="warn", matched=("x",), reason="why")
    sent = replace(receipt("sent", "acknowledgement"), flags=(flag,))
    assert receipt_notice(sent)[0]
    assert receipt_item(record(), sent).text == (
        "Acknowledgement rep_1 was sent: held by the reply guard [warn: r]")


def test_a_deferred_reply_says_until_when_and_a_notice_is_always_told() -> None:
    later = replace(receipt("deferred", "agent_reply"), reason="X's dm_send limit is reached",
                    retry_at=NOW + timedelta(hours=20))
    assert receipt_item(record(), later).text == (
        "Reply rep_1 was deferred: X's dm_send limit is reached; it goes out at 2026-03-04 05:00 UTC")
    told = replace(receipt("sent", "acknowledgement"), reason=None, notice="X's daily budget is spent")
    assert receipt_notice(told)[0]
    assert receipt_item(record(), told).text == (
        "Acknowledgement rep_1 was sent. Notice: X's daily budget is spent")


def test_sla_notices_are_one_line() -> None:
    breach = SlaEvent(event_id="s1", kind="breach", conversation_id="con_1", customer_id="cus_ada",
                      target="first_response", due_at=NOW, at=NOW, reasons=("tier=premium", "2h\ntarget"))
    assert sla_text(breach) == ("SLA breached: first response was due 2026-03-03 09:00 UTC - "
                                "tier=premium; 2h target")
    step = replace(breach, kind="escalate", step=2, action="page",
                               action_target="on-call", reasons=())
    assert sla_text(step) == "Escalation step 2: page on-call (first response due 2026-03-03 09:00 UTC)"


# --- fallbacks and backoff ---------------------------------------------------------------

def test_fallback_chains_stop_at_loops_and_unknown_names() -> None:
    ds = {d.name: d for d in (Destination("a", "webhook", fallback="b"),
                              Destination("b", "slack", fallback="c"),
                              Destination("c", "mailbox", fallback="a"))}
    assert fallback_chain("a", ds) == ("a", "b", "c")
    assert fallback_chain("x", ds) == ("x",)
    broken = {**ds, "c": Destination("c", "mailbox", fallback="gone")}
    assert fallback_chain("b", broken) == ("b", "c", "gone")


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    rng = random.Random(7)
    for attempt in range(1, 12):
        for _ in range(50):
            assert 0 <= backoff(attempt, 0.2, 5.0, rng) <= min(5.0, 0.2 * 2 ** (attempt - 1))
    waits = [backoff(6, 0.2, 5.0, rng) for _ in range(200)]
    assert max(waits) > 4 and min(waits) < 1  # spread over the whole range, not bunched


# --- planning a batch --------------------------------------------------------------------

def plan(items: Sequence[Item], saved: Sequence[tuple[str, ...] | None] | None = None,
         cards: dict[str, ConversationCard | None] | None = None, policy: Policy = POLICY) -> list[Any]:
    return plan_batch(items, saved or [None] * len(items), cards or {"con_1": None}, policy, NOW)


def test_a_conversations_second_message_in_one_batch_is_planned_from_the_first() -> None:
    first, second = plan([routed_item(record(1), routed("ev_1")), routed_item(record(2), routed("ev_2"))])
    assert first.intended == second.intended == ("hook",)
    assert second.reason.startswith("follow-up")
    assert (first.card.messages, second.card.messages) == (1, 2)
    assert first.write_card and second.write_card and first.new and second.new


def test_an_item_repeated_in_one_batch_is_skipped() -> None:
    item = routed_item(record(1), routed())
    plans = plan([item, item])
    assert plans[1].skip == "repeated in one batch" and not plans[1].new


def test_a_replay_goes_where_the_first_attempt_went_and_leaves_the_card_alone() -> None:
    moved = card(queue="billing", destinations={"slack": "ts1"})
    [p] = plan([routed_item(record(), routed())], [("hook",)], {"con_1": moved})
    assert p.intended == ("hook",) and not p.new and not p.write_card and p.skip is None
    assert p.card is moved


def test_a_transfer_forgets_the_old_threads() -> None:
    [p] = plan([routed_item(record(), routed(queue="billing", transfers=1))],
               cards={"con_1": card(destinations={"hook": "", "mailbox": "m1"})})
    assert p.transfer and p.forget == ("hook", "mailbox") and p.intended == ("billing-hook", "slack")


def handoff(queue: str = "billing") -> RoutedConversation:
    """A transfer's handoff: routed again with no message, and why."""
    note = TransferNote(from_queue="general", at=NOW, by="maria", note="a refund, not a parcel")
    return replace(routed("ho_1", queue=queue, transfers=1), message=None, transfer=note, agent=None,
                   priority=2, first_response_due=None)


def test_a_transfers_handoff_moves_the_card_to_the_new_team_and_keeps_the_customers_thread() -> None:
    before = replace(card(destinations={"hook": "h1"}), messages=2, status="pending")
    item = routed_item(record(), handoff())
    assert item.event == "conversation.transferred"
    [p] = plan([item], cards={"con_1": before})
    assert p.transfer and p.forget == ("hook",) and p.intended == ("billing-hook", "slack")
    assert p.reason.startswith("transferred from general")
    moved = p.card
    assert (moved.queue, moved.priority, moved.transfers, moved.agent) == ("billing", 2, 1, None)
    # no new message: the customer, their thread, the count and the status stay as they were
    kept = ("channel", "recipient", "in_reply_to", "references", "subject", "messages", "status",
            "opened_at", "customer_name", "first_response_due")
    assert {k: getattr(moved, k) for k in kept} == {k: getattr(before, k) for k in kept}
    assert moved.destinations == {} and moved.updated_at == NOW


def test_a_handoff_without_a_card_is_skipped_with_its_reason() -> None:
    [p] = plan([routed_item(record(), handoff())])
    assert p.skip is not None and "never dispatched" in p.skip and p.card is None
    [replayed] = plan([routed_item(record(), handoff())], [("billing-hook",)])
    assert replayed.skip == "no card for the conversation"


def test_notices_need_a_card_and_unremarkable_receipts_are_not_told() -> None:
    held = receipt_item(record(1), receipt())
    sent_ack = receipt_item(record(2), receipt("sent", "acknowledgement", "r2"))
    unknown = plan([held, sent_ack])
    assert unknown[0].skip is not None and "no card" in unknown[0].skip
    known = plan([held, sent_ack], cards={"con_1": card(destinations={"slack": "ts1"})})
    assert known[0].intended == ("slack",) and known[0].skip is None
    assert known[1].skip is not None and "nothing for agents to do" in known[1].skip and known[1].new


def test_a_routed_message_then_its_receipt_in_one_batch() -> None:
    _, notice = plan([routed_item(record(1), routed()), receipt_item(record(2), receipt())])
    assert notice.intended == ("hook",) and notice.card.messages == 1


# --- the courier: retries, deadlines, breakers and fallbacks, on a hand-moved clock -------

class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Scripted(AgentTool[None]):
    """An agents' tool that answers from a script: an exception to raise, or a thread reference."""

    def __init__(self, *answers: Exception | str) -> None:
        super().__init__(None)
        self.answers = list(answers)
        self.calls: list[Handoff] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def deliver(self, handoff: Handoff) -> str:
        self.calls.append(handoff)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def courier(clock: Clock, threshold: int = 5) -> Courier:
    return Courier(Breakers(threshold, 30.0, clock), Retry(base=0.1, cap=1.0), clock=clock,
                   sleep=clock.sleep, rng=random.Random(1))


def make(name: str) -> Handoff:
    return Handoff(delivery_id=delivery_id("routed:ev_1", name), destination=name,
                   event="conversation.routed", card=card())


DESTINATIONS = {d.name: d for d in (Destination("hook", "webhook", fallback="mailbox",
                                                deadline=timedelta(seconds=5)),
                                    Destination("mailbox", "mailbox"))}


async def test_transient_errors_are_retried_until_the_tool_takes_it() -> None:
    clock = Clock()
    hook = Scripted(TransientError("HTTP 500"), TransientError("HTTP 502"), "")
    outcome = await courier(clock).deliver(make, "hook", DESTINATIONS, {"hook": hook}, {})
    assert (outcome.delivered, outcome.actual, outcome.attempts, outcome.reason) == (True, "hook", 3, None)
    assert len(clock.slept) == 2 and all(0 <= s <= 0.2 for s in clock.slept)


async def test_retry_after_is_honoured_and_one_past_the_deadline_gives_up_to_the_fallback() -> None:
    clock = Clock()
    hook = Scripted(TransientError("HTTP 429", retry_after=2.0), TransientError("HTTP 429", retry_after=60))
    mailbox = Scripted("<m1@x>")
    outcome = await courier(clock).deliver(make, "hook", DESTINATIONS, {"hook": hook, "mailbox": mailbox}, {})
    assert clock.slept == [2.0]
    assert (outcome.delivered, outcome.actual, outcome.thread) == (True, "mailbox", "<m1@x>")
    assert outcome.attempts == 3
    assert outcome.reason is not None and "gave up after 2 attempts, deadline 5s" in outcome.reason
    assert outcome.reason.endswith("delivered to its fallback mailbox")
    assert mailbox.calls[0].delivery_id == delivery_id("routed:ev_1", "mailbox")


async def test_a_permanent_error_goes_to_the_fallback_at_once() -> None:
    clock = Clock()
    hook = Scripted(PermanentError("HTTP 404 Not Found"))
    outcome = await courier(clock).deliver(make, "hook", DESTINATIONS,
                                           {"hook": hook, "mailbox": Scripted("")}, {})
    assert outcome.actual == "mailbox" and outcome.attempts == 2 and clock.slept == []


async def test_an_open_breaker_fails_fast_for_the_next_item() -> None:
    clock = Clock()
    c = courier(clock, threshold=2)
    hook = Scripted(TransientError("HTTP 503"))
    tools = {"hook": hook, "mailbox": Scripted("")}
    first = await c.deliver(make, "hook", DESTINATIONS, tools, {})
    assert first.actual == "mailbox" and len(hook.calls) == 2
    assert first.reason is not None and "circuit open after 2 consecutive failures" in first.reason
    second = await c.deliver(make, "hook", DESTINATIONS, tools, {})
    assert second.actual == "mailbox" and len(hook.calls) == 2  # not even tried


async def test_a_missing_tool_and_a_dead_end_fail_with_every_reason() -> None:
    clock = Clock()
    outcome = await courier(clock).deliver(make, "hook", DESTINATIONS,
                                           {"mailbox": Scripted(PermanentError("550 no such mailbox"))}, {})
    assert not outcome.delivered and outcome.actual == "hook"
    assert outcome.reason == ("hook: no agents' tool is configured for destination 'hook'; "
                              "mailbox: 550 no such mailbox; no fallback left")


async def test_a_tools_bug_fails_its_destination_not_the_batch() -> None:
    clock = Clock()
    outcome = await courier(clock).deliver(make, "mailbox", DESTINATIONS,
                                           {"mailbox": Scripted(KeyError("ts"))}, {})
    assert not outcome.delivered and "KeyError" in (outcome.reason or "")


async def test_a_fallback_that_already_has_the_item_is_not_sent_it_again() -> None:
    clock = Clock()
    mailbox = Scripted("")
    outcome = await courier(clock).deliver(make, "hook", DESTINATIONS,
                                           {"hook": Scripted(PermanentError("HTTP 410")), "mailbox": mailbox},
                                           {"mailbox": "m1"})
    assert outcome.delivered and outcome.actual == "mailbox" and outcome.thread == "m1"
    assert mailbox.calls == []
