"""Which channels this process runs: every configured channel's source and sender.

A channel runs when its settings section is present (or it is on by default); the
registry says which classes implement it. Adding a channel is a connector package and a
registry line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connectors.base import CursorStore, Inbound, Outbound
from connectors.registry import CHANNELS
from processors.send.stage import SendFn
from router.settings import Settings

__all__ = ["Channels", "configured"]


@dataclass(frozen=True)
class Channels:
    """The sources and senders this process runs, by channel name."""

    sources: Mapping[str, Inbound[Any]]
    senders: Mapping[str, Outbound[Any]]

    def send_functions(self) -> dict[str, SendFn]:
        """The send stage's view: channel name → send coroutine."""
        return {name: sender.send for name, sender in self.senders.items()}


def configured(settings: Settings, cursors: CursorStore) -> Channels:
    """Instantiate (without I/O) every channel whose settings section is present."""
    sources: dict[str, Inbound[Any]] = {}
    senders: dict[str, Outbound[Any]] = {}
    for name, spec in CHANNELS.items():
        section = settings.section(spec.section, spec.settings)
        if section is None:
            continue
        if spec.inbound is not None:
            sources[name] = spec.inbound(section, cursors)
        if spec.outbound is not None:
            senders[name] = spec.outbound(section)
    return Channels(sources, senders)
