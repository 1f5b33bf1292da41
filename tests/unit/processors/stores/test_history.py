from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from processors.stores.history import (
    ConversationSummary,
    HistoryStore,
    Line,
    open_conversation,
    recent_contacts,
    stale,
)
from schemas import HistoryEntry

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ADA = "email:ada@example.com"


def entry(minutes: int, direction: str = "in", conversation: str = "con_1") -> HistoryEntry:
    return HistoryEntry(at=T0 + timedelta(minutes=minutes), channel="email", conversation_id=conversation,
                        direction=direction, summary=f"at {minutes}")  # type: ignore[arg-type]


def summary(conversation: str, minutes: int, status: str = "open", identity: str | None = ADA,
            ) -> ConversationSummary:
    return ConversationSummary(conversation_id=conversation, queue="billing", status=status,
                               last_at=T0 + timedelta(minutes=minutes), agent="maria", identity=identity)


@pytest.mark.parametrize(("window", "direction", "count"), [
    (timedelta(minutes=30), "in", 2),
    (timedelta(hours=2), "in", 3),
    (timedelta(hours=2), "out", 1),
    (timedelta(minutes=5), "in", 0),
])
def test_recent_contacts_counts_inside_the_window(window: timedelta, direction: str, count: int) -> None:
    entries = [entry(50), entry(40), entry(41, "out"), entry(-30), entry(-500), entry(90)]
    assert recent_contacts(entries, T0 + timedelta(hours=1), window, direction) == count


@pytest.mark.parametrize(("summaries", "found"), [
    ([summary("con_1", 50), summary("con_2", 40)], "con_1"),
    ([summary("con_1", 50, status="resolved"), summary("con_2", 40)], "con_2"),
    ([summary("con_1", 50, status="closed")], None),
    ([summary("con_1", -600)], None),  # too long ago to be sticky
    ([], None),
])
def test_open_conversation_is_the_latest_active_one(summaries: list[ConversationSummary],
                                                   found: str | None) -> None:
    got = open_conversation(summaries, T0 + timedelta(hours=1), timedelta(hours=8))
    assert (got.conversation_id if got else None) == found


def test_stale_names_all_but_the_most_recent() -> None:
    summaries = [summary("con_1", 1), summary("con_3", 3), summary("con_2", 2)]
    assert stale(summaries, keep=2) == ["con_1"]
    assert stale(summaries, keep=5) == []


def test_stored_lines_and_summaries_read_back_newest_first() -> None:
    store = HistoryStore("t")
    raw_lines = [msgspec.json.encode(Line(ADA, entry(m))) for m in (3, 2)]
    raw_recent = [msgspec.json.encode(summary(c, m)) for c, m in (("con_1", 1), ("con_2", 2))]
    assert store.parse_read([raw_lines, []]) == [(entry(3), entry(2)), ()]
    [recent] = store.parse_recent([raw_recent])
    assert [s.conversation_id for s in recent] == ["con_2", "con_1"]
    assert store.parse_lines([raw_lines])[0][0] == Line(ADA, entry(3))
