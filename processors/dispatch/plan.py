"""Dispatch's pure decisions: which destinations, which card, and what a claim's state means.

Nothing here does I/O. `plan_batch` walks a batch in order, keeping each conversation's
card and destinations as they change, so a conversation's second message in one batch
is planned from its first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

import msgspec

from processors.dispatch.items import Item, receipt_notice
from processors.intake.continuation import TAG as CONTINUATION_TAG
from processors.policy.model import Policy
from processors.send.replies import reply_reference
from processors.stores.results import parse_result, result
from schemas.conversation import ConversationCard
from schemas.inbound import ReplyRef
from schemas.routed import RoutedConversation

__all__ = [
    "HandoffAction",
    "Plan",
    "card_for",
    "delivery_result",
    "delivery_verdict",
    "escalation_destinations",
    "notice_destinations",
    "plan_batch",
    "recorded",
    "route_destinations",
]



class HandoffAction(Enum):
    """What to do with one (item, destination) after its claim."""

    DELIVER = "deliver"
    REDELIVER = "redeliver"
    DONE = "done"
    # this record's own result, found again after a restart: its receipt is produced again
    REPEAT = "repeat"


def delivery_result(delivered: bool, owner: str, detail: str) -> str:
    """What a delivery's key holds once tried: the outcome, the record, and where or why."""
    return result("delivered" if delivered else "failed", owner, detail)


def recorded(previous: bytes) -> tuple[bool, str]:
    """Whether a result `delivery_result` wrote was a delivery, and where to (or why not)."""
    done = parse_result(previous)
    return done.status == "delivered", done.detail


def delivery_verdict(previous: bytes | None, owner: str) -> tuple[HandoffAction, str]:
    """Judge one delivery claim by `owner` (the record) from what its key held before."""
    if previous is None:
        return HandoffAction.DELIVER, "first attempt"
    state = previous.decode(errors="replace")
    if state.startswith("delivering:"):
        return HandoffAction.REDELIVER, (f"an earlier attempt ({state[11:]}) stopped before its result; "
                                         "delivered again with the same delivery id")
    done = parse_result(previous)
    if done.by(owner):
        return HandoffAction.REPEAT, f"{done.status} by this record before a restart"
    return HandoffAction.DONE, f"already {done.status}"


def _queue_destinations(queue: str, policy: Policy) -> tuple[tuple[str, ...], str]:
    found = policy.queues.get(queue)
    if found is not None:
        return found.destinations, f"queue {queue} delivers to {', '.join(found.destinations) or 'nothing'}"
    default = policy.queues[policy.default_queue].destinations
    return default, (f"queue {queue} is not in the policy; the default queue {policy.default_queue} "
                     f"delivers to {', '.join(default) or 'nothing'}")


def _known(names: Sequence[str], policy: Policy) -> tuple[str, ...]:
    """The names a policy still knows (a reload may have removed a destination)."""
    known = set(policy.destinations).union(*(q.destinations for q in policy.queues.values()))
    return tuple(n for n in names if n in known)


def route_destinations(routed: RoutedConversation, previous: ConversationCard | None,
                       current: Sequence[str], policy: Policy) -> tuple[tuple[str, ...], str]:
    """Where a routed message goes: where its conversation already is, unless it moved queues."""
    if previous is None:
        names, why = _queue_destinations(routed.queue, policy)
        return names, f"new conversation: {why}"
    if previous.queue != routed.queue:
        names, why = _queue_destinations(routed.queue, policy)
        return names, f"transferred from {previous.queue}: {why}"
    kept = _known(current, policy)
    if kept:
        return kept, f"follow-up: the conversation is at {', '.join(kept)}"
    names, why = _queue_destinations(routed.queue, policy)
    return names, f"follow-up with no destination yet: {why}"


def notice_destinations(card: ConversationCard, current: Sequence[str],
                        policy: Policy) -> tuple[tuple[str, ...], str]:
    """Where a receipt or SLA notice goes: wherever the conversation is worked."""
    kept = _known(current, policy)
    if kept:
        return kept, f"the conversation is at {', '.join(kept)}"
    names, why = _queue_destinations(card.queue, policy)
    return names, f"the conversation has no destination yet: {why}"


def escalation_destinations(action: str | None, target: str | None,
                            policy: Policy) -> tuple[tuple[str, ...], str]:
    """Who an escalation step reaches besides the conversation's own tools.

    A page or notify reaches the destination of that name, when the policy defines one
    (other targets are names the conversation's own tools understand). A reassignment
    reaches no one more here: its transfer is handed to the new team whole, as a routed
    conversation (processors.brain.handover), not as a one-line notice.
    """
    if not action or not target or action == "reassign":
        return (), ""
    if target in policy.destinations:
        return (target,), f"{action} {target}"
    return (), ""


def card_for(routed: RoutedConversation, previous: ConversationCard | None,
             now: datetime) -> ConversationCard | None:
    """The card after a routed message: its latest facts, its history kept.

    A verified answer to a continuation mail (tagged `continuation` by intake) leaves the
    conversation where it lives: replies keep going to its channel and recipient, which
    carry them on by mail (a chat the visitor left). A transfer's handoff brings no
    message: the card moves queue and keeps the rest; None when there is no card to move.
    """
    message = routed.message
    if message is None:
        return None if previous is None else _moved(routed, previous, now)
    ref = reply_reference(message)
    if previous is not None and CONTINUATION_TAG in message.tags:
        channel, recipient = previous.channel, previous.recipient
        ref = ReplyRef(in_reply_to=previous.in_reply_to or ref.in_reply_to, references=previous.references)
    else:
        channel, recipient = message.channel, message.sender
    return ConversationCard(
        conversation_id=routed.conversation_id, customer_id=routed.customer_id,
        channel=channel, recipient=recipient, queue=routed.queue, tier=routed.tier,
        urgency=routed.urgency, priority=routed.priority,
        # the brain owns the status; a new conversation starts open
        status=previous.status if previous else "open",
        opened_at=previous.opened_at if previous else message.received_at, updated_at=now,
        subject=message.subject or (previous.subject if previous else None),
        agent=routed.agent,
        customer_name=routed.customer_name or (previous.customer_name if previous else None),
        in_reply_to=ref.in_reply_to, references=ref.references,
        first_response_due=routed.first_response_due,
        # thread references live in the card's own `dest:` fields (processors.cards)
        destinations={}, transfers=routed.transfers,
        messages=(previous.messages if previous else 0) + 1,
        # a repeat call joins the task already owed; a written follow-up does not cancel it
        callback=routed.callback or (previous.callback if previous else None))


def _moved(routed: RoutedConversation, previous: ConversationCard, now: datetime) -> ConversationCard:
    """The card of a transferred conversation: the new queue and ranking, the customer's thread kept."""
    return msgspec.structs.replace(
        previous, queue=routed.queue, tier=routed.tier, urgency=routed.urgency, priority=routed.priority,
        updated_at=now, agent=None, transfers=routed.transfers, destinations={},
        customer_name=routed.customer_name or previous.customer_name,
        first_response_due=routed.first_response_due or previous.first_response_due)


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do with one item: the card to hand over and the destinations it goes to."""

    item: Item
    card: ConversationCard | None
    intended: tuple[str, ...]
    reason: str
    # first time seen: its destinations are saved, so a replay goes to the same ones
    new: bool
    write_card: bool = False
    # a transfer: the conversation's old thread references are dropped
    transfer: bool = False
    forget: tuple[str, ...] = ()
    # why nothing is delivered
    skip: str | None = None


def plan_batch(items: Sequence[Item], saved: Sequence[tuple[str, ...] | None],
               cards: Mapping[str, ConversationCard | None], policy: Policy, now: datetime) -> list[Plan]:
    """Plan every item in order, from the plan its ledger saved (None: never planned) and the stored cards."""
    current = dict(cards)
    names = {c: list(card.destinations) if card else [] for c, card in cards.items()}
    seen: set[str] = set()
    plans = []
    for item, recorded in zip(items, saved, strict=True):
        conversation = item.conversation_id
        card = current.get(conversation)
        here = names.setdefault(conversation, [])
        if item.source in seen:  # the claim above is this batch's own
            plans.append(Plan(item, card, (), "", new=False, skip="repeated in one batch"))
            continue
        seen.add(item.source)
        routed = item.routed
        if recorded is not None:
            if card is None and routed is not None:
                card = card_for(routed, None, now)
            skip = None if card is not None or not recorded else "no card for the conversation"
            plans.append(Plan(item, card, recorded, "a replay goes where the first delivery went",
                              new=False, skip=skip))
            continue
        if routed is not None and routed.message is None and card is None:
            plans.append(Plan(item, None, (), "", new=True,
                              skip="a transfer of a conversation never dispatched, or whose card expired"))
            continue
        if routed is not None:
            chosen, why = route_destinations(routed, card, here, policy)
            transfer = card is not None and card.queue != routed.queue
            forget = tuple(here) if transfer else ()
            if transfer:
                here.clear()
            current[conversation] = card_for(routed, card, now)
            here.extend(n for n in chosen if n not in here)
            plans.append(Plan(item, current[conversation], chosen, why, new=True, write_card=True,
                              transfer=transfer, forget=forget))
            continue
        if card is None:
            plans.append(Plan(item, None, (), "", new=True,
                              skip="no card: the conversation was never dispatched, or its card expired"))
            continue
        if item.receipt is not None:
            wanted, why = receipt_notice(item.receipt)
            if not wanted:
                plans.append(Plan(item, card, (), why, new=True, skip=why))
                continue
        chosen, why = notice_destinations(card, here, policy)
        extra, also = escalation_destinations(item.action, item.action_target, policy)
        if extra:
            chosen, why = tuple(dict.fromkeys((*chosen, *extra))), f"{why}; {also}"
        plans.append(Plan(item, card, chosen, why, new=True))
    return plans
