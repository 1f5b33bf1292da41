"""The routing chain's two stages over one Redis, built as a worker builds them, for benches and tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from processors.brain.stage import Brain, Stores
from processors.brain.thread import ThreadRules
from processors.intake.stage import Intake
from processors.policy.model import Policy
from processors.stores.cards import CardStore
from processors.stores.claims import ClaimStore
from processors.stores.clocks import ClockStore
from processors.stores.conversations import ConversationStore
from processors.stores.directory import Directory
from processors.stores.history import HistoryStore
from processors.stores.identities import IdentityStore
from processors.stores.tags import Tags
from processors.watch.lifecycle_watch import LifecycleSchedule

__all__ = ["Chain", "chain"]


@dataclass(frozen=True, slots=True)
class Chain:
    """Intake and brain in one namespace, and the stores a caller reads back."""

    intake: Intake
    brain: Brain
    history: HistoryStore
    identities: IdentityStore


def chain(redis: Any, ns: str, tags: Tags, policy: Policy, token_key: bytes, *,
          clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Chain:
    """Intake and brain in namespace `ns`, their keys tagged as `tags` says; the brain's time from `clock`."""
    history = HistoryStore(ns, tags=tags)
    identities = IdentityStore(ns, history)
    cards = CardStore(ns, 3600, tags)
    intake = Intake(redis, ClaimStore(namespace=ns, ttl_seconds=600, tags=tags), identities, token_key,
                    cards=cards, clock=clock)
    brain = Brain(redis, Stores(
        claims=ClaimStore(namespace=f"{ns}:routed", ttl_seconds=600, tags=tags),
        threads=ConversationStore(ns, 3600, tags), history=history, directory=Directory(identities),
        clocks=ClockStore(ns, tags), cards=cards, schedule=LifecycleSchedule(ns),
        backlog_key=f"{ns}:backlog"),
        lambda: policy, ThreadRules(token_key=token_key), clock)
    return Chain(intake, brain, history, identities)
