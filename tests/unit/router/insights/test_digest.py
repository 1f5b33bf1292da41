"""The digest of a window: volumes, mood, repeats, breach causes, held replies, follow-ups."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from router.insights.digest import Events, intents, summarise
from router.insights.render import CSV_HEADER, as_csv, as_json, as_text
from schemas import DeliveryReceipt
from schemas.insights import InsightDigest
from schemas.outbound import GuardFlag
from schemas.routed import Decision
from tests.conversation_events import held, lifecycle, routed, sla

NOW = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)
SINCE = NOW - timedelta(hours=24)
OUTAGE = "urgency=critical: keyword 'outage' (rule outage)"
BILLING = "queue=billing: keyword 'refund'"
NEGATIVE = "urgency +1: sentiment -0.71 ≤ -0.5 (rule negative-sentiment)"


def day() -> Events:
    events = Events()
    at = NOW - timedelta(hours=5)
    for e in (
        routed("ev_1", at, reasons=(OUTAGE, NEGATIVE), sentiment=-0.8, customer="cus_ada"),
        routed("ev_2", at + timedelta(minutes=10), reasons=(OUTAGE,), sentiment=-0.4, customer="cus_ada",
               channel="api", conversation="con_ev_1"),
        routed("ev_3", at + timedelta(hours=1), reasons=(BILLING,), queue="billing", sentiment=0.5,
               customer="cus_bob", tier="premium"),
        routed("ev_4", at + timedelta(hours=2), customer="cus_cy", sentiment=None),
        # before the window: not counted, but it explains a breach inside it
        routed("ev_old", NOW - timedelta(days=2), queue="billing", customer="cus_dee"),
        sla("breach", "con_ev_old", NOW - timedelta(hours=1), customer="cus_dee"),
        sla("breach", "con_ev_3", NOW - timedelta(hours=2), customer="cus_bob"),
        sla("breach", "con_ev_3", NOW - timedelta(hours=2), customer="cus_bob"),  # a replay
        sla("warn", "con_ev_4", NOW - timedelta(hours=2), customer="cus_cy"),
        held("rep_1", "con_ev_1", NOW - timedelta(hours=3)),
        DeliveryReceipt(reply_id="rep_2", conversation_id="con_ev_3", channel="email", status="sent",
                        at=NOW - timedelta(hours=3), kind="agent_reply", flags=(GuardFlag(
                            rule="blame", action="warn", matched=("your fault",), reason="no blame"),)),
        lifecycle("follow_up_sent", "con_ev_4", NOW - timedelta(hours=1)),
        lifecycle("follow_up_sent", "con_ev_3", NOW - timedelta(hours=1)),
        # closed by the lifecycle watch for want of an answer; closed by the team is not that
        lifecycle("closed", "con_ev_9", NOW - timedelta(minutes=30), source="lifecycle"),
        lifecycle("closed", "con_ev_8", NOW - timedelta(minutes=30)),
        routed("ev_5", NOW - timedelta(minutes=20), customer="cus_cy", conversation="con_ev_4",
               lifecycle=Decision(stage="lifecycle", outcome="closed", reasons=(
                   "closed: the customer's answer to the follow-up of con_ev_4 confirms it",))),
        routed("ev_6", NOW - timedelta(minutes=10), customer="cus_bob", conversation="con_ev_3",
               queue="billing", lifecycle=Decision(stage="lifecycle", outcome="reopened", reasons=(
                   "reopened: the customer's answer to the follow-up of con_ev_3 does not confirm a fix",))),
    ):
        events.add(e)
    return events


def digest() -> InsightDigest:
    return summarise(day(), SINCE, NOW, now=NOW, records={"sb.routed.v1": 7}, skipped=1)


def test_intents_are_what_the_policy_recognised_in_the_words() -> None:
    assert intents(routed("a", NOW, reasons=(OUTAGE, NEGATIVE))) == ("outage",)
    assert intents(routed("b", NOW, reasons=(BILLING, OUTAGE))) == ("billing", "outage")
    assert intents(routed("c", NOW, reasons=(NEGATIVE,))) == ("other",)


def test_volumes_by_intent_queue_and_channel() -> None:
    d = digest()
    assert (d.messages, d.conversations) == (6, 3)
    assert [(c.key, c.messages) for c in d.by_intent] == [("other", 3), ("outage", 2), ("billing", 1)]
    assert [(c.key, c.messages) for c in d.by_queue] == [("general", 4), ("billing", 2)]
    assert [(c.key, c.messages) for c in d.by_channel] == [("email", 5), ("api", 1)]
    assert d.digest_id == f"{SINCE.isoformat()}/{NOW.isoformat()}"


def test_sentiment_trend_by_hour() -> None:
    d = digest()
    assert len(d.sentiment) == 24
    assert d.sentiment[0].start == SINCE
    seven = d.sentiment[19]  # 07:00-08:00 UTC: ev_1 and ev_2
    assert (seven.messages, seven.mean, seven.negative) == (2, -0.6, 2)
    nine = d.sentiment[21]  # ev_4 has no score: counted, not averaged
    assert (nine.messages, nine.mean) == (1, None)


def test_repeat_contacts() -> None:
    d = digest()
    assert (d.repeat_customers, d.repeat_messages) == (3, 6)
    top = d.top_repeat[0]
    assert (top.customer_id, top.messages, top.conversations) == ("cus_ada", 2, 1)
    assert top.channels == ("api", "email")


def test_breach_causes_name_queue_target_and_tier_once_each() -> None:
    d = digest()
    assert d.breaches == 2
    assert [(b.cause, b.breaches) for b in d.breach_causes] == [
        ("first response in billing (premium/normal)", 1), ("first response in billing (standard/normal)", 1)]


def test_guard_holds_and_warnings_by_rule() -> None:
    d = digest()
    assert d.held == 1
    assert [(g.rule, g.held, g.warned) for g in d.guard] == [("telling-feelings", 1, 0), ("blame", 0, 1)]


def test_follow_up_outcomes() -> None:
    f = digest().follow_ups
    assert (f.sent, f.confirmed, f.not_solved, f.closed_without_answer) == (2, 1, 1, 1)


def test_a_week_trends_by_day_and_nothing_outside_the_window_counts() -> None:
    d = summarise(day(), NOW - timedelta(days=7), NOW, now=NOW)
    assert len(d.sentiment) == 7
    assert d.messages == 7  # the old message now falls inside
    empty = summarise(day(), NOW + timedelta(days=1), NOW + timedelta(days=2), now=NOW)
    assert (empty.messages, empty.breaches, empty.held, empty.follow_ups.sent) == (0, 0, 0, 0)


def test_renderings_carry_the_same_numbers() -> None:
    d = digest()
    assert as_json(d)["by_queue"] == [{"key": "general", "messages": 4}, {"key": "billing", "messages": 2}]
    table = list(csv.reader(io.StringIO(as_csv(d))))
    assert tuple(table[0]) == CSV_HEADER
    assert ["queue", "billing", "messages", "2"] in table
    assert ["breach", "first response in billing (premium/normal)", "breaches", "1"] in table
    assert ["follow_up", "all", "confirmed", "1"] in table
    text = as_text(d)
    assert "6 messages in 3 conversations" in text
    assert "telling-feelings: 1 held, 0 sent with a warning" in text
    assert "1 records could not be read" in text
