"""A digest for people and for tools: JSON, CSV (one tidy row per number) and a readable report."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import msgspec

from schemas.insights import InsightDigest

__all__ = ["as_csv", "as_json", "as_text", "rows"]

CSV_HEADER = ("section", "key", "metric", "value")
_BAR = 30


def as_json(digest: InsightDigest) -> dict[str, Any]:
    """The digest as JSON-ready data, the same shape as on sb.insights.v1."""
    data: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(digest))
    return data


def rows(d: InsightDigest) -> Iterator[tuple[str, str, str, Any]]:
    """Every number of the digest as (section, key, metric, value)."""
    window = f"{d.since.isoformat()}/{d.until.isoformat()}"
    yield "window", window, "messages", d.messages
    yield "window", window, "conversations", d.conversations
    for section, counts in (("intent", d.by_intent), ("queue", d.by_queue), ("channel", d.by_channel)):
        for c in counts:
            yield section, c.key, "messages", c.messages
    for p in d.sentiment:
        yield "sentiment", p.start.isoformat(), "messages", p.messages
        yield "sentiment", p.start.isoformat(), "mean", "" if p.mean is None else p.mean
        yield "sentiment", p.start.isoformat(), "negative", p.negative
    yield "repeat", "all", "customers", d.repeat_customers
    yield "repeat", "all", "messages", d.repeat_messages
    for r in d.top_repeat:
        yield "repeat", r.customer_id, "messages", r.messages
    yield "breach", "all", "breaches", d.breaches
    for b in d.breach_causes:
        yield "breach", b.cause, "breaches", b.breaches
    yield "guard", "all", "held", d.held
    for g in d.guard:
        yield "guard", g.rule, "held", g.held
        yield "guard", g.rule, "warned", g.warned
    for name in ("sent", "confirmed", "not_solved", "closed_without_answer"):
        yield "follow_up", "all", name, getattr(d.follow_ups, name)


def as_csv(digest: InsightDigest) -> str:
    """The digest as CSV with a header, one number a row: easy to pivot in a spreadsheet."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    writer.writerows(rows(digest))
    return out.getvalue()


def _table(title: str, counts: list[tuple[str, int]], total: int) -> list[str]:
    if not counts:
        return [f"{title}: none", ""]
    width = max(len(k) for k, _ in counts)
    top = max(n for _, n in counts) or 1
    lines = [title]
    for key, n in counts:
        share = f"{n / total:.0%}" if total else "-"
        lines.append(f"  {key:<{width}}  {n:>6}  {share:>4}  {'█' * max(1, round(n / top * _BAR))}")
    return [*lines, ""]


def _trend(d: InsightDigest) -> list[str]:
    scored = [p for p in d.sentiment if p.mean is not None]
    if not scored:
        return ["sentiment: no scored messages", ""]
    lines = ["sentiment (mean of -1..1, negative messages)"]
    for p in scored:
        # a bar from the middle: left for negative, right for positive
        half = round(abs(p.mean or 0.0) * 10)
        bar = (" " * (10 - half) + "◀" * half + "|" + " " * 10) if (p.mean or 0) < 0 else (
            " " * 10 + "|" + "▶" * half)
        lines.append(f"  {p.start:%Y-%m-%d %H:%M}  {p.mean:+.2f}  {p.negative:>3} of {p.messages:<4} {bar}")
    return [*lines, ""]


def as_text(d: InsightDigest) -> str:
    """The digest as a report a person reads top to bottom."""
    lines = [f"digest {d.since:%Y-%m-%d %H:%M} to {d.until:%Y-%m-%d %H:%M} UTC: "
             f"{d.messages} messages in {d.conversations} conversations", ""]
    lines += _table("by intent (what the policy recognised in the words)",
                    [(c.key, c.messages) for c in d.by_intent], d.messages)
    lines += _table("by queue", [(c.key, c.messages) for c in d.by_queue], d.messages)
    lines += _table("by channel", [(c.key, c.messages) for c in d.by_channel], d.messages)
    lines += _trend(d)
    lines.append(f"repeat contacts: {d.repeat_customers} customers wrote more than once "
                 f"({d.repeat_messages} messages)")
    lines += [f"  {r.customer_id}  {r.messages} messages, {r.conversations} conversations, "
              f"on {', '.join(r.channels)}" for r in d.top_repeat]
    lines.append("")
    lines += _table(f"breaches: {d.breaches}, top causes", [(b.cause, b.breaches) for b in d.breach_causes],
                    d.breaches)
    lines.append(f"replies held by the guard: {d.held}")
    lines += [f"  {g.rule}: {g.held} held, {g.warned} sent with a warning" for g in d.guard]
    f = d.follow_ups
    lines += ["", f"follow-ups: {f.sent} sent; {f.confirmed} confirmed solved, {f.not_solved} not solved "
              f"(reopened), {f.closed_without_answer} closed without an answer"]
    if d.skipped:
        lines.append(f"note: {d.skipped} records could not be read and were left out")
    return "\n".join(lines)
