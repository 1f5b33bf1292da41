"""Dedupe: each event id is claimed once in Redis; a later copy is dropped and counted.

A claim records which Kafka record (topic/partition/offset) made it. When a worker dies
after claiming but before its offsets were committed, the same record comes back: its
claim is its own, so it is processed again rather than lost. Any other record with the
same event id is a true duplicate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from processors.bulk import queue_claim_many, queue_set_many

__all__ = ["Claim", "ClaimStore", "Verdict", "decide"]


class Verdict(Enum):
    """What to do with one message after its claim."""

    NEW = "new"
    REPLAY = "replay"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class Claim:
    """An event id and the record that claims it."""

    event_id: str
    owner: str


def decide(claim: Claim, previous: bytes | None) -> tuple[Verdict, str]:
    """Judge one claim from what Redis held before it, with the reason."""
    if previous is None:
        return Verdict.NEW, f"event {claim.event_id} first seen at {claim.owner}"
    holder = previous.decode()
    if holder == DONE + claim.owner:
        return Verdict.DUPLICATE, f"event {claim.event_id} already done by {claim.owner} before a restart"
    if holder == claim.owner:
        return Verdict.REPLAY, f"event {claim.event_id} re-read at {claim.owner} after a restart"
    return Verdict.DUPLICATE, f"event {claim.event_id} already claimed by {holder}"


DONE = "done:"


class ClaimStore:
    """Claims event ids in Redis; the caller runs the pipeline, once per batch."""

    def __init__(self, *, namespace: str, ttl_seconds: int) -> None:
        self._prefix = f"{namespace}:claim:"
        self._ttl = ttl_seconds

    def queue(self, pipe: Any, claims: Sequence[Claim]) -> None:
        """Add the batch's claims to a pipeline as one command.

        Its answer lists, per claim, what the key held before (None: the claim is ours).
        """
        queue_claim_many(pipe, [self._prefix + c.event_id for c in claims],
                         [c.owner for c in claims], self._ttl)

    def queue_done(self, pipe: Any, claims: Sequence[Claim]) -> None:
        """Mark claims done once Kafka holds their outputs: a replay of them is then a duplicate."""
        queue_set_many(pipe, [(self._prefix + c.event_id, DONE + c.owner) for c in claims], self._ttl)
