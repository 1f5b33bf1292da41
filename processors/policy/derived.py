"""Derived: values worked out once from a long-lived object (a policy, a calendar), then reused.

Routing asks the same questions of the same policy for every message: which queues a
channel and tier can match, which urgency rules apply, when a clock's thresholds fall.
The answers depend only on the policy and a few keys, so each is worked out once. An
entry is found by the object's id and kept only for that very object: a reloaded policy
is a new object, and even at a recycled id it never reads its predecessor's answers.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["Derived"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Derived(Generic[K, V]):
    """Values by (owner, key), for as long as that owner is the one asked about; bounded."""

    def __init__(self, kept: int) -> None:
        self._kept = kept
        self._seen: dict[tuple[int, K], tuple[object, V]] = {}

    def get(self, owner: object, key: K) -> V | None:
        """The value worked out for this very owner and key, or None."""
        found = self._seen.get((id(owner), key))
        return found[1] if found is not None and found[0] is owner else None

    def put(self, owner: object, key: K, value: V) -> V:
        """Remember `value` for the owner and key; returns it."""
        # owners come and go with reloads: past the bound, start again rather than grow
        if len(self._seen) >= self._kept:
            self._seen.clear()
        self._seen[(id(owner), key)] = (owner, value)
        return value
