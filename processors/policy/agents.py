"""The agents' side of the policy: where queues deliver, what replies must not say, how cases end.

Parses the `destinations:`, `guard:` and `lifecycle:` sections into `Destination`,
`GuardRule` and `Lifecycle`; like the rest of the file, every error names FILE:LINE and
the dotted key. A destination's own fields are its tool's (the Vocabulary
gives each kind's shape, from the tools registry); it holds no secret: a webhook names the
environment variable that holds its HMAC key, and settings read it.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import timedelta
from typing import Any, Literal, cast

import msgspec

from processors.policy.model import (
    Destination,
    FollowUp,
    GuardRule,
    Lifecycle,
    Policy,
    PrivateReply,
    format_duration,
)
from processors.policy.nodes import Node, frozen

__all__ = ["FOLLOW_UP_PLACEHOLDERS", "describe", "destinations", "guard", "lifecycle", "private_replies"]

FOLLOW_UP_PLACEHOLDERS = frozenset({"name", "reference"})
_COMMON = ("kind", "fallback", "deadline")
# msgspec names the field it refuses as "... - at `$.url`"
_AT_FIELD = re.compile(r" - at `\$\.(\w+)`$")
_NAMED = re.compile(r"`(\w+)`")


def _config(at: Node, kind: str, shape: type[Any], fields: dict[str, Node]) -> Any:
    """The tool's own fields of a destination, as its typed shape; errors name their line."""
    own = {name: node for name, node in fields.items() if name not in _COMMON}
    raw = {}
    for name, node in own.items():
        raw[name] = node.text()
    try:
        return msgspec.convert(raw, shape)
    except msgspec.ValidationError as e:
        text = str(e)
        field = _AT_FIELD.search(text)
        if field and field.group(1) in own:
            own[field.group(1)].fail(text[: field.start()])
        named = _NAMED.search(text)
        if text.startswith("Object contains unknown field") and named and named.group(1) in own:
            own[named.group(1)].fail(f"unknown key {named.group(1)!r} for a {kind} destination; known: "
                                     + ", ".join((*_COMMON, *shape.__struct_fields__)))
        if text.startswith("Object missing required field") and named:
            at.fail(f"missing key {named.group(1)!r} (a {kind} destination needs "
                    + ", ".join(shape.__struct_fields__) + ")")
        prefix, sep, reason = text.partition(": ")
        if sep and prefix in own:
            own[prefix].fail(reason.removesuffix(" - at `$`"))
        at.fail(text.removesuffix(" - at `$`"))


def _destination(name: str, at: Node, known: Collection[str], tools: Mapping[str, type[Any]]) -> Destination:
    found = dict(at.entries())
    if "kind" not in found:
        at.fail("missing key 'kind'")
    kind = found["kind"].ref(tuple(tools), "destination kind")
    fallback = found["fallback"].ref(known, "destination") if "fallback" in found else None
    if fallback == name:
        found["fallback"].fail(f"destination {name!r} cannot be its own fallback")
    return Destination(
        name=name,
        kind=kind,
        config=_config(at, kind, tools[kind], found),
        fallback=fallback,
        deadline=found["deadline"].duration() if "deadline" in found else Destination(name, kind).deadline,
    )


def destinations(at: Node, tools: Mapping[str, type[Any]]) -> dict[str, Destination]:
    """The `destinations:` section: agents' tools by name, fallbacks checked for circles."""
    entries = at.entries()
    known = frozenset(name for name, _ in entries)
    found = {name: _destination(name, spec, known, tools) for name, spec in entries}
    for start, spec in entries:
        path, nxt = [start], found[start].fallback
        while nxt is not None and nxt not in path:
            path.append(nxt)
            nxt = found[nxt].fallback
        # a circle is reported once, at its first member in file order
        if nxt == start:
            dict(spec.entries())["fallback"].fail(
                "fallbacks go round in a circle: " + " → ".join([*path, start]))
    return found


def guard(at: Node) -> tuple[GuardRule, ...]:
    """The `guard:` section: reply-guard rules, phrases compiled once."""
    rules: list[GuardRule] = []
    for item in at.items():
        f = item.fields(("name", "phrases", "action", "reason"), ("unresolved_only",))
        name = f["name"].text()
        if any(r.name == name for r in rules):
            f["name"].fail(f"rule name {name!r} is used twice; names appear in the flags agents see")
        reason = f["reason"].text()
        if not reason.strip():
            f["reason"].fail("must tell the agent why; it is shown with the flag")
        rules.append(GuardRule(
            name=name,
            phrases=f["phrases"].keywords(),
            action=cast(Literal["warn", "hold"], f["action"].ref(("warn", "hold"), "action")),
            reason=reason,
            unresolved_only=f["unresolved_only"].value(bool, "true or false")
            if "unresolved_only" in f else False,
        ))
    return tuple(rules)


_PRIVATE_CONDITIONS = ("tiers", "queues", "channels", "keywords")
MAX_PUBLIC_NOTE = 200


def private_replies(at: Node, *, tiers: Collection[str], queues: Collection[str],
                    channels: Collection[str] | None) -> tuple[PrivateReply, ...]:
    """The `private_replies:` section: which replies leave public threads, first match wins."""
    rules: list[PrivateReply] = []
    for item in at.items():
        f = item.fields(("name", "reason"), (*_PRIVATE_CONDITIONS, "public_note"))
        name = f["name"].text()
        if any(r.name == name for r in rules):
            f["name"].fail(f"rule name {name!r} is used twice; names appear in the receipts agents see")
        if not set(_PRIVATE_CONDITIONS) & f.keys():
            item.fail(f"needs at least one condition: {', '.join(_PRIVATE_CONDITIONS)}")
        reason = f["reason"].text()
        if not reason.strip():
            f["reason"].fail("must say why; it is shown with the receipt")
        note = f["public_note"].text() if "public_note" in f else None
        if note is not None and not 0 < len(note.strip()) <= MAX_PUBLIC_NOTE:
            f["public_note"].fail(f"must be 1 to {MAX_PUBLIC_NOTE} characters: it is a short public line")
        rules.append(PrivateReply(
            name=name, reason=reason,
            tiers=frozenset(i.ref(tiers, "tier") for i in f["tiers"].items()) if "tiers" in f
            else frozenset(),
            queues=frozenset(i.ref(queues, "queue") for i in f["queues"].items()) if "queues" in f
            else frozenset(),
            channels=frozenset(i.text() if channels is None else i.ref(channels, "channel")
                               for i in f["channels"].items()) if "channels" in f else frozenset(),
            keywords=f["keywords"].keywords() if "keywords" in f else None,
            public_note=note,
        ))
    return tuple(rules)


def _follow_up(at: Node, close_after: timedelta, tiers: Collection[str],
               channels: Collection[str] | None) -> FollowUp:
    f = at.fields(("delay", "templates"))
    delay = f["delay"].duration()
    if delay >= close_after:
        f["delay"].fail(f"must be shorter than close_after ({format_duration(close_after)}): "
                        "the follow-up is asked before the conversation closes")
    templates = {channel: frozen({tier: spec.template(FOLLOW_UP_PLACEHOLDERS) for tier, spec in by_tier})
                 for channel, by_tier in f["templates"].by_channel_and_tier(channels, tiers).items()}
    if not templates:
        f["templates"].fail("must have a template for at least one channel")
    return FollowUp(delay, frozen(templates))


def lifecycle(at: Node, *, tiers: Collection[str], channels: Collection[str] | None) -> Lifecycle:
    """The `lifecycle:` section: when resolved conversations close, the follow-up, confirm words."""
    f = at.fields((), ("close_after", "follow_up", "confirm"))
    close_after = f["close_after"].duration() if "close_after" in f else Lifecycle().close_after
    return Lifecycle(
        close_after=close_after,
        follow_up=_follow_up(f["follow_up"], close_after, tiers, channels) if "follow_up" in f else None,
        confirm=f["confirm"].keywords() if "confirm" in f else None,
    )


def describe(policy: Policy) -> list[str]:
    """Summary lines of the agents' sections for `switchboard policy check`."""
    life = policy.lifecycle
    follow_up = (f"follow-up after {format_duration(life.follow_up.delay)} on "
                 f"{', '.join(life.follow_up.templates)}") if life.follow_up else "no follow-up"
    return [
        "destinations: " + (", ".join(
            f"{d.name} ({d.kind}" + (f", fallback {d.fallback})" if d.fallback else ")")
            for d in policy.destinations.values()) or "not declared; queue destinations unchecked"),
        "reply guard: " + (", ".join(
            f"{r.name} ({r.action}" + (", unresolved only)" if r.unresolved_only else ")")
            for r in policy.guard) or "none"),
        f"lifecycle: close after {format_duration(life.close_after)}; {follow_up}; confirm words: "
        + (", ".join(life.confirm.words) if life.confirm else "none"),
        "private replies: " + (", ".join(
            r.name + (" (with a public note)" if r.public_note else "") for r in policy.private_replies)
            or "none"),
    ]
