"""The names a policy may use, from the connector registries: channels and agents' tool kinds."""

from __future__ import annotations

from connectors.registry import CHANNELS, TOOLS
from processors.policy.model import Vocabulary

__all__ = ["VOCABULARY", "vocabulary"]


def vocabulary() -> Vocabulary:
    """The registries as they are now: every registered channel and tool kind."""
    return Vocabulary(channels=frozenset(CHANNELS),
                      tools={kind: spec.destination for kind, spec in TOOLS.items()},
                      reply_modes={name: spec.reply_modes for name, spec in CHANNELS.items()})


# the registries as shipped, for callers that load a policy once
VOCABULARY = vocabulary()
