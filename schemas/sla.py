"""SLA events (`sb.sla.v1`): warnings, breaches, status updates and escalation steps."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

__all__ = ["SlaEvent", "SlaKind"]

SlaKind = Literal["warn", "breach", "status_update", "escalate", "cleared"]


class SlaEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A service-level clock reached a point that calls for action.

    Topic `sb.sla.v1`, keyed by `customer_id`.
    """

    event_id: str
    kind: SlaKind
    conversation_id: str
    customer_id: str
    target: Literal["first_response", "next_response"]
    due_at: datetime
    at: datetime
    reasons: tuple[str, ...]
    step: int | None = None
    action: str | None = None
    action_target: str | None = None
