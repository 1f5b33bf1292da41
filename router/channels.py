"""Which connectors this process runs: every configured channel's source and sender.

A channel is configured when the settings carry its section (e.g. `SB_EMAIL`); the
registry says which classes implement it. Adding a channel is a connector package, a
registry line and a settings field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connectors.base import CursorStore, Inbound, Outbound
from connectors.registry import CONNECTORS
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
    """Instantiate (without I/O) every connector whose settings section is present."""
    sources: dict[str, Inbound[Any]] = {}
    senders: dict[str, Outbound[Any]] = {}
    for name, spec in CONNECTORS.items():
        section = settings.channel_settings(name)
        if section is None:
            continue
        if spec.inbound is not None:
            sources[name] = spec.inbound(section, cursors)
        if spec.outbound is not None:
            senders[name] = spec.outbound(section)
    return Channels(sources, senders)
