"""Event claims in Redis: `<ns>:{p<N>}:claim:<event id>` names the Kafka record that claimed it.

A claim becomes `done:<record>` once Kafka holds that record's outputs (see
processors.intake.dedupe for what each state means).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from processors.stores.bulk import queue_claim_many, queue_set_many
from processors.stores.tags import UNTAGGED, Tags

__all__ = ["DONE", "Claim", "ClaimStore"]


class Claim(msgspec.Struct, frozen=True):
    """An event id and the record that claims it."""

    event_id: str
    owner: str


DONE = "done:"


class ClaimStore:
    """Claims event ids in Redis; the caller runs the pipeline, once per batch."""

    def __init__(self, *, namespace: str, ttl_seconds: int, tags: Tags = UNTAGGED) -> None:
        self._ns = namespace
        self._tags = tags
        self._ttl = ttl_seconds

    def key(self, event_id: str) -> str:
        """The key of an event's claim, tagged by the event id's partition."""
        return f"{self._ns}:{self._tags.of(event_id)}claim:{event_id}"

    def queue(self, pipe: Any, claims: Sequence[Claim]) -> None:
        """Add the batch's claims to a pipeline as one command.

        Its answer lists, per claim, what the key held before (None: the claim is ours).
        """
        queue_claim_many(pipe, [self.key(c.event_id) for c in claims],
                         [c.owner for c in claims], self._ttl)

    def queue_done(self, pipe: Any, claims: Sequence[Claim]) -> None:
        """Mark claims done once Kafka holds their outputs: a replay of them is then a duplicate."""
        queue_set_many(pipe, [(self.key(c.event_id), DONE + c.owner) for c in claims], self._ttl)
