"""What the dispatch stage needs of an agents' tool: to deliver a handoff, nothing more.

Connectors implement it (`connectors.base.AgentTool`); processors never import them.
"""

from __future__ import annotations

from typing import Protocol

from schemas.handoff import Handoff

__all__ = ["HandoffTarget"]


class HandoffTarget(Protocol):
    """Delivers one handoff and returns the tool's thread reference for the conversation."""

    async def deliver(self, handoff: Handoff) -> str:
        """Deliver, or raise TransientError (worth a retry) / PermanentError (not)."""
        ...
