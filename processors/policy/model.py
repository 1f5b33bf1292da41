"""The loaded policy: immutable values only, plus how a queue's match applies to a message.

`processors.policy` builds these from YAML and checks every reference between them, so
code holding a `Policy` may look names up without guarding against missing ones.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from functools import lru_cache
from typing import Any, Literal

import msgspec

from processors.policy.calendar import ALWAYS_OPEN, Calendar
from processors.policy.derived import Derived
from processors.policy.reach import Reach
from schemas.routed import ReplyMode

__all__ = [
    "Acknowledge",
    "Action",
    "Destination",
    "EscalationStep",
    "FollowUp",
    "GuardRule",
    "Keywords",
    "Lifecycle",
    "Overflow",
    "Policy",
    "PrivateReply",
    "Queue",
    "QueueChoice",
    "QueueMatch",
    "RepeatedContacts",
    "Sla",
    "Template",
    "Tier",
    "Urgency",
    "UrgencyRule",
    "Vocabulary",
    "choose_queue",
    "format_duration",
    "keywords",
    "parse_duration",
]

Action = Literal["notify", "raise_priority", "reassign", "page"]
# at most nine digits a part: any duration so written fits a timedelta
_DURATION = re.compile(r"^(?:([0-9]{1,9})h)?(?:([0-9]{1,9})m)?(?:([0-9]{1,9})s)?$")


def parse_duration(text: str) -> timedelta:
    """Read "2h", "30m", "1h30m" or "90s"; days are refused as ambiguous in business hours."""
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None:
        raise ValueError("must be a duration like 2h or 30m")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    value = timedelta(hours=hours, minutes=minutes, seconds=seconds)
    if value <= timedelta(0):
        raise ValueError("must be a duration longer than zero")
    return value


@lru_cache(maxsize=1024)
def format_duration(value: timedelta) -> str:
    """Write a duration the way the policy file does: "2h", "1h30m", "45s"."""
    # cached: reasons name the same few policy durations for every message
    total = int(value.total_seconds())
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (seconds, "s")) if n]
    return "".join(parts) or "0s"


@dataclass(frozen=True, slots=True)
class Keywords:
    """Words or phrases matched as whole words, caseless (casefold), in any script."""

    words: tuple[str, ...]
    pattern: re.Pattern[str]

    def find(self, text: str) -> str | None:
        """The first keyword found in `text`, case-folded, or None."""
        return self.find_folded(text.casefold())

    def find_folded(self, folded: str) -> str | None:
        """`find` on a text already case-folded (one fold for all of a message's rules)."""
        start = 0
        while (match := self.pattern.search(folded, start)) is not None:
            at = match.start()
            before = folded[at - 1] if at else " "
            if not (before.isalnum() or before == "_"):
                return " ".join(match.group(0).split())
            start = at + 1
        return None

    def find_all(self, text: str) -> tuple[str, ...]:
        """Every distinct keyword found in `text`, case-folded, in order of appearance."""
        folded = text.casefold()
        found: dict[str, None] = {}
        start = 0
        while (match := self.pattern.search(folded, start)) is not None:
            at = match.start()
            before = folded[at - 1] if at else " "
            if before.isalnum() or before == "_":
                start = at + 1  # inside a word: a later word start may still match
                continue
            found.setdefault(" ".join(match.group(0).split()))
            start = match.end()
        return tuple(found)


def keywords(words: Sequence[str]) -> Keywords:
    """Compile keywords once into one alternation, longest first so phrases win."""
    cleaned = [w.strip() for w in words]
    if not cleaned or not all(cleaned):
        raise ValueError("must list at least one non-empty keyword")
    folded = sorted({w.casefold() for w in cleaned}, key=len, reverse=True)
    parts = [r"\s+".join(re.escape(t) for t in w.split()) for w in folded]
    # the word start is checked in `find`, not with a lookbehind: a pattern that starts
    # with a literal alternation lets the regex engine skip ahead, ~3x faster on long mail;
    # casefolded text instead of IGNORECASE for the same reason (and ß == ss)
    pattern = re.compile("(?:" + "|".join(parts) + r")(?!\w)")
    return Keywords(tuple(cleaned), pattern)


@dataclass(frozen=True, slots=True)
class Tier:
    """A service level: how soon each urgency is answered, and its rank (higher is first)."""

    name: str
    rank: int
    first_response: Mapping[str, timedelta]
    next_response: Mapping[str, timedelta]
    calendar: str | None = None
    # channel → how this tier's customers there are answered; unlisted channels: "text"
    reply_modes: Mapping[str, ReplyMode] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RepeatedContacts:
    """At least `count` messages from one customer within `within`, this one included."""

    count: int
    within: timedelta


@dataclass(frozen=True, slots=True)
class UrgencyRule:
    """Conditions (all must hold; empty ones hold always) and the raise they cause."""

    name: str
    raise_to: str | None = None
    raise_by: int = 0
    keywords: Keywords | None = None
    sentiment_at_most: float | None = None
    repeated_contacts: RepeatedContacts | None = None
    channels: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    tiers: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Urgency:
    """Ordered urgency levels (least urgent first), the starting level and the rules."""

    levels: tuple[str, ...]
    default: str
    rules: tuple[UrgencyRule, ...]

    def rank(self, level: str) -> int:
        """Position of a level, 0 for the least urgent."""
        return self.levels.index(level)


@dataclass(frozen=True, slots=True)
class QueueMatch:
    """What a message must have to land in a queue; empty sets match anything."""

    channels: frozenset[str] = frozenset()
    tiers: frozenset[str] = frozenset()
    languages: frozenset[str] = frozenset()
    keywords: Keywords | None = None
    min_urgency: str | None = None


@dataclass(frozen=True, slots=True)
class Overflow:
    """When a queue's backlog is above `above`, new conversations go to `to`."""

    above: int
    to: str


@dataclass(frozen=True, slots=True)
class Queue:
    """A team's queue: what it takes, when it works, where it delivers, what backs it up."""

    # without `match` a queue takes nothing by itself: it is reached only as the default,
    # an overflow, a fallback or an escalation's reassignment

    name: str
    match: QueueMatch | None
    destinations: tuple[str, ...]
    calendar: str = ALWAYS_OPEN.name
    fallback: str | None = None
    escalation: str | None = None
    sticky: bool = True
    max_transfers: int = 3
    overflow: Overflow | None = None


@dataclass(frozen=True, slots=True)
class EscalationStep:
    """One step of a chain: at warn or breach (plus an offset), do `action` to `target`."""

    at: Literal["warn", "breach"]
    offset: timedelta
    action: Action
    target: str | None
    label: str


@dataclass(frozen=True, slots=True)
class Sla:
    """Shares of a target at which to warn and to send a status update, and pausing."""

    warn_at: float = 0.75
    status_update_at: float = 0.5
    pause_when_waiting_on_customer: bool = True


@dataclass(frozen=True, slots=True)
class Template:
    """What to tell a customer while the team is open, and while it is closed."""

    open: str
    closed: str


# never answer a machine: an acknowledgement to an auto-reply starts a mail loop
ALWAYS_SKIPPED = frozenset({"auto_reply", "mailing_list", "bounce", "abuse_report"})


@dataclass(frozen=True, slots=True)
class Acknowledge:
    """Templates by channel, then tier (or "default"), for acknowledgements and updates."""

    templates: Mapping[str, Mapping[str, Template]]
    status_updates: Mapping[str, Mapping[str, Template]]
    skip_tags: frozenset[str] = ALWAYS_SKIPPED
    time_format: str = "%a %d %b %H:%M %Z"
    unknown_name: str = "there"


@dataclass(frozen=True, slots=True)
class Destination:
    """An agents' tool a queue delivers to: its kind, its tool's settings, and what backs it up.

    `kind` names a registered agents' tool (webhook, slack, mailbox, ...); `config` is that
    tool's typed destination (where it delivers), opaque to the processors. `fallback`
    names the destination that takes over while this one is down; `deadline` bounds the
    retries of one delivery.
    """

    name: str
    kind: str
    config: Any = None
    fallback: str | None = None
    deadline: timedelta = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """The names a policy may use: registered channels, and each tool kind's destination shape.

    The router builds it from the connector registries, so a misspelt channel or tool is
    an error naming the file and line; the processors never import the connectors.
    """

    channels: frozenset[str]
    tools: Mapping[str, type[Any]]
    # channel → the ways a team may answer its customers (the first is its default); a
    # channel not listed takes a written reply only
    reply_modes: Mapping[str, tuple[ReplyMode, ...]] = field(default_factory=dict)
    # which customers each channel's replies reach in this deployment
    reach: Reach = field(default_factory=Reach)


@dataclass(frozen=True, slots=True)
class GuardRule:
    """A reply-guard rule: phrases that must not reach a customer, and warn or hold."""

    name: str
    phrases: Keywords
    action: Literal["warn", "hold"]
    # why it matters, told to the agent with the flag
    reason: str
    # only while the customer's problem is not solved yet (e.g. upselling)
    unresolved_only: bool = False


@dataclass(frozen=True, slots=True)
class PrivateReply:
    """Replies that leave a public thread for a private message, and the short public note left.

    Conditions all hold (empty ones hold always): the conversation's tier, queue and
    channel, and keywords in the reply's own text. A channel without public threads
    answers privately anyway and ignores it.
    """

    name: str
    reason: str
    tiers: frozenset[str] = frozenset()
    queues: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()
    keywords: Keywords | None = None
    # what stays in the public thread, e.g. "We've answered you in a private message."
    public_note: str | None = None

    def matches(self, *, tier: str | None, queue: str | None, channel: str, text: str) -> bool:
        """Whether a reply with these facts goes privately by this rule."""
        return ((not self.tiers or tier in self.tiers) and (not self.queues or queue in self.queues)
                and (not self.channels or channel in self.channels)
                and (self.keywords is None or self.keywords.find(text) is not None))


@dataclass(frozen=True, slots=True)
class FollowUp:
    """After resolve: wait `delay`, then ask the customer whether it is really solved."""

    delay: timedelta
    templates: Mapping[str, Mapping[str, str]]  # channel → tier (or "default") → text


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """How a resolved conversation closes, and the follow-up that precedes it."""

    # a resolved conversation closes after this long without a customer message
    close_after: timedelta = timedelta(hours=72)
    follow_up: FollowUp | None = None
    # words in the customer's answer to the follow-up that confirm it is solved
    confirm: Keywords | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """Everything the routing brain decides by, loaded from one file."""

    source: str
    default_tier: str
    tiers: Mapping[str, Tier]
    urgency: Urgency
    calendars: Mapping[str, Calendar]
    queues: Mapping[str, Queue]
    default_queue: str
    escalations: Mapping[str, tuple[EscalationStep, ...]]
    sla: Sla
    sticky_window: timedelta
    acknowledge: Acknowledge
    destinations: Mapping[str, Destination] = field(default_factory=dict)
    guard: tuple[GuardRule, ...] = ()
    lifecycle: Lifecycle = Lifecycle()
    private_replies: tuple[PrivateReply, ...] = ()
    # not from the file: the deployment's channels (Vocabulary.reach), so no plan is undeliverable
    reach: Reach = field(default_factory=Reach)

    def tier(self, name: str | None) -> Tier:
        """The named tier, or the default tier for an unknown or missing name."""
        return self.tiers.get(name or "", self.tiers[self.default_tier])

    def calendar_for(self, queue: str, tier: str | None = None) -> Calendar:
        """A tier's own calendar (e.g. 24x7 for enterprise) wins over the queue's."""
        own = self.tier(tier).calendar if tier else None
        return self.calendars[own or self.queues[queue].calendar]

    def reply_mode(self, channel: str, tier: str | None) -> ReplyMode:
        """How a customer of `tier` on `channel` is answered: the tier's choice, else a written reply."""
        return self.tier(tier).reply_modes.get(channel, "text")

    @property
    def contact_window(self) -> timedelta:
        """How far back a customer's earlier messages can matter to urgency rules."""
        windows = [r.repeated_contacts.within for r in self.urgency.rules if r.repeated_contacts]
        return max(windows, default=timedelta(0))

    @property
    def tiers_by_rank(self) -> tuple[str, ...]:
        """Tier names, highest rank first."""
        return tuple(sorted(self.tiers, key=lambda t: -self.tiers[t].rank))


class QueueChoice(msgspec.Struct, frozen=True):
    """The queue a message goes to on its own merits, the keyword that chose it, and why."""

    queue: str
    keyword: str | None
    reasons: tuple[str, ...]


class _Message(msgspec.Struct, frozen=True):
    channel: str
    tier: str
    urgency: str
    text: str
    language: str | None


def _match_evidence(match: QueueMatch, msg: _Message, policy: Policy) -> tuple[list[str], str | None] | None:
    """What made a queue match (nothing, for a catch-all) and its keyword; None if no match."""
    evidence: list[str] = []
    for wanted, have, label in ((match.channels, msg.channel, "channel"), (match.tiers, msg.tier, "tier"),
                                (match.languages, msg.language, "language")):
        if wanted:
            if have not in wanted:
                return None
            evidence.append(f"{label} {have}")
    if match.min_urgency is not None:
        if policy.urgency.rank(msg.urgency) < policy.urgency.rank(match.min_urgency):
            return None
        evidence.append(f"urgency {msg.urgency} ≥ {match.min_urgency}")
    found = None
    if match.keywords is not None:
        found = match.keywords.find(msg.text)
        if found is None:
            return None
        evidence.append(f"keyword {found!r}")
    return evidence, found


# the queues a message of one channel, tier, urgency and language can match, in order, each
# with its evidence and the keywords it still needs: worked out once, not per message
_Candidate = tuple[str, tuple[str, ...], "Keywords | None"]
_candidates_seen: Derived[tuple[str, str, str, str | None], tuple[_Candidate, ...]] = Derived(4096)


def _candidates(policy: Policy, channel: str, tier: str, urgency: str,
                language: str | None) -> tuple[_Candidate, ...]:
    key = (channel, tier, urgency, language)
    known = _candidates_seen.get(policy, key)
    if known is not None:
        return known
    msg = _Message(channel, tier, urgency, "", language)
    found: list[_Candidate] = []
    for candidate in policy.queues.values():
        if candidate.match is None:
            continue
        words = candidate.match.keywords
        matched = _match_evidence(replace(candidate.match, keywords=None), msg, policy)
        if matched is not None:
            found.append((candidate.name, tuple(matched[0]), words))
            if words is None:
                break  # nothing after a match that needs no keyword is ever reached
    return _candidates_seen.put(policy, key, tuple(found))


def _available(start: str, policy: Policy, down: frozenset[str]) -> tuple[str, list[str]]:
    """Follow fallbacks from `start` until a queue has a destination that is up."""
    if not down and policy.queues[start].destinations:
        return start, []  # the common case: nothing is down
    queue, reasons, seen = start, [], {start}
    while all(d in down for d in policy.queues[queue].destinations):
        fallback = policy.queues[queue].fallback
        if fallback is None or fallback in seen:
            reasons.append(f"queue={start}: every destination and fallback is down; kept for retry")
            return start, reasons
        reasons.append(f"queue={fallback}: destinations of {queue} are down, its fallback")
        queue = fallback
        seen.add(queue)
    return queue, reasons


def choose_queue(
    policy: Policy, *, channel: str, tier: str, urgency: str, text: str,
    language: str | None = None, backlog: Mapping[str, int] | None = None,
    down: frozenset[str] = frozenset(),
) -> QueueChoice:
    """First queue whose match holds (else the default), then overflow, then fallback."""
    queue, keyword, reasons = policy.default_queue, None, None
    folded = None
    for name, evidence, words in _candidates(policy, channel, tier, urgency, language):
        found = evidence
        if words is not None:
            folded = text.casefold() if folded is None else folded
            keyword = words.find_folded(folded)
            if keyword is None:
                continue
            found = (*evidence, f"keyword {keyword!r}")
        queue = name
        reasons = [f"queue={queue}: " + (", ".join(found) or "matches every message")]
        break
    if reasons is None:
        reasons = [f"queue={policy.default_queue}: no queue matched, default queue"]
    overflow = policy.queues[queue].overflow
    waiting = (backlog or {}).get(queue, 0)
    if overflow is not None and waiting > overflow.above:
        reasons.append(f"queue={overflow.to}: {queue} backlog {waiting} > {overflow.above}, overflow")
        queue = overflow.to
    queue, fallbacks = _available(queue, policy, down)
    return QueueChoice(queue, keyword, (*reasons, *fallbacks))
