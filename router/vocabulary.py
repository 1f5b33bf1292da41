"""The names a policy may use, from the connector registries: channels and agents' tool kinds."""

from __future__ import annotations

from connectors.registry import CHANNELS, TOOLS
from processors.policy.model import Vocabulary

__all__ = ["VOCABULARY"]

VOCABULARY = Vocabulary(channels=frozenset(CHANNELS),
                        tools={kind: spec.destination for kind, spec in TOOLS.items()})
