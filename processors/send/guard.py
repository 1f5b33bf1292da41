"""The reply guard: which of the policy's rules an agent's reply breaks, and what that means.

Pure: the phrases were compiled once when the policy loaded, so a check is one regex
scan of the reply per rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from processors.policy.model import GuardRule
from schemas.outbound import GuardFlag

__all__ = ["COLLISION", "GuardAction", "check", "collision", "verdict"]

GuardAction = Literal["send", "warn", "hold"]
COLLISION = "collision"


def check(text: str, rules: Sequence[GuardRule], *, resolved: bool) -> tuple[GuardFlag, ...]:
    """One flag per rule whose phrases occur in `text`, with every phrase it found."""
    flags = []
    for rule in rules:
        # upselling is fine once the problem is solved, not before
        if rule.unresolved_only and resolved:
            continue
        matched = rule.phrases.find_all(text)
        if matched:
            flags.append(GuardFlag(rule=rule.name, action=rule.action, matched=matched, reason=rule.reason))
    return tuple(flags)


def collision(author: str | None, agent: str | None) -> GuardFlag | None:
    """A warning when another agent already answers the conversation this reply is for."""
    if not author or not agent or author == agent:
        return None
    return GuardFlag(rule=COLLISION, action="warn", matched=(agent,),
                     reason=f"{agent} is already answering this conversation")


def verdict(flags: Iterable[GuardFlag]) -> GuardAction:
    """Hold if any flag holds, warn if any flag warns, else send."""
    actions = {flag.action for flag in flags}
    return "hold" if "hold" in actions else "warn" if actions else "send"
