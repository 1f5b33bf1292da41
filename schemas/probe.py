"""Synthetic probes (`sb.probe.v1`): a marked message through a channel's real path, timed to routed.

A probe's text carries a marker, `[sb-probe:<probe id>.<channel>.<sent ms>.<signature>]`,
signed with a key derived from the reply-token key for this purpose alone, so only
Switchboard can make one: a customer who writes a marker-shaped line (or replays an old
probe's) is an ordinary customer. Intake recognises a well-signed, fresh marker on the
channel it names and takes the message off the customer path: the brain decides its
route without remembering anything and reports it here instead of routing it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta
from typing import Literal

import msgspec

__all__ = ["MAX_AGE", "ProbeEvent", "ProbeKind", "ProbeMark", "find_mark", "make_marker", "probe_key"]

# an older marker is history, not a probe: whoever shows it is treated as a customer
MAX_AGE = timedelta(hours=1)
_MARKER = re.compile(r"\[sb-probe:(prb_[0-9a-f]{20})\.([a-z0-9_-]{1,32})\.(\d{1,15})\.([0-9a-f]{20})\]")

# routed: the brain decided its route; passed / slow / silent: the prober's verdict
ProbeKind = Literal["routed", "passed", "slow", "silent", "failed"]


class ProbeMark(msgspec.Struct, frozen=True, kw_only=True):
    """A verified probe marker: which probe, on which channel, sent when."""

    probe_id: str
    channel: str
    sent_at: datetime


class ProbeEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One probe's progress or verdict.

    Topic `sb.probe.v1`, keyed by `channel`. The brain reports `routed`; the prober that
    sent the probe judges it `passed`, `slow` (routed past the slow threshold), `silent`
    (not routed within the timeout) or `failed` (could not even be sent), with the reason.
    """

    event_id: str
    probe_id: str
    channel: str
    kind: ProbeKind
    sent_at: datetime
    at: datetime
    # sent → routed, when it was routed
    seconds: float | None = None
    queue: str | None = None
    reason: str = ""


def probe_key(key: bytes) -> bytes:
    """The key that signs probe markers, derived from the reply-token key."""
    return hmac.new(key, b"switchboard synthetic probe", hashlib.sha256).digest()


def _signature(body: str, key: bytes) -> str:
    return hmac.new(probe_key(key), body.encode(), hashlib.sha256).hexdigest()[:20]


def make_marker(probe_id: str, channel: str, sent_at: datetime, key: bytes) -> str:
    """The marker a probe message carries in its text."""
    body = f"{probe_id}.{channel}.{int(sent_at.timestamp() * 1000)}"
    return f"[sb-probe:{body}.{_signature(body, key)}]"


def find_mark(text: str, channel: str, key: bytes, now: datetime) -> ProbeMark | None:
    """The verified probe mark in a message's text, or None: unsigned, stale or for another channel."""
    if "[sb-probe:" not in text:  # the common case, without a regex
        return None
    for match in _MARKER.finditer(text):
        probe_id, marked, millis, signature = match.groups()
        body = f"{probe_id}.{marked}.{millis}"
        if not hmac.compare_digest(signature, _signature(body, key)) or marked != channel:
            continue
        try:
            sent_at = datetime.fromtimestamp(int(millis) / 1000, UTC)
        except (ValueError, OverflowError, OSError):  # past year 9999: no probe of ours
            continue
        if timedelta(minutes=-5) <= now - sent_at <= MAX_AGE:  # a little clock skew between hosts
            return ProbeMark(probe_id=probe_id, channel=channel, sent_at=sent_at)
    return None
