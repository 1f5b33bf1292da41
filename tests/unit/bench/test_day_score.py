"""The scorecard's arithmetic on hand-made records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bench.day.report import aggregate, aggregate_table, table
from bench.day.score import Recorded, promised_time, score
from schemas.conversation import ConversationEvent, LifecycleKind
from schemas.handoff import HandoffReceipt
from schemas.identity import Identity
from schemas.inbound import InboundMessage
from schemas.outbound import DeliveryReceipt, GuardFlag, OutboundMessage
from schemas.routed import Decision, HistoryEntry, RoutedConversation
from schemas.sla import SlaEvent

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 11, 30, 8, tzinfo=UTC)


def routed(
    n: int,
    conversation: str,
    customer: str,
    tier: str,
    *,
    at: timedelta,
    due: timedelta,
    history: bool = False,
    transfers: int = 0,
    queue: str = "general",
    decisions: tuple[Decision, ...] = (),
) -> RoutedConversation:
    sender = Identity(kind="email", value=f"{customer}@example.org")
    message = InboundMessage(
        event_id=f"ev_{n}",
        channel="email",
        native_id=str(n),
        thread_key=str(sender),
        sender=sender,
        received_at=T0 + at,
        text=f"message {n}",
    )
    lines = (
        (
            HistoryEntry(
                at=T0, channel="email", conversation_id=conversation, direction="in", summary="earlier"
            ),
        )
        if history
        else ()
    )
    return RoutedConversation(
        event_id=f"ev_{n}",
        conversation_id=conversation,
        customer_id=customer,
        queue=queue,
        priority=5,
        tier=tier,
        urgency="normal",
        first_response_due=T0 + due,
        routed_at=T0 + at,
        message=message,
        decisions=decisions,
        history=lines,
        transfers=transfers,
    )


def reply(conversation: str, at: timedelta, kind: LifecycleKind = "agent_reply") -> ConversationEvent:
    return ConversationEvent(
        event_id=f"c_{conversation}_{kind}_{at}",
        conversation_id=conversation,
        customer_id="x",
        kind=kind,
        at=T0 + at,
    )


def ack(conversation: str, text: str) -> OutboundMessage:
    return OutboundMessage(
        reply_id=f"ack_{conversation}",
        conversation_id=conversation,
        channel="email",
        recipient=Identity(kind="email", value="a@example.org"),
        kind="acknowledgement",
        text=text,
        created_at=T0,
    )


def test_sla_per_tier_counts_met_missed_and_still_open() -> None:
    rec = Recorded(
        routed=[
            routed(1, "con_a", "alice", "premium", at=timedelta(0), due=timedelta(hours=2)),
            routed(2, "con_b", "bob", "premium", at=timedelta(0), due=timedelta(hours=2)),
            routed(3, "con_c", "carl", "standard", at=timedelta(0), due=timedelta(hours=8)),
            routed(4, "con_d", "dora", "standard", at=timedelta(0), due=timedelta(hours=1)),
        ],
        lifecycle=[
            reply("con_a", timedelta(hours=1)),
            reply("con_b", timedelta(hours=3)),
            reply("con_a", timedelta(minutes=30), kind="note"),
        ],
    )
    card = score(rec, until=T0 + timedelta(hours=4))
    sla = card.numbers["first_response_sla"]
    assert sla["premium"] == {"met": 1, "missed": 1, "attainment": 0.5}
    # con_c is due after the end of the day: neither met nor missed; con_d is past due, unanswered
    assert sla["standard"] == {"pending": 1, "missed": 1, "attainment": 0.0}
    assert "premium first-response SLA 50.0% < 99%" in card.failures
    assert "first response missed: 1 in queue general, tier premium, urgency normal" in card.failures


def test_a_promise_is_the_time_the_acknowledgement_states() -> None:
    text = "Hi, we will answer by Mon 30 Nov, 10:00 CET. Your reference is con_a."
    assert promised_time(text, T0, [BERLIN]) == datetime(2026, 11, 30, 9, tzinfo=UTC)
    assert promised_time("no time here", T0, [BERLIN]) is None
    rec = Recorded(
        routed=[
            routed(1, "con_a", "alice", "premium", at=timedelta(0), due=timedelta(hours=2)),
            routed(2, "con_b", "bob", "premium", at=timedelta(0), due=timedelta(hours=2)),
        ],
        outbound=[ack("con_a", text), ack("con_b", text)],
        lifecycle=[reply("con_a", timedelta(minutes=60, seconds=59)), reply("con_b", timedelta(hours=2))],
    )
    promises = score(rec, until=T0 + timedelta(hours=4), zones=(BERLIN,)).numbers["promises"]
    # the stated minute holds through its last second
    assert promises == {"kept": 1, "broken": 1, "open": 0, "share_kept": 0.5}


def test_status_updates_must_come_before_the_breach() -> None:
    update = OutboundMessage(
        reply_id="st_a",
        conversation_id="con_a",
        channel="email",
        recipient=Identity(kind="email", value="a@example.org"),
        kind="status_update",
        text="we haven't forgotten you",
        created_at=T0,
    )
    breach = [
        SlaEvent(
            event_id=f"b_{c}",
            kind="breach",
            conversation_id=c,
            customer_id="x",
            target="first_response",
            due_at=T0 + timedelta(hours=2),
            at=T0 + timedelta(hours=2),
            reasons=(),
        )
        for c in ("con_a", "con_b")
    ]
    rec = Recorded(
        routed=[
            routed(1, "con_a", "alice", "premium", at=timedelta(0), due=timedelta(hours=2)),
            routed(2, "con_b", "bob", "premium", at=timedelta(0), due=timedelta(hours=2)),
        ],
        outbound=[update],
        sla=breach,
        receipts=[
            DeliveryReceipt(
                reply_id="st_a",
                conversation_id="con_a",
                channel="email",
                status="sent",
                at=T0 + timedelta(hours=1),
            )
        ],
    )
    card = score(rec, until=T0 + timedelta(hours=4))
    assert card.numbers["breaches"] == 2 and card.numbers["status_update_before_breach"] == 1
    assert "breach without a status update first: 1 on channel email" in card.failures


def test_duplicates_transfers_history_guard_and_fallbacks() -> None:
    reopened = (Decision(stage="lifecycle", outcome="reopened", reasons=("answer to the follow-up",)),)
    rec = Recorded(
        routed=[
            routed(1, "con_a", "alice", "standard", at=timedelta(0), due=timedelta(hours=8)),
            # alice again while con_a is open, in a second conversation: a duplicate
            routed(
                2, "con_b", "alice", "standard", at=timedelta(hours=1), due=timedelta(hours=9), history=True
            ),
            # bob's second message, routed without the first one's history
            routed(3, "con_c", "bob", "standard", at=timedelta(0), due=timedelta(hours=8)),
            routed(
                4,
                "con_c",
                "bob",
                "standard",
                at=timedelta(hours=2),
                due=timedelta(hours=8),
                transfers=2,
                decisions=reopened,
            ),
        ],
        receipts=[
            DeliveryReceipt(
                reply_id="r1",
                conversation_id="con_a",
                channel="email",
                status="held",
                at=T0,
                flags=(
                    GuardFlag(rule="telling-feelings", action="hold", matched=("calm down",), reason="no"),
                ),
            ),
            DeliveryReceipt(
                reply_id="r2",
                conversation_id="con_a",
                channel="email",
                status="sent",
                at=T0,
                flags=(GuardFlag(rule="blame", action="warn", matched=("your fault",), reason="no"),),
            ),
        ],
        handoffs=[
            HandoffReceipt(
                delivery_id="d1",
                conversation_id="con_c",
                event_id="ev_3",
                destination="support-mailbox",
                intended="helpdesk-webhook",
                status="delivered",
                attempts=3,
                at=T0 + timedelta(minutes=2),
            ),
            HandoffReceipt(
                delivery_id="d0",
                conversation_id="con_c",
                event_id="ev_3",
                destination="support-mailbox",
                intended="slack-social",
                status="delivered",
                attempts=1,
                at=T0,
                reason="slack-social: no agents' tool is configured for destination 'slack-social'",
            ),
            HandoffReceipt(
                delivery_id="d2",
                conversation_id="con_a",
                event_id="ev_1",
                destination="helpdesk-webhook",
                intended="helpdesk-webhook",
                status="delivered",
                attempts=1,
                at=T0,
            ),
        ],
    )
    n = score(rec, until=T0 + timedelta(hours=4)).numbers
    assert n["duplicates"] == {"events_in_two_conversations": 0, "parallel_conversations": 1}
    # a new request hours after the last word of an open one is a new conversation, not a duplicate
    later = routed(5, "con_e", "alice", "standard", at=timedelta(hours=3, minutes=1), due=timedelta(hours=9))
    rec.routed = [r for r in rec.routed if r.conversation_id != "con_b"] + [later]
    assert score(rec, until=T0 + timedelta(hours=4)).numbers["duplicates"]["parallel_conversations"] == 0
    assert n["transfers"] == {"conversations_transferred": 1, "max": 2, "share_at_most_one": 0.6667}
    assert n["history"] == {"routed_after_earlier_contact": 2, "carrying_history": 1, "share": 0.5}
    assert n["guard"] == {"held": 1, "sent_with_warning": 1, "rules": {"telling-feelings": 1, "blame": 1}}
    assert n["after_resolution"]["reopened"] == 1
    assert n["tool_down"]["handed_to_fallback"] == 1 and n["tool_down"]["seconds_to_hand_off_max"] == 120.0
    assert "| conversations with <= 1 transfer | 66.7% (1 transferred, max 2) |" in table(["day"], [n])


def test_a_call_back_is_a_first_response_and_every_channel_has_its_row() -> None:
    rec = Recorded(
        routed=[
            routed(1, "con_a", "alice", "premium", at=timedelta(0), due=timedelta(hours=2)),
            routed(2, "con_b", "bob", "standard", at=timedelta(0), due=timedelta(hours=1)),
        ],
        lifecycle=[reply("con_a", timedelta(hours=1), kind="called_back")],
    )
    numbers = score(rec, until=T0 + timedelta(hours=4)).numbers
    assert numbers["first_response_sla"]["premium"] == {"met": 1, "attainment": 1.0}
    assert numbers["first_response_by_channel"] == {
        "email": {"conversations": 2, "called_back": 1, "met": 1, "unanswered": 1, "attainment": 1.0}
    }
    assert "| first response on email | 100.0% in SLA (2 conversations, 1 unanswered, 1 by call) |" in table(
        ["day"], [numbers]
    )


def test_several_seeds_give_the_mean_and_the_worst_of_every_share() -> None:
    days = [
        score(
            Recorded(
                routed=[routed(1, "con_a", "alice", "premium", at=timedelta(0), due=timedelta(hours=2))],
                lifecycle=[reply("con_a", timedelta(hours=hours))],
            ),
            until=T0 + timedelta(hours=4),
        ).numbers
        for hours in (1, 3)
    ]
    found = aggregate(days)
    assert found["first-response SLA premium"] == {"mean": 0.5, "min": 0.0, "days": 2}
    # a share with nothing to judge (no breaches) is left out, not counted as 0
    assert found["status update before breach"] == {"mean": None, "min": None, "days": 0}
    assert "| first-response SLA premium (mean / min) | 50.0% / 0.0% (2 days) |" in aggregate_table(
        ["2 seeds"], [found]
    )
