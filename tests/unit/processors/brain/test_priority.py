from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from processors.brain.priority import first_response_due, next_response_due, priority, tier_for
from processors.policy.load import load_policy
from router.vocabulary import VOCABULARY
from tests.paths import ROOT

POLICY = load_policy(ROOT / "deploy" / "policy.example.yaml", VOCABULARY)
BERLIN = ZoneInfo("Europe/Berlin")


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


@pytest.mark.parametrize(("tier", "urgency", "number"), [
    ("enterprise", "critical", 1), ("premium", "critical", 2), ("standard", "critical", 3),
    ("enterprise", "high", 4), ("premium", "high", 5), ("standard", "high", 6),
    ("enterprise", "normal", 7), ("premium", "normal", 8), ("standard", "normal", 9),
    ("enterprise", "low", 10), ("premium", "low", 11), ("standard", "low", 12),
])
def test_priority_orders_by_urgency_then_tier(tier: str, urgency: str, number: int) -> None:
    assert priority(tier, urgency, POLICY).number == number


@pytest.mark.parametrize(("ahead", "behind"), [
    (("premium", "normal"), ("standard", "normal")),     # paid tier first at the same urgency
    (("enterprise", "normal"), ("premium", "normal")),
    (("standard", "critical"), ("enterprise", "high")),  # urgency before tier
])
def test_who_goes_first(ahead: tuple[str, str], behind: tuple[str, str]) -> None:
    assert priority(*ahead, POLICY).number < priority(*behind, POLICY).number


def test_priority_reason_explains_the_order() -> None:
    reasons = priority("premium", "high", POLICY).reasons
    assert reasons == ("priority=5: urgency high (2 of 4, most urgent first), "
                       "then tier premium (2 of 3, highest rank first)",)


@pytest.mark.parametrize("name", ["gold", None, ""])
def test_unknown_tier_falls_back_to_the_default_tier(name: str | None) -> None:
    tier, reasons = tier_for(name, POLICY)
    assert tier.name == "standard"
    assert "default tier" in reasons[0]
    assert priority(name or "", "normal", POLICY).number == 9


@pytest.mark.parametrize(("received", "tier", "urgency", "queue", "due"), [
    # premium pays for 2 business hours
    (local(2026, 3, 2, 10, 0), "premium", "normal", "general", local(2026, 3, 2, 12, 0)),
    # Friday 17:30: 30 minutes Friday, the rest on Saturday's 10:00-14:00 shift
    (local(2026, 3, 6, 17, 30), "premium", "normal", "general", local(2026, 3, 7, 11, 30)),
    # Saturday 13:00: 1h Saturday, 1h Monday from 08:00
    (local(2026, 3, 7, 13, 0), "premium", "normal", "billing", local(2026, 3, 9, 9, 0)),
    # standard normal is 8h: one full business day from opening
    (local(2026, 3, 2, 7, 0), "standard", "normal", "general", local(2026, 3, 2, 16, 0)),
    # enterprise runs on 24x7 whatever the queue's hours: Sunday night counts
    (local(2026, 3, 8, 3, 0), "enterprise", "normal", "general", local(2026, 3, 8, 4, 0)),
    # over Easter (3 and 6 April 2026 are holidays)
    (local(2026, 4, 2, 17, 0), "premium", "normal", "general", local(2026, 4, 4, 11, 0)),
])
def test_first_response_due_in_business_hours(received: datetime, tier: str, urgency: str,
                                              queue: str, due: datetime) -> None:
    assert first_response_due(received, tier, urgency, queue, POLICY).at == due


def test_due_reasons_name_tier_target_and_calendar() -> None:
    result = first_response_due(local(2026, 3, 2, 10, 0), "premium", "normal", "general", POLICY)
    assert result.target == timedelta(hours=2)
    assert result.calendar == "eu-support"
    assert result.reasons == (
        "tier=premium: first response 2h for urgency normal (business hours, calendar eu-support "
        "of queue general), due 2026-03-02T11:00:00+00:00",)


def test_due_reasons_say_when_the_clock_starts_if_closed() -> None:
    result = first_response_due(local(2026, 3, 8, 12, 0), "premium", "high", "general", POLICY)
    assert result.at == local(2026, 3, 9, 9, 0)
    assert result.reasons[-1] == ("calendar eu-support is closed at receipt; "
                                  "the clock starts Mon 2026-03-09 08:00 CET")


def test_enterprise_due_uses_its_own_calendar() -> None:
    result = first_response_due(local(2026, 3, 8, 3, 0), "enterprise", "critical", "social", POLICY)
    assert result.at == local(2026, 3, 8, 3, 15)
    assert "(around the clock, calendar 24x7 of tier enterprise)" in result.reasons[0]


def test_next_response_due() -> None:
    result = next_response_due(datetime(2026, 3, 2, 9, 0, tzinfo=UTC), "premium", "normal",
                               "general", POLICY)
    assert result.at == local(2026, 3, 2, 14, 0)
    assert result.reasons[0].startswith("tier=premium: next response 4h")
