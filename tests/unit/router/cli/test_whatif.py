"""`switchboard whatif` without Kafka or Redis: judging, aggregation, rendering, refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from processors.brain.thread import ThreadRules
from processors.intake.identify import Binding
from processors.policy.load import load_policy
from processors.policy.model import Policy
from router.cli.commands import main
from router.cli.whatif import (
    AS_IF_NEW,
    Compared,
    Customers,
    Judgement,
    Spread,
    Window,
    as_json,
    compare,
    parse_since,
    render,
    routable,
    summarise,
)
from router.vocabulary import VOCABULARY
from schemas import encode
from schemas.errors import SwitchboardError
from schemas.identified import CustomerProfile
from schemas.identity import Identity
from schemas.ids import customer_id_for, inbound_event_id
from schemas.inbound import InboundMessage
from schemas.probe import make_marker
from tests.paths import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "whatif"
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
RULES = ThreadRules(token_key=b"k" * 32)
ADA = Identity(kind="email", value="ada@example.com")
BOB = Identity(kind="email", value="bob@example.com")


@pytest.fixture(scope="module")
def old() -> Policy:
    return load_policy(FIXTURES / "old.yaml", VOCABULARY)


@pytest.fixture(scope="module")
def new() -> Policy:
    return load_policy(FIXTURES / "new.yaml", VOCABULARY)


def message(n: int, sender: Identity, text: str, **fields: object) -> InboundMessage:
    native = f"m-{n}"
    return InboundMessage(event_id=inbound_event_id("api", native), channel="api", native_id=native,
                          thread_key=str(sender), sender=sender, received_at=T0 + timedelta(minutes=n),
                          text=text, **fields)  # type: ignore[arg-type]


def verdict(queue: str, due_minutes: int | None, priority: int = 2, tier: str = "standard",
            urgency: str = "normal", reasons: tuple[str, ...] = ()) -> Judgement:
    due = None if due_minutes is None else timedelta(minutes=due_minutes)
    return Judgement(queue, priority, tier, urgency, due, reasons)


def compared(n: int, old: Judgement, new: Judgement) -> Compared:
    return Compared(f"ev_{n}", "api", T0 + timedelta(minutes=n), old, new)


WINDOW = Window("sb.inbound.v1", T0 - timedelta(hours=24), T0, records=12, skipped={"duplicate": 2},
                old_policy="old.yaml", new_policy="new.yaml")


def test_each_message_is_judged_by_both_policies_as_if_new(old: Policy, new: Policy) -> None:
    ada = customer_id_for(ADA)
    customers = Customers(
        lookups={str(ADA): Binding(customer_id=ada, since=T0 - timedelta(days=30), event_id="ev_first")},
        profiles={ada: CustomerProfile(customer_id=ada, tier="premium", name="Ada")})
    messages = [message(1, BOB, "I was charged twice for one invoice"),
                message(2, ADA, "where is my parcel?"),
                message(3, ADA, "total outage since this morning")]
    got = compare(messages, customers, old=old, new=new, rules=RULES, now=T0)

    charged, parcel, outage = got
    assert (charged.old.queue, charged.new.queue) == ("billing", "finance")
    assert charged.old.tier == "standard" and charged.old.due_after == timedelta(hours=8)
    assert any("keyword 'charged'" in r for r in charged.new.reasons)
    # a customer the directory knows keeps their tier; the new policy answers premium sooner
    assert (parcel.old.tier, parcel.old.queue, parcel.new.queue) == ("premium", "general", "general")
    assert (parcel.old.due_after, parcel.new.due_after) == (timedelta(hours=2), timedelta(hours=1))
    assert outage.old.urgency == outage.new.urgency == "high"
    assert outage.new.priority < parcel.new.priority  # 1 is the most pressing
    # no thread or sticky state: the second message of Ada's is not joined to the first
    assert all(not any("continues" in r for r in c.new.reasons) for c in got)


def test_summary_counts_each_side_and_lists_the_moved_messages() -> None:
    items = [
        compared(1, verdict("billing", 480, reasons=("queue=billing: keyword 'refund'",)),
                 verdict("finance", 480, reasons=("queue=finance: keyword 'refund'",))),
        compared(2, verdict("billing", 240, urgency="high", priority=1),
                 verdict("finance", 240, urgency="high", priority=1)),
        compared(3, verdict("general", 120, tier="premium", priority=1),
                 verdict("general", 60, tier="premium", priority=1)),
        compared(4, verdict("general", 480), verdict("general", 480)),
        compared(5, verdict("general", None), verdict("general", None)),
    ]
    report = summarise(items, WINDOW, examples=1)

    assert report.messages == 5
    assert report.queues == {"general": (3, 3), "billing": (2, 0), "finance": (0, 2)}
    assert report.priorities == {1: (2, 2), 2: (3, 3)}
    assert report.tier_urgency == {"premium/normal": (1, 1), "standard/high": (1, 1),
                                   "standard/normal": (3, 3)}
    assert report.changed == 2
    assert [c.event_id for c in report.examples] == ["ev_1"]
    billing_old, billing_new = report.due["billing"]
    assert billing_old == Spread(2, timedelta(hours=4), timedelta(hours=8), timedelta(hours=8))
    assert billing_new is None
    # a message without a due time counts in the queue, not in its spread
    assert report.due["general"][0] == Spread(2, timedelta(hours=2), timedelta(hours=8), timedelta(hours=8))
    assert report.due["general"][1] == Spread(2, timedelta(hours=1), timedelta(hours=8), timedelta(hours=8))


def test_percentiles_are_nearest_rank() -> None:
    items = [compared(n, verdict("general", n), verdict("general", n)) for n in range(1, 11)]
    [(spread, _)] = summarise(items, WINDOW).due.values()
    assert spread == Spread(10, timedelta(minutes=5), timedelta(minutes=9), timedelta(minutes=10))


def test_tables_show_old_new_and_the_change() -> None:
    items = [compared(1, verdict("billing", 480, reasons=("queue=billing: keyword 'refund'", "same")),
                      verdict("finance", 90, reasons=("queue=finance: keyword 'refund'", "same")))]
    text = render(summarise(items, WINDOW))
    lines = text.splitlines()

    assert lines[0].startswith("whatif: 1 messages from sb.inbound.v1")
    assert "skipped: 2 duplicate" in lines[0]
    assert AS_IF_NEW in text
    assert [line.split() for line in lines if line.startswith(("billing ", "finance "))][:2] == [
        ["billing", "1", "0", "-1"], ["finance", "0", "1", "+1"]]
    assert ["standard/normal", "1", "1", "+0"] in [line.split() for line in lines]
    due_rows = {line.split()[0]: line.split()[1:] for line in lines
                if line.startswith(("billing ", "finance ")) and "h" in line}
    assert due_rows == {"billing": ["8h", "8h", "8h", "-", "-", "-"],
                        "finance": ["-", "-", "-", "1h30m", "1h30m", "1h30m"]}
    assert "queue changed: 1 of 1 messages" in text
    assert "  ev_1 (api, 2026-03-02 10:01): billing -> finance" in lines
    # only the reasons that differ are shown
    assert "    was: queue=billing: keyword 'refund'" in lines
    assert "    now: queue=finance: keyword 'refund'" in lines
    assert "same" not in text


def test_json_is_the_same_report_for_machines() -> None:
    items = [compared(1, verdict("billing", 480, reasons=("a",)), verdict("finance", 480, reasons=("b",))),
             compared(2, verdict("general", 60), verdict("general", 60))]
    doc = json.loads(json.dumps(as_json(summarise(items, WINDOW))))

    assert doc["messages"] == 2 and doc["records"] == 12 and doc["skipped"] == {"duplicate": 2}
    assert doc["policies"] == {"old": "old.yaml", "new": "new.yaml"}
    assert doc["queues"] == {"billing": {"old": 1, "new": 0}, "general": {"old": 1, "new": 1},
                             "finance": {"old": 0, "new": 1}}
    assert doc["priorities"] == {"2": {"old": 2, "new": 2}}
    assert doc["first_response"]["billing"] == {
        "old": {"count": 1, "p50_seconds": 28800.0, "p90_seconds": 28800.0, "max_seconds": 28800.0},
        "new": None}
    assert doc["queue_changed"] == 1
    [example] = doc["examples"]
    assert example | {"received_at": None} == {
        "event_id": "ev_1", "channel": "api", "received_at": None, "old_queue": "billing",
        "new_queue": "finance", "old_reasons": ["a"], "new_reasons": ["b"]}


def test_only_what_the_router_would_route_is_judged_once_each() -> None:
    plain = message(1, ADA, "hello")
    bounce = message(2, ADA, "returned mail", tags=("bounce",))
    marker = make_marker("prb_0123456789abcdef0123", "api", T0 + timedelta(minutes=3), RULES.token_key)
    probe = message(3, ADA, f"Switchboard probe {marker}")
    values = [encode(plain), b"{not json", None, encode(plain), encode(bounce), encode(probe)]
    messages, skipped = routable(values, RULES, ())
    assert messages == [plain]
    assert skipped == {"undecodable": 2, "duplicate": 1, "bounce": 1, "probe": 1}


@pytest.mark.parametrize(("text", "span"), [("24h", timedelta(hours=24)), ("90m", timedelta(minutes=90)),
                                            ("7d", timedelta(days=7)), ("1h30m", timedelta(minutes=90))])
def test_since_takes_policy_durations_and_days(text: str, span: timedelta) -> None:
    assert parse_since(text) == span


@pytest.mark.parametrize("text", ["soon", "0d", "-1h", ""])
def test_a_bad_since_is_refused(text: str) -> None:
    with pytest.raises(SwitchboardError, match="--since"):
        parse_since(text)


def test_a_new_policy_that_fails_validation_exits_2_naming_file_and_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = ROOT / "tests" / "fixtures" / "policy" / "bad_duration.yaml"
    # refused before Kafka or Redis is asked anything
    assert main(["whatif", "--policy", str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == (f"switchboard whatif: {bad}:8 tiers.standard.first_response.high: "
                                    "must be a duration like 2h or 30m")


def test_a_bad_since_or_limit_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    good = str(FIXTURES / "new.yaml")
    assert main(["whatif", "--policy", good, "--since", "yesterday"]) == 2
    assert main(["whatif", "--policy", good, "--limit", "0"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "--since 'yesterday'" in err[0] and "--limit must be at least 1" in err[1]
