from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from processors.brain.acknowledge import (
    AckDecision,
    acknowledgement,
    expected_answer,
    prospect,
    status_update,
)
from processors.policy.calendar import ALWAYS_OPEN
from processors.policy.load import load_policy
from processors.policy.model import Policy
from processors.policy.reach import Reach
from router.vocabulary import VOCABULARY, reach
from tests.paths import ROOT

POLICY = load_policy(ROOT / "deploy" / "policy.example.yaml", VOCABULARY)
BERLIN = ZoneInfo("Europe/Berlin")
EU = POLICY.calendars["eu-support"]


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """A time in March 2026, Berlin (CET); the 2nd is a Monday. eu-support: 08-18, Sat 10-14."""
    return datetime(2026, 3, day, hour, minute, tzinfo=BERLIN)


MONDAY_10, MONDAY_NOON = at(2, 10), at(2, 12)


def ack(*, channel: str = "email", recipient: str = "email", tags: tuple[str, ...] = (),
        name: str | None = "Ada", tier: str = "premium", backlog: int = 0,
        handling: timedelta | None = timedelta(minutes=20), due: datetime = MONDAY_NOON,
        now: datetime = MONDAY_10, continuing: bool = False, policy: Policy = POLICY) -> AckDecision:
    return acknowledgement(channel=channel, recipient=recipient, tags=tags, name=name,
                           reference="con_1", tier=tier,
                           queue="general", backlog=backlog, handling_time=handling, due=due,
                           policy=policy, now=now, continuing=continuing)


@pytest.mark.parametrize(("tags", "continuing", "channel", "reason"), [
    (("auto_reply",), False, "email", "no acknowledgement: message tagged auto_reply"),
    (("mailing_list",), False, "email", "no acknowledgement: message tagged mailing_list"),
    (("bounce",), False, "email", "no acknowledgement: message tagged bounce"),
    (("spam",), False, "email", "no acknowledgement: message tagged spam"),  # the policy's own
    ((), True, "email", "no acknowledgement: continues a conversation already acknowledged"),
    ((), False, "chat", "no acknowledgement: no template for channel chat"),
])
def test_when_not_to_acknowledge(tags: tuple[str, ...], continuing: bool, channel: str, reason: str) -> None:
    decision = ack(tags=tags, continuing=continuing, channel=channel, recipient=channel)
    assert decision.ack is None
    assert decision.reasons == (reason,)
    assert not decision.unreachable


def test_an_api_caller_with_an_email_address_is_acknowledged_by_the_api_template() -> None:
    decision = ack(channel="api", recipient="email")
    assert decision.ack is not None and decision.ack.template == "api/default/open"
    assert decision.ack.text.startswith("Hi Ada, thanks for getting in touch. We have your request")


@pytest.mark.parametrize(("running", "recipient", "reason"), [
    # the API answers by email: a caller known by a phone number or a handle is out of reach
    (None, "phone", "no acknowledgement: api replies go by email, which reaches email identities, "
                    "not this customer's phone one"),
    (None, "x", "no acknowledgement: api replies go by email, which reaches email identities, "
                "not this customer's x one"),
    # without the email channel running, nothing answers the API at all
    ({"api", "phone"}, "email", "no acknowledgement: nothing running here sends api replies"),
])
def test_an_unreachable_api_caller_gets_no_acknowledgement_and_the_reason(
        running: set[str] | None, recipient: str, reason: str) -> None:
    policy = replace(POLICY, reach=reach(running))
    decision = ack(channel="api", recipient=recipient, policy=policy)
    assert decision.ack is None
    assert decision.unreachable
    assert decision.reasons == (reason,)


def test_channels_with_their_own_sender_reach_their_own_customers() -> None:
    known = reach({"email", "phone", "x", "chat"})
    assert [known.unreachable(c, k) for c, k in
            [("email", "email"), ("phone", "phone"), ("x", "xid"), ("chat", "chat")]] == [None] * 4
    assert known.unreachable("phone", "email") == (
        "phone replies go by phone, which reaches phone identities, not this customer's email one")
    assert known.unreachable("api", "email") == "nothing running here sends api replies"  # not configured
    assert reach({"api", "email"}).unreachable("api", "email") is None  # through email, which runs


def test_a_policy_loaded_without_the_deployment_takes_every_customer_as_reachable() -> None:
    assert Reach().unreachable("api", "phone") is None
    assert ack(channel="api", recipient="phone", policy=replace(POLICY, reach=Reach())).ack is not None


def test_open_team_with_a_short_backlog_promises_the_estimate() -> None:
    decision = ack(backlog=2)
    assert decision.ack is not None
    assert decision.ack.expected == at(2, 11)  # 3 conversations of 20m
    assert decision.ack.template == "email/default/open"
    assert decision.ack.text == (
        "Hi Ada, thanks for writing. We have your message and will answer by Mon 02 Mar, 11:00 CET. "
        "Your reference is con_1; just reply to this email to add anything.")
    assert decision.reasons[1] == ("expected 2026-03-02T10:00:00+00:00: 2 waiting and this one at "
                                   "20m average handling in calendar eu-support")


@pytest.mark.parametrize(("backlog", "handling", "expected", "why"), [
    (0, timedelta(minutes=20), at(2, 10, 20), "average handling"),
    (10, timedelta(minutes=20), at(2, 12), "the SLA due time (10 waiting"),  # capped by the SLA
    (3, None, at(2, 12), "the SLA due time (no handling-time data)"),
    (3, timedelta(0), at(2, 12), "no handling-time data"),
])
def test_expected_answer(backlog: int, handling: timedelta | None, expected: datetime, why: str) -> None:
    when, reason = expected_answer(now=at(2, 10), due=at(2, 12), backlog=backlog,
                                   handling_time=handling, calendar=EU)
    assert when == expected
    assert why in reason


def test_estimate_counts_business_hours() -> None:
    # Friday 17:45: 15 minutes left today, then Saturday from 10:00
    when, _ = expected_answer(now=at(6, 17, 45), due=at(7, 11, 45), backlog=2,
                              handling_time=timedelta(minutes=30), calendar=EU)
    assert when == at(7, 11, 15)


def test_closed_team_says_when_it_opens() -> None:
    decision = ack(now=at(8, 12), due=at(9, 10), backlog=1)  # Sunday noon
    assert decision.ack is not None
    assert decision.ack.template == "email/default/closed"
    assert decision.ack.expected == at(9, 8, 40)
    assert decision.ack.text == (
        "Hi Ada, thanks for writing. Our team is away right now and back Mon 09 Mar, 08:00 CET; "
        "you will have an answer by Mon 09 Mar, 08:40 CET. Your reference is con_1.")
    assert "closed until 2026-03-09T07:00:00+00:00" in decision.reasons[0]


@pytest.mark.parametrize(("channel", "tier", "template", "starts"), [
    ("email", "enterprise", "email/enterprise/open", "Hi Ada, your request con_1 is with our enterprise"),
    ("email", "standard", "email/default/open", "Hi Ada, thanks for writing."),
    ("x", "premium", "x/default/open", "Thanks Ada, we're on it"),
])
def test_template_by_channel_then_tier(channel: str, tier: str, template: str, starts: str) -> None:
    decision = ack(channel=channel, recipient="xid" if channel == "x" else "email", tier=tier)
    assert decision.ack is not None
    assert decision.ack.template == template
    assert decision.ack.text.startswith(starts)


def test_enterprise_is_never_closed_and_times_show_in_the_teams_timezone() -> None:
    decision = ack(tier="enterprise", now=at(8, 3), due=at(8, 4), handling=None)
    assert decision.ack is not None
    assert decision.ack.template == "email/enterprise/open"
    assert decision.ack.text.endswith("Expect an answer by Sun 08 Mar, 04:00 CET.")


@pytest.mark.parametrize("name", [None, "", "   "])
def test_unknown_name(name: str | None) -> None:
    decision = ack(name=name)
    assert decision.ack is not None and decision.ack.text.startswith("Hi there,")


def test_customer_text_with_braces_is_not_a_template() -> None:
    decision = ack(name="{expected} {0}")
    assert decision.ack is not None and decision.ack.text.startswith("Hi {expected} {0}, thanks")


def test_status_update_before_due() -> None:
    decision = status_update(channel="email", recipient="email", name="Ada", reference="con_1",
                             tier="premium",
                             queue="general", backlog=0, handling_time=None, due=at(2, 12),
                             policy=POLICY, now=at(2, 11))
    assert decision.ack is not None
    assert decision.ack.kind == "status_update"
    assert decision.ack.text == ("Hi Ada, we haven't forgotten you: con_1 is being worked on and you "
                                 "will have an answer by Mon 02 Mar, 12:00 CET.")


@pytest.mark.parametrize(("channel", "now", "reason"), [
    ("email", at(2, 12), "no status update: already past due, escalation has it"),
    ("chat", at(2, 11), "no status_update: no template for channel chat"),
    ("api", at(2, 11), "no status_update: api replies go by email, which reaches email identities, "
                       "not this customer's phone one"),
])
def test_no_status_update(channel: str, now: datetime, reason: str) -> None:
    decision = status_update(channel=channel, recipient="phone" if channel == "api" else channel,
                             name="Ada", reference="con_1", tier="premium",
                             queue="general", backlog=0, handling_time=None, due=at(2, 12),
                             policy=POLICY, now=now)
    assert decision.ack is None
    assert decision.reasons == (reason,)


def test_always_open_calendar_estimate_is_plain_elapsed_time() -> None:
    when, _ = expected_answer(now=at(8, 3), due=at(8, 9), backlog=1, handling_time=timedelta(hours=1),
                              calendar=ALWAYS_OPEN)
    assert when == at(8, 5)


SATURDAY_EVENING = at(7, 20)


@pytest.mark.parametrize(("tier", "now", "shown", "open_now", "opens", "expected"), [
    (None, MONDAY_10, "standard", True, "Mon 02 Mar, 10:00 CET", "Mon 02 Mar, 18:00 CET"),
    ("premium", MONDAY_10, "premium", True, "Mon 02 Mar, 10:00 CET", "Mon 02 Mar, 12:00 CET"),
    ("premium", SATURDAY_EVENING, "premium", False, "Mon 09 Mar, 08:00 CET", "Mon 09 Mar, 10:00 CET"),
    # the tier's own 24x7 calendar: open on a Saturday night
    ("enterprise", SATURDAY_EVENING, "enterprise", True, "Sat 07 Mar, 20:00 CET", "Sat 07 Mar, 21:00 CET"),
    ("no-such-tier", SATURDAY_EVENING, "standard", False, "Mon 09 Mar, 08:00 CET", "Mon 09 Mar, 16:00 CET"),
])
def test_a_prospect_promises_what_a_plain_message_would_get(
        tier: str | None, now: datetime, shown: str, open_now: bool, opens: str, expected: str) -> None:
    seen = prospect(channel="email", tier=tier, backlog={}, policy=POLICY, now=now)
    assert (seen.tier, seen.queue, seen.open_now) == (shown, "general", open_now)
    assert (seen.opens_text, seen.expected_text) == (opens, expected)
    assert (seen.opens == now) is open_now


def test_a_prospect_is_the_acknowledgements_promise() -> None:
    seen = prospect(channel="email", tier="premium", backlog={"general": 4}, policy=POLICY, now=MONDAY_10)
    acked = ack(tier="premium", handling=None, due=seen.expected, now=MONDAY_10)
    assert acked.ack is not None
    assert acked.ack.expected == seen.expected
    assert seen.expected_text in acked.ack.text


def test_each_policy_writes_the_same_promise_in_its_own_time_format() -> None:
    # written times are remembered by instant, zone and format: a reloaded format shows at once
    iso = replace(POLICY, acknowledge=replace(POLICY.acknowledge, time_format="%Y-%m-%dT%H:%M%z"))
    before, after, again = ack(handling=None), ack(handling=None, policy=iso), ack(handling=None)
    assert before.ack is not None and after.ack is not None and again.ack is not None
    assert "Mon 02 Mar, 12:00 CET" in before.ack.text
    assert "2026-03-02T12:00+0100" in after.ack.text
    assert again.ack.text == before.ack.text
