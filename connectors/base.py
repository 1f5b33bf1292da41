"""The connector contract: an inbound part yields messages, an outbound part sends them.

A connector's inbound source hands out `Arrival`s; the runner puts each on Kafka
and only after Kafka has acknowledged it calls `commit(arrival.cursor)`, so a restart
neither loses nor repeats a message.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from pydantic import SecretStr

from schemas.deadletter import DeadLetter
from schemas.handoff import Handoff
from schemas.inbound import InboundMessage
from schemas.outbound import DeliveryReceipt, OutboundMessage

__all__ = [
    "AgentTool",
    "Arrival",
    "Client",
    "CursorStore",
    "Handoff",
    "Inbound",
    "Outbound",
    "Probe",
    "ProbeTarget",
    "cancel_tasks",
]

C = TypeVar("C")


async def cancel_tasks(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel tasks and wait for them, cancelling again if one swallowed the first."""
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=1.0)
    await asyncio.gather(*tasks, return_exceptions=True)


@dataclass(frozen=True, slots=True)
class Arrival:
    """One item from a source: a message or a dead letter, and the cursor it advances to."""

    item: InboundMessage | DeadLetter
    cursor: Any


class CursorStore(Protocol):
    """Where a source keeps its checkpoints (Redis in production); values are strings."""

    async def load(self, key: str) -> str | None:
        """The saved value of `key`, or None."""

    async def save(self, key: str, value: str) -> None:
        """Save `value` under `key`, durably."""


class Inbound(ABC, Generic[C]):
    """A source of customer messages. The constructor does no I/O; `start()` connects."""

    def __init__(self, settings: C, cursors: CursorStore) -> None:
        self.settings = settings
        self.cursors = cursors

    @abstractmethod
    async def start(self) -> None:
        """Connect and check the other side, raising AuthError or ConfigError early."""

    @abstractmethod
    async def stop(self) -> None:
        """Disconnect; safe to call twice."""

    @abstractmethod
    def messages(self) -> AsyncIterator[Arrival]:
        """Yield deliveries in order, resuming after the last committed cursor."""

    @abstractmethod
    async def commit(self, cursor: Any) -> None:
        """Record that everything up to `cursor` is safely in Kafka."""


class Client(ABC, Generic[C]):
    """An outside system we talk to: settings in, no I/O until `start()` makes the client once."""

    def __init__(self, settings: C) -> None:
        self.settings = settings

    @abstractmethod
    async def start(self) -> None:
        """Create the client and check the credentials."""

    @abstractmethod
    async def stop(self) -> None:
        """Close the client; safe to call twice."""


class Outbound(Client[C]):
    """A sender of messages to customers."""

    @abstractmethod
    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        """Send one message and say what became of it."""


class AgentTool(Client[C]):
    """An agents' tool (webhook, Slack, team mailbox) that routed conversations reach.

    `deliver` hands over one routed message, or a notice about the conversation (a send
    receipt, an SLA event), and returns the tool's thread reference for the conversation
    (a Slack thread ts; "" where the tool has none), so follow-ups land in the same place.
    It raises TransientError when a retry may succeed and PermanentError when it cannot.
    """

    @abstractmethod
    async def deliver(self, handoff: Handoff) -> str:
        """Deliver one item; returns the thread reference to use next time."""


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """Where a probe enters when its channel is pushed to us: our own HTTP API, and a token for it."""

    api_url: str
    api_token: SecretStr | None = field(default=None, repr=False)


class Probe(ABC):
    """A synthetic probe: one message carrying `text` through the channel's real path to us.

    `send` does its own I/O and closes its connections (probes are rare); it raises
    TransientError (or another SwitchboardError) with the reason when the message could
    not even be handed to the channel. What arrives is judged by Switchboard, not here.
    Once the probe was routed, `remove` takes what it left with the other side away (the
    mail in our mailbox, the public post), so probes do not pile up where people look.
    A channel whose every probe costs money says how often at most it may run.
    """

    # the shortest time between two probes of this channel; None: the router's interval
    min_interval_seconds: float | None = None

    @abstractmethod
    async def send(self, probe_id: str, text: str) -> None:
        """Send one probe message with `text` (it carries the marker); `probe_id` is unique."""

    async def remove(self, probe_id: str) -> None:
        """Take a routed probe's traces away from the channel; nothing to do by default."""
        return None
