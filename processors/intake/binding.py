"""What an identity's key holds (`Binding`), apart from the compiled rules in processors.intake.identify.

A Struct that is decoded stays Python (processors.compiled says why).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

__all__ = ["Binding"]


class Binding(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What an identity's key holds: its customer, since when, and how it got there."""

    customer_id: str
    since: datetime
    how: Literal["seen", "import", "link", "stated", "unlink"] = "seen"
    # the message that first showed it, or the id of the link event that put it here
    event_id: str | None = None
    previous: str | None = None
    actor: str | None = None
    evidence: str | None = None
    # the identity whose message stated this one
    via: str | None = None
