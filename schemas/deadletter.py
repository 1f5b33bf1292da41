"""DeadLetter: anything that could not be parsed or processed (`sb.deadletter.v1`)."""

from __future__ import annotations

from datetime import datetime

import msgspec

__all__ = ["DeadLetter"]


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """The original bytes, kept whole, and why they were set aside.

    Topic `sb.deadletter.v1`, keyed by `stage` so each stage's rejects stay in order.
    """

    stage: str
    reason: str
    original: bytes
    at: datetime
    channel: str | None = None
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
