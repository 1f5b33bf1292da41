"""Realistic inbound messages for benchmarks: real support requests, many senders."""

from __future__ import annotations

import csv
import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from schemas.codec import encode
from schemas.identity import Identity
from schemas.ids import inbound_event_id
from schemas.inbound import ApiExtras, InboundMessage

__all__ = ["SUPPORT_TEXT", "Workload"]

SUPPORT_TEXT = (Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "support-text"
                / "bitext-customer-support-6480.csv")


def _texts() -> list[str]:
    if SUPPORT_TEXT.exists():
        with SUPPORT_TEXT.open(newline="", encoding="utf-8") as f:
            return [row["instruction"] for row in csv.DictReader(f)]
    # without the shared fixtures, text of the same order of length
    return [f"my order {n} has not arrived, can you check where it is?" for n in range(500)]


class Workload:
    """Makes encoded InboundMessages stamped with the time they are made (`clock`: a test's own)."""

    def __init__(self, run: str, customers: int = 2_000, seed: int = 7,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._run = run
        self._clock = clock
        self._texts = _texts()
        self._rng = random.Random(seed)
        self._customers = customers
        self._n = 0

    def next(self) -> tuple[bytes, bytes]:
        """The next (key, value) to publish; received_at is now, for latency."""
        self._n += 1
        who = self._rng.randrange(self._customers)
        sender = Identity(kind="email", value=f"customer{who}@example.com")
        native = f"{self._run}-{self._n}"
        message = InboundMessage(
            event_id=inbound_event_id("api", native),
            channel="api",
            native_id=native,
            thread_key=str(sender),
            sender=sender,
            received_at=self._clock(),
            text=self._texts[self._n % len(self._texts)],
            subject=None,
            extras=ApiExtras(metadata={"bench": self._run}),
        )
        return message.thread_key.encode(), encode(message)
