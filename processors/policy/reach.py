"""Reach: which customers each channel's replies can get to here, by the customer's identity kind.

An acknowledgement or status update that cannot arrive is not planned at all: an API
caller known only by a phone number, where the API answers by email, would otherwise
only make a failed delivery. The router builds this from the connectors' specs (their
own sender and `addresses`, or the channels they answer through, `reply_via`) and the
channels that run; the processors never ask which channel it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Reach"]


@dataclass(frozen=True, slots=True)
class Reach:
    """Channel → the identity kinds its replies reach, and the channels that carry them."""

    # None: not known (a policy loaded without the registry); every customer counts as reachable
    kinds: Mapping[str, frozenset[str]] | None = None
    # channel → the channels that send its replies (itself, or those it answers through)
    via: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def unreachable(self, channel: str, kind: str) -> str | None:
        """Why a customer known by a `kind` identity on `channel` cannot be written to, or None."""
        if self.kinds is None:
            return None
        kinds = self.kinds.get(channel)
        if kinds is None:
            return f"nothing running here sends {channel} replies"
        if kind in kinds:
            return None
        carriers = " or ".join(self.via.get(channel, (channel,)))
        return (f"{channel} replies go by {carriers}, which reaches "
                f"{', '.join(sorted(kinds)) or 'no one'} identities, not this customer's {kind} one")
