"""Thread: which conversation a message belongs to, with the evidence for it.

Signals, strongest first:
1. a signed token of ours in an earlier message this one cites (`cites`: our Message-IDs in
   In-Reply-To / References carry one);
2. the token the message itself carries (`reply_token`: our plus-addressed Reply-To, a
   `[ref:…]` line the customer kept), or a continuation token bound to the sender's address
   (its expiry and the identity link it brings are intake's business);
3. the channel's own thread (an email thread root, an API thread id) already known.
Tokens are verified, so a forged one is ignored. A message joins only a conversation of
its own customer (or of an identity linked to them): a valid token or a known thread of
somebody else's conversation — a forwarded mail, a leaked Message-ID — opens a new
conversation instead, flagged, so an agent's next reply can never go to a newcomer.
When none holds, `processors.sticky`
decides whether the customer is continuing a recent conversation on any channel — by
time and queue, not by subject: subjects differ more often than not for the same case,
and match for different ones.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field

import msgspec

from schemas.ids import new_conversation_id
from schemas.inbound import InboundMessage
from schemas.routed import Decision
from schemas.tokens import check_continuation, continuation_key, find_tokens, verify_token

__all__ = [
    "ThreadContext",
    "ThreadDecision",
    "ThreadRules",
    "decide",
    "guarded",
    "joined",
    "new_conversation_id",
    "normalise_subject",
]

_PREFIX = re.compile(r"^\s*((re|aw|sv|antw|vs|fw|fwd|wg|tr)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ThreadRules:
    """What threading needs: the key our reply tokens are signed with."""

    token_key: bytes
    # derived once, not per message: an HMAC of the key
    continuation_key: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Derive the continuation tokens' key."""
        object.__setattr__(self, "continuation_key", continuation_key(self.token_key))


class ThreadContext(msgspec.Struct, frozen=True):
    """What Redis knows that bears on one message; None where it knows nothing."""

    known_thread: str | None = None


class ThreadDecision(msgspec.Struct, frozen=True):
    """The conversation a message belongs to, and why."""

    conversation_id: str
    joined: bool
    decision: Decision


def normalise_subject(subject: str | None) -> str:
    """The subject without reply/forward prefixes, spacing and case."""
    if not subject:
        return ""
    return " ".join(_PREFIX.sub("", subject).split()).casefold()


def _token_signal(message: InboundMessage, rules: ThreadRules) -> tuple[str, str] | None:
    key = rules.token_key
    for cited in message.cites:
        for token in find_tokens(cited.native_id):
            if conversation := verify_token(token, key):
                return conversation, f"{cited.via} matches our reply <{cited.native_id}>"
    if message.reply_token and (conversation := verify_token(message.reply_token, key)):
        return conversation, "the customer wrote to our reply address token"
    if not message.reply_token:
        return None  # no token at all: nothing to check
    continued = check_continuation(message.reply_token, message.sender.value, message.received_at,
                                   rules.continuation_key)
    if continued is not None and continued.verdict in ("verified", "expired"):
        return continued.conversation_id, "the sender answered with the continuation token mailed to them"
    return None


def _joined(conversation_id: str, outcome: str, reason: str) -> ThreadDecision:
    return ThreadDecision(conversation_id, True, Decision(
        stage="thread", outcome=outcome, reasons=(f"joined conversation {conversation_id}: {reason}",)))


def joined(message: InboundMessage, ctx: ThreadContext, rules: ThreadRules) -> ThreadDecision | None:
    """The conversation the strongest signal present names, or None when there is none."""
    # most messages carry no signal: routing then names a new conversation only if it needs one
    if found := _token_signal(message, rules):
        return _joined(found[0], "token", found[1])
    if ctx.known_thread:
        return _joined(ctx.known_thread, "channel_thread",
                       f"{message.channel} thread {message.thread_key!r} is already this conversation")
    return None


def decide(message: InboundMessage, ctx: ThreadContext, rules: ThreadRules) -> ThreadDecision:
    """Choose the conversation for one message from the strongest signal present."""
    if found := joined(message, ctx, rules):
        return found
    conversation_id = new_conversation_id(message.event_id)
    return ThreadDecision(conversation_id, False, Decision(
        stage="thread", outcome="new", reasons=(
            f"new conversation {conversation_id}: no token of ours and no known channel thread",)))


def guarded(threaded: ThreadDecision, message: InboundMessage, own: Collection[str]) -> ThreadDecision:
    """The decision, unless it joins a conversation that is not the customer's own: then a new one."""
    if not threaded.joined or threaded.conversation_id in own:
        return threaded
    conversation_id = new_conversation_id(message.event_id)
    return ThreadDecision(conversation_id, False, Decision(stage="thread", outcome="refused_join", reasons=(
        f"new conversation {conversation_id}: {threaded.decision.reasons[0]}, but that conversation "
        f"is not {message.sender}'s; not joined (flagged: a reference to another customer's thread)",)))
