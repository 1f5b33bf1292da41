"""What support learned in a window, for the business (`sb.insights.v1`): no customer text."""

from __future__ import annotations

from datetime import datetime

import msgspec

__all__ = ["BreachCause", "Count", "FollowUps", "GuardRule", "InsightDigest", "RepeatContact",
           "SentimentPoint"]


class Count(msgspec.Struct, frozen=True, kw_only=True):
    """How many messages had one value (an intent, a queue, a channel)."""

    key: str
    messages: int


class SentimentPoint(msgspec.Struct, frozen=True, kw_only=True):
    """The customers' mood in one slice of the window: VADER compound scores, -1..1."""

    start: datetime
    messages: int
    mean: float | None
    # messages at or below -0.05, VADER's own line for "negative"
    negative: int


class RepeatContact(msgspec.Struct, frozen=True, kw_only=True):
    """A customer who wrote more than once in the window."""

    customer_id: str
    messages: int
    conversations: int
    channels: tuple[str, ...]


class BreachCause(msgspec.Struct, frozen=True, kw_only=True):
    """Breaches that share a queue, a target and a tier/urgency: where promises are broken."""

    cause: str
    breaches: int
    queue: str
    target: str
    tier: str
    urgency: str


class GuardRule(msgspec.Struct, frozen=True, kw_only=True):
    """A reply-guard rule: replies it held back, and replies it let through with a warning."""

    rule: str
    held: int
    warned: int


class FollowUps(msgspec.Struct, frozen=True, kw_only=True):
    """What came of the "is it really solved?" follow-ups."""

    sent: int = 0
    confirmed: int = 0
    not_solved: int = 0
    closed_without_answer: int = 0


class InsightDigest(msgspec.Struct, frozen=True, kw_only=True):
    """Volumes, mood, repeats, broken promises, held replies and follow-ups over one window.

    Topic `sb.insights.v1`, keyed by `digest_id` (`<since>/<until>`): a digest made again
    for the same window has the same key, so a compacted topic keeps the latest.
    """

    digest_id: str
    since: datetime
    until: datetime
    generated_at: datetime
    messages: int
    conversations: int
    by_intent: tuple[Count, ...]
    by_queue: tuple[Count, ...]
    by_channel: tuple[Count, ...]
    sentiment: tuple[SentimentPoint, ...]
    repeat_customers: int
    repeat_messages: int
    top_repeat: tuple[RepeatContact, ...]
    breaches: int
    breach_causes: tuple[BreachCause, ...]
    held: int
    guard: tuple[GuardRule, ...]
    follow_ups: FollowUps
    # records read per topic, and those that could not be read
    records: dict[str, int] = {}
    skipped: int = 0
