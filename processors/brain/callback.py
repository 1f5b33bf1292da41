"""Reply mode: how the team answers this customer — in writing, or by calling them back; pure.

The policy chooses per tier among the ways the customer's channel offers
(`tiers.<tier>.reply_mode`, checked at load against what each connector declares), so
nothing here asks which channel it is. A callback is a task for the team: the number
to call — the customer's own phone identity, the sender's first, then one on file — and
the time it is due, the tier's first-response due time. It is done when an agent marks
the call made (`called_back`), which counts as the first response.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

import msgspec

from processors.policy.model import Policy
from schemas.identity import Identity
from schemas.routed import CallbackTask, Decision, ReplyMode

__all__ = ["Plan", "decide", "number_to_call"]

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


class Plan(msgspec.Struct, frozen=True):
    """The reply mode, the callback task when it is one, and why (a written reply needs no why)."""

    mode: ReplyMode
    task: CallbackTask | None
    decision: Decision | None


def number_to_call(sender: Identity, identities: Sequence[Identity]) -> str | None:
    """The E.164 number to call: the sender's own when it is one, else the first on file."""
    for identity in (sender, *identities):
        if identity.kind == "phone" and _E164.match(identity.value):
            return identity.value
    return None


def decide(*, channel: str, tier: str, sender: Identity, identities: Sequence[Identity],
           due: datetime | None, policy: Policy) -> Plan:
    """How this message's conversation is answered, by the policy's tier setting."""
    mode = policy.reply_mode(channel, tier)
    if mode == "text":
        return Plan("text", None, None)
    number = number_to_call(sender, identities)
    when = due.isoformat(timespec="minutes") if due else "no due time"
    reasons = [f"reply_mode=callback: tier {tier} on {channel} is called back "
               f"(tiers.{tier}.reply_mode), due {when} by the tier's SLA"]
    if number is None:
        reasons.append("no number to call: withheld, and none on file; answer in writing if you can")
    else:
        reasons.append(f"call back {number}; mark it done when you have reached them")
    return Plan("callback", CallbackTask(number=number, due=due),
                Decision(stage="reply_mode", outcome="callback", reasons=tuple(reasons)))
