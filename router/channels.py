"""Which channels this process runs: every configured channel's source and sender.

A channel runs when its settings section is present (or it is on by default); the
registry says which classes implement it. A channel without a sender of its own that
names others in `reply_via` is answered through the first of them that runs here and
can address the customer (connectors/spec.py). Adding a channel is a connector package
and a registry line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from connectors.base import CursorStore, Inbound, Outbound
from connectors.registry import CHANNELS
from processors.send.stage import SendFn
from router.settings import Settings
from schemas.outbound import DeliveryReceipt, OutboundMessage

__all__ = ["Channels", "configured", "running"]


@dataclass(frozen=True)
class Channels:
    """The sources and senders this process runs, by channel name, and who answers for whom."""

    sources: Mapping[str, Inbound[Any]]
    senders: Mapping[str, Outbound[Any]]
    # channel → the running channels that answer for it, in order of preference
    reply_via: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # every channel configured here, with or without a source or sender
    running: frozenset[str] = frozenset()

    def send_functions(self) -> dict[str, SendFn]:
        """The send stage's view: channel name → send coroutine."""
        found: dict[str, SendFn] = {}
        for name, sender in self.senders.items():
            keeps = (spec := CHANNELS.get(name)) is not None and spec.transcripts
            found[name] = sender.send if keeps else _recordless(name, sender.send)
        for name, via in self.reply_via.items():
            found.setdefault(name, _recordless(name, self._through(name, via)))
        return found

    def _through(self, name: str, via: tuple[str, ...]) -> SendFn:
        """A sender for `name` that hands each reply to the first channel able to reach its recipient."""

        async def send(message: OutboundMessage) -> DeliveryReceipt:
            kind = message.recipient.kind
            for target in via:
                if kind in CHANNELS[target].addresses:
                    return await self.senders[target].send(msgspec.structs.replace(message, channel=target))
            return DeliveryReceipt(
                reply_id=message.reply_id, conversation_id=message.conversation_id, channel=name,
                status="failed", at=datetime.now(UTC),
                reason=f"{name} replies go by {' or '.join(via)}, which cannot reach a {kind} identity")

        return send


def _recordless(name: str, send: SendFn) -> SendFn:
    """A sender that keeps no conversation record: a transcript is settled, never sent to the customer."""

    async def guarded(message: OutboundMessage) -> DeliveryReceipt:
        if message.kind != "transcript":
            return await send(message)
        return DeliveryReceipt(
            reply_id=message.reply_id, conversation_id=message.conversation_id, channel=name, status="sent",
            at=datetime.now(UTC), kind="transcript", reason=f"not recorded: {name} keeps no transcript")

    return guarded


def running(settings: Settings) -> frozenset[str]:
    """The channels these settings run: a section present, or on by default."""
    return frozenset(name for name, spec in CHANNELS.items()
                     if settings.section(spec.section, spec.settings) is not None)


def configured(settings: Settings, cursors: CursorStore) -> Channels:
    """Instantiate (without I/O) every channel whose settings section is present."""
    sources: dict[str, Inbound[Any]] = {}
    senders: dict[str, Outbound[Any]] = {}
    names: list[str] = []
    for name, spec in CHANNELS.items():
        section = settings.section(spec.section, spec.settings)
        if section is None:
            continue
        names.append(name)
        if spec.inbound is not None:
            sources[name] = spec.inbound(section, cursors)
        if spec.outbound is not None:
            senders[name] = spec.outbound(section)
    reply_via = {name: via for name in names if name not in senders
                 and (via := tuple(v for v in CHANNELS[name].reply_via if v in senders))}
    return Channels(sources, senders, reply_via, frozenset(names))
