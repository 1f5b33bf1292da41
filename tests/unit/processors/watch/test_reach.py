"""Follow-ups, like acknowledgements, go only to a customer the conversation's channel reaches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from processors.brain import sla
from processors.policy.load import load_policy
from processors.stores.clocks import SlaEntry
from processors.stores.history import ConversationSummary
from processors.watch.lifecycle_watch import Planned, fire
from router.vocabulary import vocabulary
from schemas import Identity, OutboundMessage, decode
from schemas.topics import OUTBOUND
from tests.paths import ROOT

# the channels `make run` configures: the API answers by email
POLICY = load_policy(ROOT / "deploy" / "policy.example.yaml", vocabulary({"api", "email", "x"}))
NOW = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
CID = "con_reach000000000000001"


def resolved(channel: str, recipient: Identity) -> tuple[ConversationSummary, SlaEntry]:
    clock = sla.SlaClock(tier="standard", urgency="normal", queue="general")
    clock, _ = sla.apply(clock, sla.ClockEvent("customer_message", NOW - timedelta(days=1)), POLICY)
    summary = ConversationSummary(conversation_id=CID, queue="general", status="resolved",
                                  last_at=NOW - timedelta(days=1), resolved_at=NOW - timedelta(days=1))
    return summary, SlaEntry(conversation_id=CID, customer_id="cus_1", channel=channel,
                             recipient=recipient, clock=clock, name="Ada")


@pytest.mark.parametrize(("channel", "recipient", "why"), [
    ("email", Identity(kind="email", value="ada@example.com"), "follow-up sent"),
    ("x", Identity(kind="xid", value="2244994945"), "follow-up sent"),
    # an X conversation whose recipient is an address X cannot write to
    ("x", Identity(kind="email", value="ada@example.com"),
     "no follow-up: x replies go by x, which reaches xid identities, not this customer's email one"),
])
def test_a_follow_up_is_planned_only_for_a_customer_the_channel_reaches(
        channel: str, recipient: Identity, why: str) -> None:
    summary, entry = resolved(channel, recipient)
    outputs, reason = fire(Planned("cus_1", CID, "follow_up", None), summary, entry, POLICY, NOW)
    assert reason == why
    sent = [decode(o.value, OutboundMessage) for o in outputs if o.topic is OUTBOUND]
    assert [m.recipient for m in sent] == ([recipient] if why == "follow-up sent" else [])
