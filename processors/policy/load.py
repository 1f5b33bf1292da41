"""Load and validate the policy file; every error names FILE:LINE and the dotted key.

Values are read through `policy_yaml.Node`, which keeps each one's line; the agents'
side (destinations, reply guard, lifecycle) is parsed in `policy_agents`. Everything is
checked at load: unknown keys, types, durations, timezones and every reference between
sections, so a running router never meets a broken policy.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Literal, cast, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from processors.policy import agents as policy_agents
from processors.policy.calendar import ALWAYS_OPEN, Calendar, parse_hours
from processors.policy.model import (
    ALWAYS_SKIPPED,
    Acknowledge,
    Action,
    EscalationStep,
    Lifecycle,
    Overflow,
    Policy,
    Queue,
    QueueMatch,
    RepeatedContacts,
    Sla,
    Template,
    Tier,
    Urgency,
    UrgencyRule,
    Vocabulary,
    format_duration,
    parse_duration,
)
from processors.policy.nodes import Node, frozen, root
from schemas.errors import ConfigError
from schemas.routed import ReplyMode

__all__ = ["MAX_POLICY_BYTES", "check", "load_policy", "parse_policy", "read_policy"]

MAX_POLICY_BYTES = 256 * 1024  # the example policy, comments and all, is 15 KiB
PLACEHOLDERS = frozenset({"name", "expected", "reference", "opens"})
_STEP_AT = re.compile(r"^(warn|breach)(?:\s*\+\s*(\S+))?$")


@dataclass(frozen=True, slots=True)
class _Names:
    """Names defined anywhere in the file, for checking references while parsing."""

    tiers: frozenset[str]
    queues: frozenset[str]
    calendars: frozenset[str]
    chains: frozenset[str]
    levels: tuple[str, ...]
    channels: frozenset[str] | None
    # None without a `destinations:` section: queues then name destinations freely
    destinations: frozenset[str] | None
    # channel → the ways its connector says a team may answer (a channel not listed: text only)
    reply_modes: Mapping[str, tuple[ReplyMode, ...]]

    def channel(self, at: Node) -> str:
        """A channel name, checked when the caller said which channels exist."""
        return at.text() if self.channels is None else at.ref(self.channels, "channel")

    def destination(self, at: Node) -> str:
        """A queue's destination, checked when the file defines its destinations."""
        return at.text() if self.destinations is None else at.ref(self.destinations, "destination")


def _names(top: dict[str, Node], channels: Collection[str] | None,
           reply_modes: Mapping[str, tuple[ReplyMode, ...]]) -> _Names:
    def keys(section: str) -> frozenset[str]:
        return frozenset(n for n, _ in top[section].entries()) if section in top else frozenset()

    levels_at = top["urgency"].fields(("levels",), ("default", "rules"))["levels"]
    levels = tuple(item.text() for item in levels_at.items())
    if len(levels) < 2 or len(set(levels)) != len(levels):
        levels_at.fail("must list at least two distinct levels, least urgent first")
    calendars = keys("calendars")
    if ALWAYS_OPEN.name in calendars:
        top["calendars"].fail(f"{ALWAYS_OPEN.name!r} is built in and cannot be redefined")
    return _Names(keys("tiers"), keys("queues"), calendars | {ALWAYS_OPEN.name},
                  keys("escalations"), levels, frozenset(channels) if channels is not None else None,
                  keys("destinations") if "destinations" in top else None, reply_modes)


def _targets(at: Node, names: _Names) -> dict[str, timedelta]:
    found = at.fields(required=names.levels)
    return {level: found[level].duration() for level in names.levels}


def _tiers(at: Node, names: _Names) -> dict[str, Tier]:
    tiers: dict[str, Tier] = {}
    ranks: set[int] = set()
    for name, spec in at.entries():
        f = spec.fields(("rank", "first_response", "next_response"), ("calendar", "reply_mode"))
        rank = f["rank"].value(int, "a whole number")
        if rank in ranks:
            f["rank"].fail(f"rank {rank} is used by another tier; ranks order tiers")
        ranks.add(rank)
        calendar = f["calendar"].ref(names.calendars, "calendar") if "calendar" in f else None
        modes = _reply_modes(f["reply_mode"], names) if "reply_mode" in f else {}
        tiers[name] = Tier(name, rank, frozen(_targets(f["first_response"], names)),
                           frozen(_targets(f["next_response"], names)), calendar, frozen(modes))
    if not tiers:
        at.fail("must define at least one tier")
    return tiers


def _reply_modes(at: Node, names: _Names) -> dict[str, ReplyMode]:
    """A tier's `reply_mode`: channel → a way of answering that channel's connector declares."""
    modes: dict[str, ReplyMode] = {}
    for channel, mode_at in at.entries():
        if names.channels is not None and channel not in names.channels:
            mode_at.fail(f"unknown channel {channel!r}; known: {', '.join(sorted(names.channels))}")
        offered = names.reply_modes.get(channel, ("text",))
        mode = mode_at.text()
        if mode not in offered:
            ways = " or ".join(repr(m) for m in offered)
            mode_at.fail(f"channel {channel!r} is answered by {ways} only, not {mode!r}"
                         if len(offered) > 1 else
                         f"channel {channel!r} is answered by {ways} only; {mode!r} needs a channel "
                         f"that offers it")
        modes[channel] = mode
    return modes


def _rule(at: Node, names: _Names) -> UrgencyRule:
    f = at.fields(("name",), ("raise_to", "raise_by", "keywords", "sentiment_at_most",
                              "repeated_contacts", "channels", "tags", "tiers"))
    if ("raise_to" in f) == ("raise_by" in f):
        at.fail("needs exactly one of raise_to or raise_by")
    conditions = {"keywords", "sentiment_at_most", "repeated_contacts", "channels", "tags", "tiers"}
    if not conditions & f.keys():
        at.fail(f"needs at least one condition: {', '.join(sorted(conditions))}")
    raise_by = f["raise_by"].value(int, "a whole number") if "raise_by" in f else 0
    if "raise_by" in f and raise_by < 1:
        f["raise_by"].fail("must be 1 or more")
    threshold = f["sentiment_at_most"].value(float, "a number") if "sentiment_at_most" in f else None
    if threshold is not None and not -1.0 <= threshold <= 1.0:
        f["sentiment_at_most"].fail("must be between -1 and 1 (a compound sentiment score)")
    return UrgencyRule(
        name=f["name"].text(),
        raise_to=f["raise_to"].ref(names.levels, "urgency level") if "raise_to" in f else None,
        raise_by=raise_by,
        keywords=f["keywords"].keywords() if "keywords" in f else None,
        sentiment_at_most=threshold,
        repeated_contacts=_repeated(f["repeated_contacts"]) if "repeated_contacts" in f else None,
        channels=frozenset(names.channel(i) for i in f["channels"].items()) if "channels" in f
        else frozenset(),
        tags=f["tags"].strings() if "tags" in f else frozenset(),
        tiers=frozenset(i.ref(names.tiers, "tier") for i in f["tiers"].items()) if "tiers" in f
        else frozenset(),
    )


def _repeated(at: Node) -> RepeatedContacts:
    f = at.fields(("count", "within"))
    count = f["count"].value(int, "a whole number")
    if count < 2:
        f["count"].fail("must be 2 or more (the message itself counts as one)")
    return RepeatedContacts(count, f["within"].duration())


def _urgency(at: Node, names: _Names) -> Urgency:
    f = at.fields(("levels",), ("default", "rules"))
    default = f["default"].ref(names.levels, "urgency level") if "default" in f else names.levels[0]
    rules: list[UrgencyRule] = []
    for rule_at in f["rules"].items() if "rules" in f else []:
        rule = _rule(rule_at, names)
        if any(r.name == rule.name for r in rules):
            rule_at.fail(f"rule name {rule.name!r} is used twice; names appear in reasons")
        rules.append(rule)
    return Urgency(names.levels, default, tuple(rules))


def _match(at: Node, names: _Names) -> QueueMatch:
    f = at.fields((), ("channels", "tiers", "languages", "keywords", "min_urgency"))
    return QueueMatch(
        channels=frozenset(names.channel(i) for i in f["channels"].items()) if "channels" in f
        else frozenset(),
        tiers=frozenset(i.ref(names.tiers, "tier") for i in f["tiers"].items()) if "tiers" in f
        else frozenset(),
        languages=f["languages"].strings() if "languages" in f else frozenset(),
        keywords=f["keywords"].keywords() if "keywords" in f else None,
        min_urgency=f["min_urgency"].ref(names.levels, "urgency level") if "min_urgency" in f else None,
    )


def _other_queue(at: Node, name: str, names: _Names) -> str:
    other = at.ref(names.queues, "queue")
    if other == name:
        at.fail(f"queue {name!r} cannot be its own {at.path.rsplit('.', 1)[-1]}")
    return other


def _overflow(at: Node, name: str, names: _Names) -> Overflow:
    f = at.fields(("above", "to"))
    above = f["above"].value(int, "a whole number")
    if above < 0:
        f["above"].fail("must be 0 or more")
    return Overflow(above, _other_queue(f["to"], name, names))


def _queue(name: str, at: Node, names: _Names) -> Queue:
    f = at.fields(("destinations",), ("match", "calendar", "fallback", "escalation", "sticky",
                                      "max_transfers", "overflow"))
    destinations = tuple(names.destination(item) for item in f["destinations"].items())
    if not destinations:
        f["destinations"].fail("must name at least one destination")
    max_transfers = f["max_transfers"].value(int, "a whole number") if "max_transfers" in f else 3
    if max_transfers < 0:
        f["max_transfers"].fail("must be 0 or more")
    return Queue(
        name=name,
        match=_match(f["match"], names) if "match" in f else None,
        destinations=destinations,
        calendar=f["calendar"].ref(names.calendars, "calendar") if "calendar" in f else ALWAYS_OPEN.name,
        fallback=_other_queue(f["fallback"], name, names) if "fallback" in f else None,
        escalation=f["escalation"].ref(names.chains, "escalation chain") if "escalation" in f else None,
        sticky=f["sticky"].value(bool, "true or false") if "sticky" in f else True,
        max_transfers=max_transfers,
        overflow=_overflow(f["overflow"], name, names) if "overflow" in f else None,
    )


def _calendar(name: str, at: Node) -> Calendar:
    f = at.fields(("timezone", "hours"), ("holidays",))
    try:
        zone = ZoneInfo(f["timezone"].text())
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "America", a 300-letter name
        f["timezone"].fail(f"unknown timezone {f['timezone'].text()!r}; use an IANA name like Europe/Berlin")
    try:
        hours = parse_hours([item.text() for item in f["hours"].items()])
    except ValueError as e:
        f["hours"].fail(str(e))
    holidays = frozenset(_date(i) for i in f["holidays"].items()) if "holidays" in f else frozenset()
    return Calendar(name, zone, hours, holidays)


def _date(at: Node) -> date:
    try:
        return date.fromisoformat(at.text())
    except ValueError:
        at.fail("must be a date like 2026-12-25")


def _step(at: Node, names: _Names) -> EscalationStep:
    f = at.fields(("at", "action"), ("target",))
    label = f["at"].text()
    match = _STEP_AT.match(label.strip())
    if match is None:
        f["at"].fail("must be warn, breach or breach+DURATION like breach+30m")
    try:
        offset = parse_duration(match.group(2)) if match.group(2) else timedelta(0)
    except ValueError as e:
        f["at"].fail(str(e))
    action = f["action"].ref(get_args(Action), "action")
    if action != "raise_priority" and "target" not in f:
        at.fail(f"action {action} needs a target")
    target = None
    if "target" in f:
        target = f["target"].ref(names.queues, "queue") if action == "reassign" else f["target"].text()
    when: Literal["warn", "breach"] = "warn" if match.group(1) == "warn" else "breach"
    return EscalationStep(when, offset, cast(Action, action), target, label)


def _chain(at: Node, names: _Names) -> tuple[EscalationStep, ...]:
    steps = tuple(_step(item, names) for item in at.items())
    if not steps:
        at.fail("must have at least one step")
    return steps


def _share(at: Node) -> float:
    share = at.value(float, "a number")
    if not 0.0 < share < 1.0:
        at.fail("must be a share of the target between 0 and 1, like 0.75")
    return share


def _sla(at: Node) -> Sla:
    f = at.fields((), ("warn_at", "status_update_at", "pause_when_waiting_on_customer"))
    default = Sla()
    return Sla(
        warn_at=_share(f["warn_at"]) if "warn_at" in f else default.warn_at,
        status_update_at=_share(f["status_update_at"]) if "status_update_at" in f
        else default.status_update_at,
        pause_when_waiting_on_customer=f["pause_when_waiting_on_customer"].value(bool, "true or false")
        if "pause_when_waiting_on_customer" in f else default.pause_when_waiting_on_customer,
    )


def _template(at: Node) -> Template:
    f = at.fields(("open", "closed"))
    return Template(f["open"].template(PLACEHOLDERS), f["closed"].template(PLACEHOLDERS))


def _templates(at: Node, names: _Names) -> dict[str, Mapping[str, Template]]:
    return {channel: frozen({tier: _template(spec) for tier, spec in by_tier})
            for channel, by_tier in at.by_channel_and_tier(names.channels, names.tiers).items()}


def _acknowledge(at: Node, names: _Names) -> Acknowledge:
    f = at.fields((), ("templates", "status_update", "skip_tags", "time_format", "unknown_name"))
    default = Acknowledge(templates=frozen({}), status_updates=frozen({}))
    return Acknowledge(
        templates=frozen(_templates(f["templates"], names) if "templates" in f else {}),
        status_updates=frozen(_templates(f["status_update"], names) if "status_update" in f else {}),
        skip_tags=ALWAYS_SKIPPED | (f["skip_tags"].strings() if "skip_tags" in f else frozenset()),
        time_format=f["time_format"].text() if "time_format" in f else default.time_format,
        unknown_name=f["unknown_name"].text() if "unknown_name" in f else default.unknown_name,
    )


_TOP_REQUIRED = ("tiers", "default_tier", "urgency", "queues", "default_queue")
_TOP_OPTIONAL = ("calendars", "escalations", "sla", "sticky", "acknowledge", "destinations",
                 "guard", "lifecycle", "planned_channels", "private_replies")


def _sticky_window(at: Node) -> timedelta:
    f = at.fields((), ("window",))
    return f["window"].duration() if "window" in f else timedelta(hours=2)


def _planned(top: dict[str, Node], registered: frozenset[str]) -> frozenset[str]:
    """Channels the policy may name before they run here: said explicitly, never by accident."""
    if "planned_channels" not in top:
        return frozenset()
    planned = []
    for at in top["planned_channels"].items():
        name = at.text()
        if name in registered:
            at.fail(f"channel {name!r} is already registered; drop it from planned_channels")
        planned.append(name)
    return frozenset(planned)


def parse_policy(text: str, source_name: str, vocabulary: Vocabulary) -> Policy:
    """Parse and validate policy YAML; `source_name` is what errors call the file."""
    top = root(text, source_name).fields(_TOP_REQUIRED, _TOP_OPTIONAL)
    names = _names(top, vocabulary.channels | _planned(top, vocabulary.channels), vocabulary.reply_modes)
    calendars = {n: _calendar(n, at) for n, at in top["calendars"].entries()} if "calendars" in top else {}
    chains = {n: _chain(at, names) for n, at in top["escalations"].entries()} if "escalations" in top else {}
    destinations = (policy_agents.destinations(top["destinations"], vocabulary.tools)
                    if "destinations" in top else {})
    queues = {n: _queue(n, at, names) for n, at in top["queues"].entries()}
    if not queues:
        top["queues"].fail("must define at least one queue")
    return Policy(
        source=source_name,
        default_tier=top["default_tier"].ref(names.tiers, "tier"),
        tiers=frozen(_tiers(top["tiers"], names)),
        urgency=_urgency(top["urgency"], names),
        calendars=frozen({**calendars, ALWAYS_OPEN.name: ALWAYS_OPEN}),
        queues=frozen(queues),
        default_queue=top["default_queue"].ref(names.queues, "queue"),
        escalations=frozen(chains),
        sla=_sla(top["sla"]) if "sla" in top else Sla(),
        sticky_window=_sticky_window(top["sticky"]) if "sticky" in top else timedelta(hours=2),
        acknowledge=_acknowledge(top["acknowledge"], names) if "acknowledge" in top
        else Acknowledge(templates=frozen({}), status_updates=frozen({})),
        destinations=frozen(destinations),
        guard=policy_agents.guard(top["guard"]) if "guard" in top else (),
        lifecycle=policy_agents.lifecycle(top["lifecycle"], tiers=names.tiers, channels=names.channels)
        if "lifecycle" in top else Lifecycle(),
        private_replies=policy_agents.private_replies(
            top["private_replies"], tiers=names.tiers, queues=names.queues, channels=names.channels)
        if "private_replies" in top else (),
        reach=vocabulary.reach,
    )


def read_policy(path: str | Path) -> str:
    """The policy file's text: a regular file of at most MAX_POLICY_BYTES, in UTF-8."""
    try:
        # non-blocking, so a FIFO in its place is refused below instead of waiting for a writer
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise ConfigError("cannot read the policy file: not a regular file", str(path))
            raw = file.read(MAX_POLICY_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"cannot read the policy file: {e}", str(path)) from e
    if len(raw) > MAX_POLICY_BYTES:
        raise ConfigError(f"the policy file is larger than {MAX_POLICY_BYTES // 1024} KiB", str(path))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ConfigError(f"the policy file is not UTF-8: byte 0x{raw[e.start]:02x} cannot be read",
                          f"{path}:{line}") from e


def load_policy(path: str | Path, vocabulary: Vocabulary) -> Policy:
    """Read and validate the policy file at `path`."""
    return parse_policy(read_policy(path), str(path), vocabulary)


def _reached(policy: Policy, channel: str) -> str:
    """A channel with the identity kinds its acknowledgements can reach, e.g. `api (email)`."""
    kinds = policy.reach.kinds
    if kinds is None:
        return channel
    reached = kinds.get(channel)
    return f"{channel} ({', '.join(sorted(reached)) if reached else 'no one: nothing sends its replies'})"


def check(path: str | Path, vocabulary: Vocabulary) -> list[str]:
    """Validate the policy file and summarise it in lines for `switchboard policy check`."""
    policy = load_policy(path, vocabulary)
    levels = " < ".join(policy.urgency.levels)
    return [
        f"{policy.source}: valid",
        "tiers (highest first): " + ", ".join(
            f"{t} (calendar {policy.tiers[t].calendar})" if policy.tiers[t].calendar else t
            for t in policy.tiers_by_rank) + f"; default {policy.default_tier}",
        f"urgency: {levels}; default {policy.urgency.default}; "
        f"rules: {', '.join(r.name for r in policy.urgency.rules) or 'none'}",
        "queues (first match wins): " + ", ".join(policy.queues) + f"; default {policy.default_queue}",
        "calendars: " + ", ".join(f"{c.name} ({c.timezone.key})" for c in policy.calendars.values()),
        "escalation chains: " + (", ".join(
            f"{n} ({' → '.join(f'{s.label} {s.action}' for s in steps)})"
            for n, steps in policy.escalations.items()) or "none"),
        f"sla: warn at {policy.sla.warn_at:.0%}, status update at {policy.sla.status_update_at:.0%}; "
        f"sticky window {format_duration(policy.sticky_window)}",
        "acknowledgements for channels: " + (", ".join(
            _reached(policy, c) for c in policy.acknowledge.templates) or "none"),
        "answered otherwise than by text: " + (", ".join(
            f"{t} on {c} by {m}" for t in policy.tiers_by_rank
            for c, m in policy.tiers[t].reply_modes.items() if m != "text") or "none"),
        *policy_agents.describe(policy),
    ]
