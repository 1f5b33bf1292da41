"""A conversation's SLA state (`SlaClock`), apart from the compiled rules in processors.brain.sla.

A Struct that is decoded stays Python (processors.compiled says why).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

from processors.brain.priority import Target

__all__ = ["SlaClock"]


class SlaClock(msgspec.Struct, frozen=True, kw_only=True):
    """A conversation's SLA state: the target owed, open time used, and what has fired."""

    # a msgspec Struct, so the watcher keeps it in Redis with the one codec

    tier: str
    urgency: str
    queue: str
    target: Target | None = None
    budget: timedelta = timedelta(0)
    used: timedelta = timedelta(0)
    running_since: datetime | None = None
    paused: bool = False
    replied: bool = False
    resolved: bool = False
    disabled: bool = False
    fired: frozenset[str] = frozenset()
