"""Dedupe: each event id is claimed once in Redis; a later copy is dropped and counted.

A claim records which Kafka record (topic/partition/offset) made it. When a worker dies
after claiming but before its offsets were committed, the same record comes back: its
claim is its own, so it is processed again rather than lost. Any other record with the
same event id is a true duplicate.
"""

from __future__ import annotations

from enum import Enum

from processors.stores.claims import DONE, Claim

__all__ = ["Novelty", "decide"]


class Novelty(Enum):
    """What to do with one message after its claim."""

    NEW = "new"
    REPLAY = "replay"
    DUPLICATE = "duplicate"


def decide(claim: Claim, previous: bytes | None) -> tuple[Novelty, str]:
    """Judge one claim from what Redis held before it, with the reason."""
    if previous is None:
        return Novelty.NEW, f"event {claim.event_id} first seen at {claim.owner}"
    holder = previous.decode()
    if holder == DONE + claim.owner:
        return Novelty.DUPLICATE, f"event {claim.event_id} already done by {claim.owner} before a restart"
    if holder == claim.owner:
        return Novelty.REPLAY, f"event {claim.event_id} re-read at {claim.owner} after a restart"
    return Novelty.DUPLICATE, f"event {claim.event_id} already claimed by {holder}"
