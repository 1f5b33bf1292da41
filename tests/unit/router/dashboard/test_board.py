"""The dashboard's aggregation: topic events folded into the board, read at an injected moment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from connectors.twitter.settings import XSettings
from router.dashboard.board import Board
from router.dashboard.connectors import MetricReader
from router.dashboard.feed import apply
from router.dashboard.view import ConnectorFacts, snapshot
from router.http.dashboard import account_names
from schemas import EmailExtras
from schemas.codec import encode
from schemas.inbound import XExtras
from schemas.probe import ProbeEvent
from tests.conversation_events import ack_sent, dead, handoff, held, lifecycle, routed, sla

BERLIN = ZoneInfo("Europe/Berlin")
# 10:00 in Berlin on a Tuesday
NOW = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


def board() -> Board:
    return Board(zone=BERLIN)


def segment(view: dict[str, Any], tier: str, channel: str) -> dict[str, Any]:
    [row] = [r for r in view["segments"] if (r["tier"], r["channel"]) == (tier, channel)]
    return row


def test_waiting_and_oldest_wait_per_tier_and_channel() -> None:
    b = board()
    b.routed(routed("ev_1", NOW - timedelta(minutes=30)))
    b.routed(routed("ev_2", NOW - timedelta(minutes=5)))
    b.routed(routed("ev_3", NOW - timedelta(minutes=2), tier="premium", channel="api"))
    view = snapshot(b, NOW, {})
    email = segment(view, "standard", "email")
    assert (email["waiting"], email["oldest_wait_seconds"], email["routed"]) == (2, 1800.0, 2)
    api = segment(view, "premium", "api")
    assert (api["waiting"], api["oldest_wait_seconds"]) == (1, 120.0)
    # a minute later the same board says the waits grew: ages come from the clock given
    later = segment(snapshot(b, NOW + timedelta(minutes=1), {}), "standard", "email")
    assert later["oldest_wait_seconds"] == 1860.0


def test_a_reply_meets_the_target_and_a_breach_misses_it_once() -> None:
    b = board()
    start = NOW - timedelta(hours=3)
    b.routed(routed("ev_1", start))
    b.routed(routed("ev_2", start))
    b.routed(routed("ev_3", start))
    b.lifecycle(lifecycle("agent_reply", "con_ev_1", start + timedelta(minutes=20), author="maria"))
    b.sla(sla("warn", "con_ev_2", start + timedelta(hours=1)))
    b.sla(sla("breach", "con_ev_2", start + timedelta(hours=2)))
    # answered after its breach: still missed, never met as well
    b.lifecycle(lifecycle("agent_reply", "con_ev_2", start + timedelta(hours=2, minutes=30), author="ana"))
    row = segment(snapshot(b, NOW, {}), "standard", "email")
    assert row["sla"] == {"met": 1, "missed": 1, "attainment": 0.5}
    assert (row["warnings"], row["breaches"], row["replied"]) == (1, 1, 2)
    assert (row["waiting"], row["oldest_wait_seconds"]) == (1, 10800.0)


def test_a_call_back_marked_made_is_the_reply_that_meets_the_target() -> None:
    b = board()
    start = NOW - timedelta(hours=1)
    b.routed(routed("ev_1", start, tier="premium", channel="phone"))
    b.lifecycle(lifecycle("called_back", "con_ev_1", start + timedelta(minutes=40), author="maria"))
    row = segment(snapshot(b, NOW, {}), "premium", "phone")
    assert row["sla"] == {"met": 1, "missed": 0, "attainment": 1.0}
    assert (row["replied"], row["waiting"]) == (1, 0)


def test_waiting_on_the_customer_and_resolve_end_what_is_owed() -> None:
    b = board()
    b.routed(routed("ev_1", NOW - timedelta(hours=1)))
    b.routed(routed("ev_2", NOW - timedelta(hours=1)))
    b.lifecycle(lifecycle("waiting_on_customer", "con_ev_1", NOW - timedelta(minutes=30)))
    b.lifecycle(lifecycle("resolved", "con_ev_2", NOW - timedelta(minutes=10)))
    assert segment(snapshot(b, NOW, {}), "standard", "email")["waiting"] == 0
    # the customer writes again: owed again, from that message
    b.routed(routed("ev_3", NOW - timedelta(minutes=4), conversation="con_ev_1"))
    row = segment(snapshot(b, NOW, {}), "standard", "email")
    assert (row["waiting"], row["oldest_wait_seconds"]) == (1, 240.0)


def test_today_is_the_policys_day_not_utcs() -> None:
    b = board()
    # 23:30 UTC is already tomorrow in Berlin: 00:30
    now = datetime(2026, 3, 3, 23, 30, tzinfo=UTC)
    b.routed(routed("ev_yesterday", datetime(2026, 3, 3, 22, 50, tzinfo=UTC)))  # 23:50 in Berlin, Mar 3
    b.routed(routed("ev_today", datetime(2026, 3, 3, 23, 10, tzinfo=UTC)))  # 00:10 in Berlin, Mar 4
    view = snapshot(b, now, {})
    assert (view["day"], view["timezone"]) == ("2026-03-04", "Europe/Berlin")
    assert view["day_started_at"] == "2026-03-04T00:00:00+01:00"
    row = segment(view, "standard", "email")
    # routed today counts one; both still wait, whatever day they came
    assert (row["routed"], row["waiting"]) == (1, 2)


def test_a_replayed_record_counts_once() -> None:
    b = board()
    for _ in range(2):
        b.routed(routed("ev_1", NOW - timedelta(minutes=9)))
        b.sla(sla("breach", "con_ev_1", NOW - timedelta(minutes=1)))
        b.lifecycle(lifecycle("agent_reply", "con_ev_1", NOW, author="maria", event="lc_1"))
        b.dead_letter(dead("not JSON", NOW, offset=7))
    view = snapshot(b, NOW, {})
    row = segment(view, "standard", "email")
    assert (row["routed"], row["breaches"], row["replied"], row["sla"]["missed"]) == (1, 1, 1, 1)
    assert view["dead_letters"]["today"] == 1


def test_acknowledgement_latency_and_first_reply_per_agent() -> None:
    b = board()
    for i, (ack_after, reply_after, agent) in enumerate([(2, 600, "maria"), (4, 1200, "maria"),
                                                         (30, 300, "ana")]):
        at = NOW - timedelta(hours=1, minutes=i)
        b.routed(routed(f"ev_{i}", at))
        b.delivery(ack_sent(f"ev_{i}", f"con_ev_{i}", at + timedelta(seconds=ack_after)))
        replied = at + timedelta(seconds=reply_after)
        b.lifecycle(lifecycle("agent_reply", f"con_ev_{i}", replied, author=agent))
        # a second reply is not a first reply
        b.lifecycle(lifecycle("agent_reply", f"con_ev_{i}", at + timedelta(seconds=reply_after + 60),
                              author=agent, event=f"again_{i}"))
    view = snapshot(b, NOW, {})
    ack = segment(view, "standard", "email")["acknowledgement"]
    assert ack == {"count": 3, "p50_seconds": 4.0, "p90_seconds": 30.0}
    assert view["agents"] == [
        {"agent": "ana", "count": 1, "p50_seconds": 300.0, "p90_seconds": 300.0},
        {"agent": "maria", "count": 2, "p50_seconds": 600.0, "p90_seconds": 1200.0},
    ]
    assert view["accounts"] == [], "these messages name no account of ours"


def test_first_reply_by_the_account_customers_wrote_to() -> None:
    b = board()
    for i, (account, after) in enumerate([("support", 60), ("billing", 600), ("support", 120)]):
        at = NOW - timedelta(hours=1, minutes=i)
        extras = EmailExtras(message_id=f"<m{i}@example.org>", account=account)
        b.routed(routed(f"ev_{i}", at, extras=extras))
        b.lifecycle(lifecycle("agent_reply", f"con_ev_{i}", at + timedelta(seconds=after), author="maria"))
    assert snapshot(b, NOW, {})["accounts"] == [
        {"account": "email:billing", "count": 1, "p50_seconds": 600.0, "p90_seconds": 600.0,
         "name": "email:billing"},
        {"account": "email:support", "count": 2, "p50_seconds": 60.0, "p90_seconds": 120.0,
         "name": "email:support"},
    ]


def test_first_reply_by_x_handle_and_agent() -> None:
    b = board()
    for i, (agent, after) in enumerate([("maria", 60), ("ana", 600), ("maria", 120)]):
        at = NOW - timedelta(hours=1, minutes=i)
        extras = XExtras(kind="post", account="1072250532645998596", author_id=f"75{i}", summoned=True)
        b.routed(routed(f"ev_{i}", at, extras=extras, channel="x"))
        b.lifecycle(lifecycle("agent_reply", f"con_ev_{i}", at + timedelta(seconds=after), author=agent))
    names = account_names({"x": XSettings(account_id="1072250532645998596", handle="AcmeHelp"), "api": None})
    view = snapshot(b, NOW, {}, account_names=names)
    assert view["accounts"] == [{"account": "x:1072250532645998596", "name": "x:@AcmeHelp", "count": 3,
                                 "p50_seconds": 120.0, "p90_seconds": 600.0}]
    assert [(r["name"], r["agent"], r["count"], r["p50_seconds"]) for r in view["account_agents"]] == [
        ("x:@AcmeHelp", "ana", 1, 600.0), ("x:@AcmeHelp", "maria", 2, 60.0)]


def test_queue_backlog_and_eta_at_the_last_hours_pace() -> None:
    b = board()
    for i in range(7):
        b.routed(routed(f"ev_{i}", NOW - timedelta(hours=2), queue="billing"))
    b.routed(routed("ev_g", NOW - timedelta(hours=2)))
    b.lifecycle(lifecycle("agent_reply", "con_ev_0", NOW - timedelta(minutes=50), author="a"))
    b.lifecycle(lifecycle("agent_reply", "con_ev_1", NOW - timedelta(minutes=10), author="a"))
    b.lifecycle(lifecycle("agent_reply", "con_ev_2", NOW - timedelta(minutes=61), author="a"))
    # a transfer takes what is owed along to the new queue
    b.lifecycle(lifecycle("transferred", "con_ev_3", NOW - timedelta(minutes=5), queue="escalations"))
    view = snapshot(b, NOW, {"billing": 4, "general": 1, "social": 0, "escalations": -1})
    queues = {q["queue"]: q for q in view["queues"]}
    # two answers in the last hour: three still owed take an hour and a half
    assert (queues["billing"]["owed"], queues["billing"]["backlog"]) == (3, 4)
    assert queues["billing"]["answered_last_hour"] == 2
    assert queues["billing"]["eta_seconds"] == 5400.0
    assert queues["general"]["eta_seconds"] is None  # nobody answered: no pace to go by
    assert queues["social"]["eta_seconds"] == 0.0
    # the brain's count never shows below zero
    assert (queues["escalations"]["owed"], queues["escalations"]["backlog"]) == (1, 0)


def test_dead_letters_keep_their_latest_reasons_newest_first() -> None:
    b = board()
    for i in range(25):
        b.dead_letter(dead(f"reason {i}", NOW - timedelta(minutes=30 - i), offset=i,
                           stage="intake" if i % 2 else "email"))
    b.dead_letter(dead("x" * 1000, NOW, offset=99, channel=None))
    dl = snapshot(b, NOW, {})["dead_letters"]
    assert dl["today"] == 26
    assert dl["by_stage"] == {"email": 13, "intake": 13}
    assert len(dl["latest"]) == 20
    assert len(dl["latest"][0]["reason"]) == 300
    assert dl["latest"][1]["reason"] == "reason 24"


def test_connectors_appear_from_configuration_metrics_and_traffic() -> None:
    registry = CollectorRegistry()
    Gauge("sb_source_up", "up", ["connector"], registry=registry).labels("email").set(1)
    probe = Histogram("sb_probe_seconds", "probe", ["channel"], registry=registry)
    # the probes' own labels: a channel and the kind of failure
    failures = Counter("sb_probe_failures", "failures", ["channel", "kind"], registry=registry)
    probe.labels("chat").observe(0.5)
    probe.labels("chat").observe(1.5)
    failures.labels("chat", "slow")
    failures.labels("chat", "silent")
    reader = MetricReader(registry=registry, window=timedelta(minutes=10))
    b = board()
    b.routed(routed("ev_1", NOW - timedelta(minutes=3), channel="voice"))
    b.delivery(held("rep_1", "con_ev_1", NOW))
    b.dead_letter(dead("bad", NOW, offset=1, channel="voice"))

    def connectors(at: datetime) -> dict[str, dict[str, Any]]:
        facts = reader.read(["api", "email"], at)
        return {c["name"]: c for c in snapshot(b, at, {}, facts)["connectors"]}

    seen = connectors(NOW)
    assert sorted(seen) == ["api", "chat", "email", "voice"]
    assert (seen["email"]["connected"], seen["email"]["status"]) == (True, "ok")
    assert (seen["api"]["connected"], seen["api"]["configured"]) == (None, True)
    assert seen["chat"]["probe"] == {"seconds": 1.0, "failures": 0.0, "failing": False}
    assert (seen["voice"]["messages_today"], seen["voice"]["errors_today"], seen["voice"]["status"]) == (
        1, 1, "errors")
    failures.labels("chat", "silent").inc()
    after = connectors(NOW + timedelta(minutes=1))["chat"]
    assert (after["status"], after["probe"]["failures"]) == ("down", 1.0)
    failures.labels("chat", "slow").inc()
    assert connectors(NOW + timedelta(minutes=2))["chat"]["probe"]["failures"] == 2.0
    # ten quiet minutes later the probe is green again
    assert connectors(NOW + timedelta(minutes=12))["chat"]["status"] == "ok"


def test_a_disconnected_source_is_down() -> None:
    b = board()
    facts = [ConnectorFacts("email", configured=True, connected=False)]
    [row] = snapshot(b, NOW, {}, facts)["connectors"]
    assert row["status"] == "down"


def test_throughput_per_minute_over_the_last_hour() -> None:
    b = board()
    b.routed(routed("ev_1", NOW - timedelta(seconds=30)))
    b.routed(routed("ev_2", NOW - timedelta(seconds=20), channel="api"))
    b.routed(routed("ev_3", NOW - timedelta(minutes=2, seconds=1)))
    b.routed(routed("ev_old", NOW - timedelta(hours=2)))
    t = snapshot(b, NOW, {})["throughput"]
    assert len(t["minutes"]) == 60
    assert t["minutes"][-1] == "2026-03-03T09:00:00+00:00"
    assert sum(t["series"]["email"]) == 2 and t["series"]["email"][-2] == 1
    assert t["series"]["api"][-2] == 1


def test_tools_count_deliveries_and_failures() -> None:
    b = board()
    b.handoff(handoff("con_1", NOW))
    b.handoff(handoff("con_2", NOW, status="failed"))
    b.handoff(handoff("con_2", NOW, status="failed"))
    assert snapshot(b, NOW, {})["tools"] == [{"destination": "helpdesk-webhook", "delivered": 1, "failed": 1}]


def test_forget_drops_old_counts_and_keeps_what_is_owed() -> None:
    b = board()
    b.routed(routed("ev_old_open", NOW - timedelta(days=5)))
    b.routed(routed("ev_old_done", NOW - timedelta(days=5)))
    b.lifecycle(lifecycle("resolved", "con_ev_old_done", NOW - timedelta(days=5)))
    b.forget(NOW)
    assert set(b.conversations) == {"con_ev_old_open"}
    assert not any(b.counts["routed"].values())
    row = segment(snapshot(b, NOW, {}), "standard", "email")
    assert row["waiting"] == 1 and row["oldest_wait_seconds"] == 5 * 86400


def test_records_are_applied_by_topic_and_bad_ones_skipped() -> None:
    b = board()
    assert apply(b, "t1-sb.routed.v1", encode(routed("ev_1", NOW)))
    assert not apply(b, "t1-sb.routed.v1", b"{not json")
    assert not apply(b, "t1-sb.inbound.v1", encode(routed("ev_2", NOW)))
    assert segment(snapshot(b, NOW, {}), "standard", "email")["routed"] == 1


def verdict(channel: str, kind: str, at: datetime, seconds: float | None = None) -> ProbeEvent:
    probe_id = f"prb_{at.timestamp():.0f}"
    return ProbeEvent(event_id=f"{probe_id}.{channel}.verdict", probe_id=probe_id, channel=channel,
                      kind=kind, sent_at=at, at=at, seconds=seconds,  # type: ignore[arg-type]
                      reason=f"{kind} for the test")


def test_probe_verdicts_of_any_edge_colour_their_channel_until_the_next_probe_passes() -> None:
    b = board()
    # read from sb.probe.v1: the edge that probes may be another process than this one
    for record in (verdict("x", "passed", NOW - timedelta(hours=2), 2.5),
                   verdict("x", "routed", NOW - timedelta(hours=1), 0.4),
                   verdict("x", "silent", NOW - timedelta(hours=1)),
                   verdict("chat", "passed", NOW - timedelta(minutes=1), 0.07)):
        assert apply(b, "t0.sb.probe.v1", encode(record))
    rows = {row["name"]: row for row in snapshot(b, NOW, {})["connectors"]}
    # X probes hourly: an hour after its silent probe it is still red, with the last time it passed
    assert rows["x"]["status"] == "down"
    assert (rows["x"]["probe"]["failing"], rows["x"]["probe"]["verdict"], rows["x"]["probe"]["seconds"]) == (
        True, "silent", 2.5)
    assert (rows["chat"]["status"], rows["chat"]["probe"]["failing"]) == ("ok", False)
    # an older verdict read late changes nothing; the next passing probe turns it green
    b.probe(verdict("x", "passed", NOW - timedelta(hours=3), 1.0))
    assert snapshot(b, NOW, {})["connectors"][1]["probe"]["failing"] is True
    b.probe(verdict("x", "passed", NOW, 3.0))
    x_row = next(r for r in snapshot(b, NOW, {})["connectors"] if r["name"] == "x")
    assert (x_row["status"], x_row["probe"]["seconds"]) == ("ok", 3.0)
    b.forget(NOW + timedelta(days=3))
    assert b.probes == {}
