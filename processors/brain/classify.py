"""Classify: a message's sentiment and urgency under the policy's rules, with the evidence.

Sentiment is VADER's compound score (made for short social text). VADER's own
`polarity_scores` re-lowercases the whole message for every sentiment word, which makes
it quadratic: fine for a tweet, a few hundred per second for a long email. `sentiment`
scores with VADER's lexicon and rules in one linear pass instead, and the tests hold it
to identical scores on a support corpus.
"""

from __future__ import annotations

import math
import string
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache

import msgspec
from vaderSentiment import vaderSentiment as vader

from processors.policy.derived import Derived
from processors.policy.model import Policy, UrgencyRule, format_duration

__all__ = ["Classification", "classify", "sentiment"]

_NEGATE = frozenset(vader.NEGATE)
_BOOST: dict[str, float] = vader.BOOSTER_DICT
_SPECIAL = vader.SPECIAL_CASES
_SO_THIS = ("so", "this")
_PUNCTUATION = string.punctuation
_N_SCALAR = float(vader.N_SCALAR)
_C_INCR = float(vader.C_INCR)
# the words of VADER's phrases (idioms, "kind of"): a word near none of them is in no phrase
_IDIOM_WORDS = frozenset(w for phrase in (*_SPECIAL, *_BOOST) if " " in phrase for w in phrase.split())


@dataclass(frozen=True, slots=True)
class _Lexicon:
    words: dict[str, float]
    emojis: dict[str, str]
    emoji_chars: frozenset[str]
    # no emoji of VADER's is an ASCII character: an ASCII text has none to describe
    ascii_free: bool


@cache
def _lexicon() -> _Lexicon:
    # loading VADER's lexicon files takes ~100 ms: once per process, on first use
    analyzer = vader.SentimentIntensityAnalyzer()
    emojis: dict[str, str] = analyzer.emojis
    chars = frozenset(e for e in emojis if len(e) == 1)
    return _Lexicon(analyzer.lexicon, emojis, chars, not any(c.isascii() for c in chars))


def _describe_emojis(text: str, lex: _Lexicon) -> str:
    if (lex.ascii_free and text.isascii()) or lex.emoji_chars.isdisjoint(text):
        return text
    out: list[str] = []
    prev_space = True
    for ch in text:
        if ch in lex.emoji_chars:
            if not prev_space:
                out.append(" ")
            out.append(lex.emojis[ch])
            prev_space = False
        else:
            out.append(ch)
            prev_space = ch == " "
    return "".join(out)


def _negated(word: str) -> bool:
    return word in _NEGATE or "n't" in word


def _never_so(low: list[str], k: int, i: int) -> bool:
    if k == 1:
        return low[i - 2] == "never" and low[i - 1] in _SO_THIS
    # VADER's precedence, kept: "so"/"this" right before the word counts without "never"
    return k == 2 and ((low[i - 3] == "never" and low[i - 2] in _SO_THIS) or low[i - 1] in _SO_THIS)


def _without_doubt(low: list[str], k: int, i: int) -> bool:
    if k == 1:
        return low[i - 2] == "without" and low[i - 1] == "doubt"
    return k == 2 and low[i - 3] == "without" and "doubt" in (low[i - 2], low[i - 1])


def _negation(v: float, low: list[str], k: int, i: int) -> float:
    if _never_so(low, k, i):
        return v * 1.25
    if _without_doubt(low, k, i) or not _negated(low[i - k - 1]):
        return v
    return v * _N_SCALAR


def _idioms(v: float, low: list[str], i: int) -> float:
    # every idiom and booster phrase has two words or more, all of them idiom words
    if _IDIOM_WORDS.isdisjoint(low[i - 3:i + 3]):
        return v
    sequences = (f"{low[i - 1]} {low[i]}", f"{low[i - 2]} {low[i - 1]} {low[i]}",
                 f"{low[i - 2]} {low[i - 1]}", f"{low[i - 3]} {low[i - 2]} {low[i - 1]}",
                 f"{low[i - 3]} {low[i - 2]}")
    for seq in sequences:
        if seq in _SPECIAL:
            v = _SPECIAL[seq]
            break
    if len(low) - 1 > i and f"{low[i]} {low[i + 1]}" in _SPECIAL:
        v = _SPECIAL[f"{low[i]} {low[i + 1]}"]
    if len(low) - 1 > i + 1 and f"{low[i]} {low[i + 1]} {low[i + 2]}" in _SPECIAL:
        v = _SPECIAL[f"{low[i]} {low[i + 1]} {low[i + 2]}"]
    for n_gram in (sequences[3], sequences[4], sequences[2]):
        if n_gram in _BOOST:
            v = v + _BOOST[n_gram]
    return v


def _boost(word: str, lowered: str, v: float, cap_diff: bool, k: int) -> float:
    """VADER's scalar_inc_dec for a booster `k + 1` words before, damped with distance as VADER does."""
    s = -_BOOST[lowered] if v < 0 else _BOOST[lowered]
    if cap_diff and word.isupper():
        s = s + _C_INCR if v > 0 else s - _C_INCR
    if s != 0 and k > 0:
        s = s * (0.95 if k == 1 else 0.9)
    return s


def _valence(words: list[str], low: list[str], i: int, cap_diff: bool, lex: dict[str, float]) -> float:
    word = low[i]
    v = lex[word]
    if word == "no" and i != len(low) - 1 and low[i + 1] in lex:
        v = 0.0
    if (i > 0 and low[i - 1] == "no") or (i > 1 and low[i - 2] == "no") or (
            i > 2 and low[i - 3] == "no" and low[i - 1] in ("or", "nor")):
        v = lex[word] * _N_SCALAR
    if words[i].isupper() and cap_diff:
        v = v + _C_INCR if v > 0 else v - _C_INCR
    for k in range(min(i, 3)):
        before = low[i - k - 1]
        if before in lex:
            continue
        if before in _BOOST:  # most words boost nothing: no call for them
            v = v + _boost(words[i - k - 1], before, v, cap_diff, k)
        if k == 0:
            if _negated(before):
                v = v * _N_SCALAR
        else:
            v = _negation(v, low, k, i)
            if k == 2:
                v = _idioms(v, low, i)
    # "least" dampens, except in "at least" and "very least"
    if i > 0 and low[i - 1] == "least" and "least" not in lex and (
            i == 1 or low[i - 2] not in ("at", "very")):
        v = v * _N_SCALAR
    return v


def _but(sentiments: list[float], but_at: int) -> None:
    # VADER finds each score's position with list.index, so equal scores are scaled at
    # their first position: kept on purpose for identical results; zeros never change.
    # Positions holding each value, ascending, stand in for list.index: linear, not quadratic
    holding: dict[float, list[int]] = {}
    nonzero = [k for k, v in enumerate(sentiments) if v != 0]
    for k in nonzero:
        holding.setdefault(sentiments[k], []).append(k)
    for k in nonzero:
        value = sentiments[k]
        first = holding[value][0]
        if first == but_at:
            continue
        scaled = value * (0.5 if first < but_at else 1.5)
        sentiments[first] = scaled
        holding[value].pop(0)
        if not holding[value]:
            del holding[value]
        insort(holding.setdefault(scaled, []), first)


def _compound(sentiments: list[float], text: str) -> float:
    if not sentiments:
        return 0.0
    total = float(sum(sentiments))
    questions = text.count("?")
    emphasis = min(text.count("!"), 4) * 0.292 + (
        (questions * 0.18 if questions <= 3 else 0.96) if questions > 1 else 0)
    if total > 0:
        total += emphasis
    elif total < 0:
        total -= emphasis
    # VADER's normalize, inlined; alpha 15 is its default
    return round(max(-1.0, min(1.0, total / math.sqrt(total * total + 15))), 4)


def _words(text: str) -> list[str]:
    """Each word without its punctuation, unless that leaves 2 characters or fewer (an emoticon)."""
    return [w if len(stripped := w.strip(_PUNCTUATION)) <= 2 else stripped for w in text.split()]


def sentiment(text: str) -> float:
    """VADER's compound score of `text`, -1 (most negative) to 1, in linear time."""
    lex = _lexicon()
    text = _describe_emojis(text, lex).strip()
    words = _words(text)
    # words hold no whitespace and none is empty: one lower() for all of them, in C
    low = " ".join(words).lower().split(" ") if words else []
    words_lex = lex.words
    # most words carry no sentiment: score only those that do (VADER scores the rest 0)
    hits = [i for i, word in enumerate(low) if word in words_lex]
    if not hits:
        return 0.0
    capitals = sum(map(str.isupper, words))
    cap_diff = 0 < len(words) - capitals < len(words)  # VADER's allcap_differential
    scores = [0.0] * len(low)
    last = len(low) - 1
    for i in hits:
        word = low[i]
        if word in _BOOST or (word == "kind" and i < last and low[i + 1] == "of"):
            continue
        scores[i] = _valence(words, low, i, cap_diff, words_lex)
    if "but" in low:
        _but(scores, low.index("but"))
    return _compound(scores, text)


class Classification(msgspec.Struct, frozen=True):
    """How urgent a message is, its sentiment, and every rule that fired, with evidence."""

    urgency: str
    sentiment: float  # VADER's compound score, rounded to 4 places as VADER rounds it
    reasons: tuple[str, ...]


class _Facts(msgspec.Struct):
    """One message's facts as the rules read them (one per message: a struct is built in C)."""

    text: str
    channel: str
    tier: str
    tags: frozenset[str]
    sentiment: float
    # oldest first, so a window's count is two bisections
    recent_contacts: Sequence[datetime]
    at: datetime
    folded: str


# each check gives its evidence, "" when the rule has no such condition, None when it fails
def _channel(rule: UrgencyRule, facts: _Facts) -> str | None:
    if not rule.channels:
        return ""
    return f"channel {facts.channel}" if facts.channel in rule.channels else None


def _tier(rule: UrgencyRule, facts: _Facts) -> str | None:
    if not rule.tiers:
        return ""
    return f"tier {facts.tier}" if facts.tier in rule.tiers else None


def _tag(rule: UrgencyRule, facts: _Facts) -> str | None:
    if not rule.tags:
        return ""
    tags = sorted(rule.tags & facts.tags)
    return f"tag {tags[0]}" if tags else None


def _sentiment(rule: UrgencyRule, facts: _Facts) -> str | None:
    limit = rule.sentiment_at_most
    if limit is None:
        return ""
    return f"sentiment {facts.sentiment:.2f} ≤ {limit:g}" if facts.sentiment <= limit else None


def _repeated(rule: UrgencyRule, facts: _Facts) -> str | None:
    if rule.repeated_contacts is None:
        return ""
    within = rule.repeated_contacts.within
    since = facts.at - within
    times = facts.recent_contacts
    count = 1 + bisect_right(times, facts.at) - bisect_left(times, since)
    if count < rule.repeated_contacts.count:
        return None
    return f"{count} messages from this customer within {format_duration(within)}"


def _keyword(rule: UrgencyRule, facts: _Facts) -> str | None:
    if rule.keywords is None:
        return ""
    found = rule.keywords.find_folded(facts.folded)
    return f"keyword {found!r}" if found is not None else None


Check = Callable[[UrgencyRule, _Facts], "str | None"]
# a rule that can still fire for a (channel, tier, tags): the evidence those give, joined,
# and the checks left for each message (sentiment, repeated contacts, keywords), cheapest first
_Step = tuple[UrgencyRule, tuple[str, ...], str, tuple[Check, ...]]
_STATIC: tuple[Check, ...] = (_channel, _tier, _tag)
_DYNAMIC: tuple[Check, ...] = (_sentiment, _repeated, _keyword)
_NO_TAGS: frozenset[str] = frozenset()  # most messages carry no tags
_steps_seen: Derived[tuple[str, str, frozenset[str]], tuple[_Step, ...]] = Derived(1024)


def _steps(rules: tuple[UrgencyRule, ...], facts: _Facts) -> tuple[_Step, ...]:
    """The rules that the message's channel, tier and tags allow, worked out once per combination."""
    key = (facts.channel, facts.tier, facts.tags)
    known = _steps_seen.get(rules, key)
    if known is not None:
        return known
    steps: list[_Step] = []
    for rule in rules:
        static = [check(rule, facts) for check in _STATIC]
        if any(evidence is None for evidence in static):
            continue
        found = tuple(evidence for evidence in static if evidence)
        steps.append((rule, found, ", ".join(found), tuple(check for check, needed in zip(_DYNAMIC, (
            rule.sentiment_at_most is not None, rule.repeated_contacts is not None,
            rule.keywords is not None), strict=True) if needed)))
    return _steps_seen.put(rules, key, tuple(steps))


def _fired(rules: tuple[UrgencyRule, ...], facts: _Facts) -> list[tuple[UrgencyRule, str]]:
    """Every rule whose conditions all hold, in the policy's order, with why (cheapest check first)."""
    fired: list[tuple[UrgencyRule, str]] = []
    for rule, static, joined, dynamic in _steps(rules, facts):
        if not dynamic:
            fired.append((rule, joined))
            continue
        if len(dynamic) == 1:  # the common rule: one condition a message has to meet
            evidence = dynamic[0](rule, facts)
            if evidence is not None:
                fired.append((rule, f"{joined}, {evidence}" if joined else evidence))
            continue
        found = list(static)
        for check in dynamic:
            evidence = check(rule, facts)
            if evidence is None:
                break
            found.append(evidence)
        else:
            fired.append((rule, ", ".join(found)))
    return fired


def classify(
    text: str, channel: str, tier: str, recent_contacts: Sequence[datetime], policy: Policy,
    *, at: datetime, tags: Sequence[str] = (),
) -> Classification:
    """Score sentiment and apply the urgency rules: every raise_to first, then raise_by."""
    # recent_contacts: times of the customer's earlier messages on any channel, as far back
    # as policy.contact_window; `at`: this message's time; tags: the connector's markers
    urgency = policy.urgency
    facts = _Facts(text, channel, tier, frozenset(tags) if tags else _NO_TAGS, sentiment(text),
                   sorted(recent_contacts), at, text.casefold())
    fired = _fired(urgency.rules, facts)
    level, reasons = urgency.rank(urgency.default), []
    for rule, ev in fired:
        if rule.raise_to is not None:
            target = urgency.rank(rule.raise_to)
            met = "" if target > level else f", already {urgency.levels[level]}"
            reasons.append(f"urgency={rule.raise_to}: {ev} (rule {rule.name}{met})")
            level = max(level, target)
    raised = level
    for rule, ev in fired:
        if rule.raise_by:
            reasons.append(f"urgency +{rule.raise_by}: {ev} (rule {rule.name})")
            raised += rule.raise_by
    top = len(urgency.levels) - 1
    if raised != level:
        capped = " (capped at the top level)" if raised > top else ""
        reasons.append(f"urgency={urgency.levels[min(raised, top)]}: "
                       f"{urgency.levels[level]} +{raised - level}{capped}")
    if not fired:
        reasons.append(f"urgency={urgency.default}: no urgency rule applied")
    return Classification(urgency.levels[min(raised, top)], facts.sentiment, tuple(reasons))
