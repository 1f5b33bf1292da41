from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from processors.brain.sticky import Conversation, decide
from processors.policy.load import load_policy
from processors.policy.model import QueueChoice, choose_queue
from processors.stores.history import ConversationSummary
from router.vocabulary import VOCABULARY
from tests.paths import ROOT

POLICY = load_policy(ROOT / "deploy" / "policy.example.yaml", VOCABULARY)
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def fresh(channel: str = "x", text: str = "still broken!") -> QueueChoice:
    return choose_queue(POLICY, channel=channel, tier="standard", urgency="normal", text=text)


def record(cid: str = "con_1", *, queue: str = "general", agent: str | None = "ann",
           status: str = "open", ago: timedelta = timedelta(minutes=10), transfers: int = 0) -> Conversation:
    return ConversationSummary(conversation_id=cid, queue=queue, agent=agent, status=status,
                               last_at=NOW - ago, transfers=transfers)


def test_same_complaint_on_another_channel_goes_back_to_the_same_agent() -> None:
    d = decide(received_at=NOW, thread_conversation=None, conversations=[record()], fresh=fresh(),
               policy=POLICY)
    assert (d.outcome, d.conversation_id, d.queue, d.agent, d.transfers) == (
        "continue", "con_1", "general", "ann", 0)
    assert d.reasons == (
        "continues con_1: same customer 10m ago, within 2h",
        "queue=general: sticky, back to the team that knows the case, agent ann",
    )


@pytest.mark.parametrize(("records", "thread", "reason"), [
    ([], None, "new conversation: no open conversation of this customer within 2h"),
    ([record(ago=timedelta(hours=3))], None, "new conversation: no open conversation"),
    ([record(status="closed")], None, "new conversation: no open conversation"),
    ([record(status="closed")], "con_1", "new conversation: no open conversation"),
])
def test_new_conversation(records: list[Conversation], thread: str | None, reason: str) -> None:
    d = decide(received_at=NOW, thread_conversation=thread, conversations=records, fresh=fresh(),
               policy=POLICY)
    assert (d.outcome, d.conversation_id, d.queue, d.agent) == ("new", None, "social", None)
    assert d.reasons[0].startswith(reason)
    assert d.reasons[1] == "queue=social: channel x"


def test_a_reply_in_its_own_thread_continues_at_any_age() -> None:
    d = decide(received_at=NOW, thread_conversation="con_1",
               conversations=[record(ago=timedelta(days=9), status="waiting_on_customer")],
               fresh=fresh("email", "about my invoice"), policy=POLICY)
    assert (d.outcome, d.queue, d.agent) == ("continue", "general", "ann")
    assert d.reasons[0] == "continues con_1: a reply in its own thread"


def test_resolved_conversation_is_reopened_within_the_window() -> None:
    d = decide(received_at=NOW, thread_conversation=None, conversations=[record(status="resolved")],
               fresh=fresh(), policy=POLICY)
    assert d.outcome == "continue"
    assert d.reasons[0].endswith("(reopened)")


def test_the_most_recent_conversation_wins() -> None:
    records = [record("con_old", ago=timedelta(minutes=50), agent="bob"),
               record("con_new", ago=timedelta(minutes=5), queue="billing", agent="cy")]
    d = decide(received_at=NOW, thread_conversation=None, conversations=records, fresh=fresh(),
               policy=POLICY)
    assert (d.conversation_id, d.queue, d.agent) == ("con_new", "billing", "cy")


def test_a_clearly_different_subject_starts_a_new_conversation() -> None:
    d = decide(received_at=NOW, thread_conversation=None, conversations=[record()],
               fresh=fresh("email", "wrong invoice amount"), policy=POLICY)
    assert (d.outcome, d.queue) == ("new", "billing")
    assert d.reasons[0] == "new conversation: keyword 'invoice' is for queue billing, not general of con_1"


def test_same_subject_keyword_continues() -> None:
    d = decide(received_at=NOW, thread_conversation=None, conversations=[record(queue="billing")],
               fresh=fresh("x", "refund still missing"), policy=POLICY)
    assert (d.outcome, d.queue) == ("continue", "billing")


@pytest.mark.parametrize(("channel", "outcome", "queue", "transfers"), [
    ("email", "transfer", "general", 1),   # not sticky, and routed afresh elsewhere
    ("x", "transfer", "social", 1),
])
def test_a_queue_that_is_not_sticky_routes_afresh(channel: str, outcome: str, queue: str,
                                                  transfers: int) -> None:
    d = decide(received_at=NOW, thread_conversation=None, conversations=[record(queue="escalations")],
               fresh=fresh(channel, "hello"), policy=POLICY)
    assert (d.outcome, d.queue, d.agent, d.transfers) == (outcome, queue, None, transfers)
    assert d.reasons[1] == "queue escalations is not sticky: routed afresh"


def test_not_sticky_but_routed_to_the_same_queue_is_no_transfer() -> None:
    choice = QueueChoice("escalations", None, ("queue=escalations: overflow",))
    d = decide(received_at=NOW, thread_conversation=None,
               conversations=[record(queue="escalations", transfers=3)], fresh=choice, policy=POLICY)
    assert (d.outcome, d.queue, d.agent, d.transfers) == ("continue", "escalations", None, 3)


@pytest.mark.parametrize(("queue", "transfers", "outcome", "target"), [
    ("social", 1, "continue", "social"),        # at the maximum: still fine
    ("social", 2, "escalate", "escalations"),   # over social's max of 1
    ("escalations", 2, "transfer", "general"),  # 3 after this transfer: max is 3
    ("escalations", 3, "escalate", "escalations"),
])
def test_too_many_transfers_escalate_instead(queue: str, transfers: int, outcome: str, target: str) -> None:
    d = decide(received_at=NOW, thread_conversation=None,
               conversations=[record(queue=queue, transfers=transfers)], fresh=fresh("email", "hi"),
               policy=POLICY)
    assert (d.outcome, d.queue) == (outcome, target)
    if outcome == "escalate":
        assert d.escalation == "standard" and d.agent is None
        assert d.reasons[0].startswith(f"escalate con_1: {d.transfers} transfers, more than the")
        assert d.reasons[0].endswith("escalation chain standard, to queue escalations")


def test_a_queue_removed_from_the_policy_is_routed_afresh() -> None:
    d = decide(received_at=NOW, thread_conversation=None, conversations=[record(queue="retired")],
               fresh=fresh(), policy=POLICY)
    assert (d.outcome, d.queue, d.transfers) == ("transfer", "social", 1)
    assert "queue retired no longer exists" in d.reasons


def test_a_reply_in_its_own_thread_wins_over_a_later_conversation_listed_first() -> None:
    records = [record("con_new", ago=timedelta(minutes=1), agent="cy"),
               record("con_old", ago=timedelta(days=3), agent="bob", status="waiting_on_customer")]
    d = decide(received_at=NOW, thread_conversation="con_old", conversations=records, fresh=fresh(),
               policy=POLICY)
    assert (d.conversation_id, d.agent) == ("con_old", "bob")


def test_of_equally_recent_conversations_the_first_listed_wins_and_closed_ones_never() -> None:
    records = [record("con_closed", ago=timedelta(minutes=1), status="closed", agent="dee"),
               record("con_stale", ago=timedelta(hours=5), agent="eve"),
               record("con_a", ago=timedelta(minutes=7), agent="ann"),
               record("con_b", ago=timedelta(minutes=7), agent="bob")]
    d = decide(received_at=NOW, thread_conversation="con_closed", conversations=records, fresh=fresh(),
               policy=POLICY)
    assert (d.conversation_id, d.agent) == ("con_a", "ann")
    assert d.reasons[0] == "continues con_a: same customer 7m ago, within 2h"
