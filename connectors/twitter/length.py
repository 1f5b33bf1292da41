"""How long X counts a text: 280 weighted characters, URLs 23, CJK and emoji 2, after NFC.

Counted by twitter-text's own rules through `twitter-text-parser` (its v3 configuration,
checked against twitter-text's conformance cases in tests/fixtures/x/twitter-text/), never
by `len()`.
"""

from __future__ import annotations

from twitter_text import extract_urls, parse_tweet

__all__ = ["MAX_WEIGHTED", "fits", "has_url", "weighted_length"]

MAX_WEIGHTED = 280


def weighted_length(text: str) -> int:
    """X's weighted length of `text`."""
    return int(parse_tweet(text).weightedLength)


def fits(text: str) -> bool:
    """Whether X takes `text` as one post: not empty, not over 280 weighted, no invalid characters."""
    return bool(parse_tweet(text).valid)


def has_url(text: str) -> bool:
    """Whether `text` carries a link: X prices such a post higher."""
    return bool(extract_urls(text))
