"""Acknowledge: tell the customer, on their channel, that we have it and when to expect us.

The expected time is meant to be true: the team's current backlog times its recent
average handling time, counted in business hours from now (so from opening time when
the team is closed), and never later than the SLA due time, which escalation enforces.
Machines are never answered: auto-replies, mailing lists and bounces would loop. Nor is a
customer the channel cannot reach (`Policy.reach`): an API caller known only by a phone
number gets nothing rather than a failed delivery, and the decision says why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Literal

import msgspec

from processors.brain import priority
from processors.policy.calendar import Calendar, add_business_time, next_open
from processors.policy.model import Policy, Template, choose_queue, format_duration
from schemas.codec import isoformat
from schemas.routed import ReplyMode

__all__ = ["Ack", "AckDecision", "Prospect", "acknowledgement", "expected_answer", "prospect",
           "status_update"]

Kind = Literal["acknowledgement", "status_update"]


class Ack(msgspec.Struct, frozen=True):
    """The rendered text for the customer, the time it promises, and its template."""

    kind: Kind
    text: str
    expected: datetime
    template: str


class AckDecision(msgspec.Struct, frozen=True):
    """An acknowledgement or status update to send (or None), and why."""

    ack: Ack | None
    reasons: tuple[str, ...]
    # one was due, but the channel cannot reach this customer (counted, never a failed delivery)
    unreachable: bool = False


def expected_answer(*, now: datetime, due: datetime, backlog: int,
                    handling_time: timedelta | None, calendar: Calendar) -> tuple[datetime, str]:
    """When the customer can expect an answer: the backlog's estimate, capped by the SLA."""
    if handling_time is None or handling_time <= timedelta(0):
        return due, f"expected {isoformat(due)}: the SLA due time (no handling-time data)"
    # the customer's own conversation needs handling too, hence backlog + 1
    work = handling_time * (max(backlog, 0) + 1)
    estimate = add_business_time(now, work, calendar)
    basis = (f"{backlog} waiting and this one at {format_duration(handling_time)} average handling "
             f"in calendar {calendar.name}")
    if estimate >= due:
        return due, f"expected {isoformat(due)}: the SLA due time ({basis} would take longer)"
    return estimate, f"expected {isoformat(estimate)}: {basis}"


# strftime with a zone name costs microseconds; a batch's promises share a few instants
# (its `now`, a closed team's opening, a closed minute's due time)
@lru_cache(maxsize=1024)
def _shown(at: datetime, zone: tzinfo, fmt: str) -> str:
    """`at` in `zone`, formatted with `fmt`."""
    return at.astimezone(zone).strftime(fmt)


def _template(templates: Mapping[str, Mapping[str, Template]], channel: str,
              tier: str) -> tuple[Template, str] | None:
    by_tier = templates.get(channel)
    if by_tier is None:
        return None
    for key in (tier, "default"):
        if key in by_tier:
            return by_tier[key], f"{channel}/{key}"
    return None


class _Context(msgspec.Struct, frozen=True):
    kind: Kind
    channel: str
    # the identity kind the message would go to ("email", "phone", ...)
    recipient: str
    name: str | None
    reference: str
    tier: str
    queue: str
    backlog: int
    handling_time: timedelta | None
    due: datetime
    now: datetime


def _render(ctx: _Context, policy: Policy) -> AckDecision:
    if ctx.kind == "acknowledgement" and policy.reply_mode(ctx.channel, ctx.tier) == "callback":
        # the caller heard when we call in the greeting; a text would only be noise beside the call.
        # A status update is not: the call is late, and the caller should not have to chase it
        return AckDecision(None, (f"no {ctx.kind}: tier {ctx.tier} on {ctx.channel} is called back, "
                                  "and the call is the answer",))
    templates = (policy.acknowledge.templates if ctx.kind == "acknowledgement"
                 else policy.acknowledge.status_updates)
    found = _template(templates, ctx.channel, ctx.tier)
    if found is None:
        return AckDecision(None, (f"no {ctx.kind}: no template for channel {ctx.channel}",))
    template, label = found
    unreachable = policy.reach.unreachable(ctx.channel, ctx.recipient)
    if unreachable is not None:
        return AckDecision(None, (f"no {ctx.kind}: {unreachable}",), unreachable=True)
    calendar = policy.calendar_for(ctx.queue, ctx.tier)
    expected, why = expected_answer(now=ctx.now, due=ctx.due, backlog=ctx.backlog,
                                    handling_time=ctx.handling_time, calendar=calendar)
    # shown in the team's own timezone: the tier's 24x7 calendar has no meaningful one
    shown = policy.calendars[policy.queues[ctx.queue].calendar].timezone
    fmt = policy.acknowledge.time_format
    opens = next_open(ctx.now, calendar)
    opened = opens == ctx.now
    text = (template.open if opened else template.closed).format(
        name=(ctx.name or "").strip() or policy.acknowledge.unknown_name,
        expected=_shown(expected, shown, fmt),
        reference=ctx.reference,
        opens=_shown(opens, shown, fmt),
    )
    state = "open" if opened else f"closed until {isoformat(opens)}"
    return AckDecision(Ack(ctx.kind, text, expected, f"{label}/{'open' if opened else 'closed'}"), (
        f"{ctx.kind} on {ctx.channel} with template {label} (calendar {calendar.name} {state})", why))


def acknowledgement(
    *, channel: str, recipient: str, tags: Sequence[str], name: str | None, reference: str, tier: str,
    queue: str, backlog: int, handling_time: timedelta | None, due: datetime, policy: Policy,
    now: datetime, continuing: bool = False,
) -> AckDecision:
    """The acknowledgement for a newly routed message, or None with the reason why not."""
    skipped = sorted(set(tags) & policy.acknowledge.skip_tags) if tags else None
    if skipped:
        return AckDecision(None, (f"no acknowledgement: message tagged {skipped[0]}",))
    if continuing:
        return AckDecision(None, ("no acknowledgement: continues a conversation already acknowledged",))
    return _render(_Context("acknowledgement", channel, recipient, name, reference, tier, queue, backlog,
                            handling_time, due, now), policy)


def status_update(
    *, channel: str, recipient: str, name: str | None, reference: str, tier: str, queue: str, backlog: int,
    handling_time: timedelta | None, due: datetime, policy: Policy, now: datetime,
) -> AckDecision:
    """The "we haven't forgotten you" update for a conversation waiting past its share."""
    if due <= now:
        return AckDecision(None, ("no status update: already past due, escalation has it",))
    return _render(_Context("status_update", channel, recipient, name, reference, tier, queue, backlog,
                            handling_time, due, now), policy)


@dataclass(frozen=True, slots=True)
class Prospect:
    """What a customer can be told before their message is routed: tier, hours, expected answer."""

    tier: str
    queue: str
    open_now: bool
    opens: datetime
    expected: datetime
    opens_text: str
    expected_text: str
    reply_mode: ReplyMode = "text"


def prospect(*, channel: str, tier: str | None, backlog: Mapping[str, int], policy: Policy,
             now: datetime) -> Prospect:
    """The acknowledgement's promise for a customer who has not said anything yet (a caller, a chat).

    No text means no keyword or urgency evidence: the policy's default urgency and the
    queue the channel and tier alone choose, so the promise is the one a plain message gets.
    """
    known = tier if tier is not None and tier in policy.tiers else policy.default_tier
    urgency = policy.urgency.default
    queue = choose_queue(policy, channel=channel, tier=known, urgency=urgency, text="",
                         backlog=backlog).queue
    calendar = policy.calendar_for(queue, known)
    due = priority.first_response_due(now, known, urgency, queue, policy).at
    expected, _ = expected_answer(now=now, due=due, backlog=backlog.get(queue, 0), handling_time=None,
                                  calendar=calendar)
    opens = next_open(now, calendar)
    shown = policy.calendars[policy.queues[queue].calendar].timezone
    fmt = policy.acknowledge.time_format
    return Prospect(tier=known, queue=queue, open_now=opens == now, opens=opens, expected=expected,
                    opens_text=_shown(opens, shown, fmt), expected_text=_shown(expected, shown, fmt),
                    reply_mode=policy.reply_mode(channel, known))
