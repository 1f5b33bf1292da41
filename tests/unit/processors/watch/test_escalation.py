"""Escalation steps do what they say: a reassignment moves the conversation, targets hear it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from processors.brain import sla
from processors.dispatch.plan import escalation_destinations
from processors.policy.load import load_policy, parse_policy
from processors.stores.clocks import SlaEntry
from processors.watch.sla_watch import fire
from router.vocabulary import VOCABULARY, vocabulary
from schemas import Identity, OutboundMessage, SlaEvent, decode
from schemas.conversation import ConversationEvent
from schemas.topics import CONVERSATION, OUTBOUND, SLA
from tests.paths import ROOT

EXAMPLE = load_policy(ROOT / "deploy" / "policy.example.yaml", VOCABULARY)
CHAIN = parse_policy("""
default_tier: standard
tiers:
  standard: {rank: 1, first_response: {normal: 1m, high: 1m}, next_response: {normal: 1m, high: 1m}}
urgency: {levels: [normal, high]}
queues:
  general: {match: {channels: [email]}, destinations: [helpdesk], escalation: chain}
  escalations: {destinations: [pager]}
default_queue: general
escalations:
  chain:
    - {at: breach, action: reassign, target: escalations}
    - {at: breach, action: page, target: on-call}
""", "chain.yaml", VOCABULARY)


def breached(queue: str = "general") -> SlaEntry:
    start = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    clock, _ = sla.apply(sla.SlaClock(tier="standard", urgency="normal", queue=queue),
                         sla.ClockEvent("customer_message", start), CHAIN)
    return SlaEntry(conversation_id="con_1", customer_id="cus_1", channel="email",
                    recipient=Identity(kind="email", value="ada@example.com"), clock=clock)


def test_a_reassignment_step_moves_the_conversation_to_its_queue() -> None:
    now = datetime(2026, 11, 23, 9, 5, tzinfo=UTC)
    _, outputs = fire(breached(), now, CHAIN)
    steps = [decode(o.value, SlaEvent) for o in outputs if o.topic is SLA]
    assert [(s.kind, s.action, s.action_target) for s in steps if s.kind == "escalate"] == [
        ("escalate", "reassign", "escalations"), ("escalate", "page", "on-call")]
    [moved] = [decode(o.value, ConversationEvent) for o in outputs if o.topic is CONVERSATION]
    assert (moved.kind, moved.queue, moved.conversation_id, moved.source) == (
        "transferred", "escalations", "con_1", "sla")
    assert outputs[[o.topic for o in outputs].index(CONVERSATION)].key == b"cus_1"
    # fired again (a replay of the tick): the same event id, so the brain applies it once
    _, again = fire(breached(), now, CHAIN)
    [same] = [decode(o.value, ConversationEvent) for o in again if o.topic is CONVERSATION]
    assert same.event_id == moved.event_id


def test_nothing_moves_before_the_breach() -> None:
    _, outputs = fire(breached(), datetime(2026, 11, 23, 9, 0, 45, tzinfo=UTC), CHAIN)
    assert all(o.topic is not CONVERSATION for o in outputs)


@pytest.mark.parametrize(("action", "target", "expected"), [
    ("reassign", "escalations", ()),                   # the transfer's handoff reaches the new team
    ("page", "pager-webhook", ("pager-webhook",)),      # a destination of that name
    ("notify", "team-lead", ()),                        # a name the conversation's tools understand
    ("raise_priority", None, ()),
    (None, None, ()),
])
def test_who_else_an_escalation_reaches(action: str | None, target: str | None,
                                        expected: tuple[str, ...]) -> None:
    assert escalation_destinations(action, target, EXAMPLE)[0] == expected


UPDATES = parse_policy("""
default_tier: standard
tiers:
  standard: {rank: 1, first_response: {normal: 1h, high: 1h}, next_response: {normal: 1h, high: 1h}}
urgency: {levels: [normal, high]}
queues:
  general: {match: {channels: [api]}, destinations: [helpdesk]}
default_queue: general
sla: {status_update_at: 0.5}
acknowledge:
  status_update:
    api:
      default: {open: "Still on it, {name}.", closed: "Still on it, {name}."}
""", "updates.yaml", vocabulary({"api", "email"}))


@pytest.mark.parametrize(("identity", "sent"), [
    (Identity(kind="email", value="ada@example.com"), True),  # the API answers by email
    (Identity(kind="phone", value="+4930123456"), False),     # out of reach: no message at all
])
def test_a_status_update_goes_only_to_a_customer_the_channel_reaches(identity: Identity, sent: bool) -> None:
    start = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    clock, _ = sla.apply(sla.SlaClock(tier="standard", urgency="normal", queue="general"),
                         sla.ClockEvent("customer_message", start), UPDATES)
    entry = SlaEntry(conversation_id="con_1", customer_id="cus_1", channel="api", recipient=identity,
                     clock=clock)
    _, outputs = fire(entry, datetime(2026, 11, 23, 9, 31, tzinfo=UTC), UPDATES)
    assert [decode(o.value, SlaEvent).kind for o in outputs if o.topic is SLA] == ["status_update"]
    updates = [decode(o.value, OutboundMessage) for o in outputs if o.topic is OUTBOUND]
    assert [(u.kind, u.channel, u.recipient) for u in updates] == (
        [("status_update", "api", identity)] if sent else [])
