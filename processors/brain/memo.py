"""Memo: priorities and due times worked out once per (tier, urgency, queue, minute), then reused.

A batch's messages share a handful of tiers, urgencies and queues and arrive within the
same minute, yet each walked the calendar and wrote its reasons afresh (a sixth of the
brain's time). Business hours begin and end on whole minutes, and the time zones in use
are whole-minute offsets, so within one minute of arrival a due time either moves with
the arrival (open all minute: the same budget, the same closed gaps) or does not move at
all (closed all minute: the clock starts at the same opening). Each entry proves which
by computing the minute's first and last microsecond — the open time a message owes is
non-decreasing in its arrival — and a minute that is neither is never memoised.

Entries live for the current minute and the one before by the injected clock, and a
new policy starts an empty memo: the results are exactly `priority.due`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from processors.brain import priority
from processors.brain.priority import Due, Priority, Target
from processors.policy.model import Policy
from schemas.codec import isoformat

__all__ = ["Memo"]

_MINUTE = timedelta(minutes=1)
_LAST = _MINUTE - timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# a busy minute's keys are a few dozen; this only bounds a flood of old arrival times
_MAX_ENTRIES = 4096


@dataclass(frozen=True, slots=True)
class _Minute:
    """A minute's due time at its first instant, whether it moves with arrival, and its reasons."""

    start: datetime
    first: Due
    moves: bool
    # the reasons before the one naming the due time, that one's words up to the time, the rest
    head: tuple[str, ...]
    lead: str
    tail: tuple[str, ...]


Key = tuple[Target, str, str, str, int]


class Memo:
    """Priorities and due times for one policy, reused within a minute of arrival."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._policy: Policy | None = None
        self._ranks: dict[tuple[str, str], Priority] = {}
        self._minutes: dict[Key, _Minute | None] = {}
        self._windows: list[timedelta] = []
        self._minute = 0

    def _fresh(self, policy: Policy) -> None:
        """Forget everything of another policy."""
        if policy is not self._policy:
            self._policy = policy
            self._ranks.clear()
            self._minutes.clear()
            self._windows.clear()

    def _expire(self) -> None:
        """Forget minutes the clock has left behind (on a miss only: hits never read the clock)."""
        minute = _minute_of(self._clock())
        if minute != self._minute or len(self._minutes) > _MAX_ENTRIES:
            self._minute = minute
            self._minutes = {k: v for k, v in self._minutes.items() if k[4] >= minute - 1}
            if len(self._minutes) > _MAX_ENTRIES:
                self._minutes.clear()

    def contact_window(self, policy: Policy) -> timedelta:
        """`policy.contact_window`, once per policy."""
        if policy is not self._policy:
            self._fresh(policy)
        if not self._windows:
            self._windows.append(policy.contact_window)
        return self._windows[0]

    def priority(self, tier: str, urgency: str, policy: Policy) -> Priority:
        """`priority.priority`, once per tier and urgency."""
        if policy is not self._policy:
            self._fresh(policy)
        found = self._ranks.get((tier, urgency))
        if found is None:
            found = self._ranks[tier, urgency] = priority.priority(tier, urgency, policy)
        return found

    def due(self, target: Target, start: datetime, *, tier: str, urgency: str, queue: str,
            policy: Policy) -> Due:
        """`priority.due`, with one calendar walk per minute of arrival."""
        if policy is not self._policy:
            self._fresh(policy)
        key: Key = (target, tier, urgency, queue, _minute_of(start))
        if key in self._minutes:
            entry = self._minutes[key]
        else:
            self._expire()
            entry = self._minutes[key] = _learn(key, policy)
        if entry is None:
            return priority.due(target, start, tier=tier, urgency=urgency, queue=queue, policy=policy)
        if not entry.moves:
            return entry.first
        at = entry.first.at + (start - entry.start)
        return Due(at, entry.first.target, entry.first.calendar,
                   (*entry.head, entry.lead + isoformat(at), *entry.tail))


def _minute_of(at: datetime) -> int:
    return (at - _EPOCH) // _MINUTE


def _learn(key: Key, policy: Policy) -> _Minute | None:
    """One minute's entry, or None when its due time neither moves with arrival nor stays."""
    target, tier, urgency, queue, minute = key
    start = _EPOCH + minute * _MINUTE
    first = priority.due(target, start, tier=tier, urgency=urgency, queue=queue, policy=policy)
    last = priority.due(target, start + _LAST, tier=tier, urgency=urgency, queue=queue, policy=policy)
    if last.at == first.at:
        return _Minute(start, first, False, (), "", ())
    if last.at - first.at != _LAST:
        return None
    # the reason that names the due time is the one ending in it: rebuilt per message
    stamp = isoformat(first.at)
    at = next((i for i, r in enumerate(first.reasons) if r.endswith(stamp)), None)
    if at is None:
        return None
    named = first.reasons[at]
    return _Minute(start, first, True, first.reasons[:at], named[: len(named) - len(stamp)],
                   first.reasons[at + 1:])
