"""The agents' side of the policy: where queues deliver, what replies must not say, how cases end.

Parses the `destinations:`, `guard:` and `lifecycle:` sections into `Destination`,
`GuardRule` and `Lifecycle`; like the rest of the file, every error names FILE:LINE and
the dotted key. A destination holds no secret: a webhook names the environment variable
that holds its HMAC key, and settings read it.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import timedelta
from typing import Literal, cast, get_args
from urllib.parse import urlsplit

from processors.policy.model import Destination, FollowUp, GuardRule, Lifecycle, Policy, format_duration
from processors.policy.nodes import Node, frozen

__all__ = ["FOLLOW_UP_PLACEHOLDERS", "describe", "destinations", "guard", "lifecycle"]

FOLLOW_UP_PLACEHOLDERS = frozenset({"name", "reference"})
Kind = Literal["webhook", "slack", "mailbox"]
# besides kind, fallback and deadline: what each kind needs, and what it may have
# every webhook is signed: a receiver must be able to tell our deliveries from forgeries
_NEEDS: Mapping[str, tuple[str, ...]] = {
    "webhook": ("url", "secret_env"), "slack": ("channel",), "mailbox": ("address",)}
_MAY: Mapping[str, tuple[str, ...]] = {"webhook": (), "slack": (), "mailbox": ()}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


def _url(at: Node) -> str:
    url = at.text()
    try:
        parts = urlsplit(url)
    except ValueError:
        at.fail("must be an http or https URL")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        at.fail("must be an http or https URL like https://helpdesk.example.com/hook")
    if parts.username or parts.password:
        # the policy file is shared and printed; keys belong in the environment
        at.fail("must not carry credentials; name the environment variable with the key in secret_env")
    return url


def _secret_env(at: Node) -> str:
    name = at.text()
    if not _ENV_NAME.match(name):
        at.fail("must be the name of an environment variable holding the key, like SB_WEBHOOK_SECRET")
    return name


def _address(at: Node) -> str:
    address = at.text()
    if not _ADDRESS.match(address):
        at.fail("must be an email address like support@example.com")
    return address


def _channel(at: Node) -> str:
    channel = at.text()
    if not channel or channel != channel.strip() or " " in channel:
        at.fail("must be a Slack channel id like C0SUPPORT")
    return channel


def _destination(name: str, at: Node, known: Collection[str]) -> Destination:
    found = dict(at.entries())
    if "kind" not in found:
        at.fail("missing key 'kind'")
    kind = cast(Kind, found["kind"].ref(get_args(Kind), "destination kind"))
    f = at.fields(("kind", *_NEEDS[kind]), (*_MAY[kind], "fallback", "deadline"))
    fallback = f["fallback"].ref(known, "destination") if "fallback" in f else None
    if fallback == name:
        f["fallback"].fail(f"destination {name!r} cannot be its own fallback")
    return Destination(
        name=name,
        kind=kind,
        url=_url(f["url"]) if "url" in f else None,
        secret_env=_secret_env(f["secret_env"]) if "secret_env" in f else None,
        channel=_channel(f["channel"]) if "channel" in f else None,
        address=_address(f["address"]) if "address" in f else None,
        fallback=fallback,
        deadline=f["deadline"].duration() if "deadline" in f else Destination(name, kind).deadline,
    )


def destinations(at: Node) -> dict[str, Destination]:
    """The `destinations:` section: agents' tools by name, fallbacks checked for circles."""
    entries = at.entries()
    known = frozenset(name for name, _ in entries)
    found = {name: _destination(name, spec, known) for name, spec in entries}
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
    ]
