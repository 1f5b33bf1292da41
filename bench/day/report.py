"""The scorecard as a table, one column per run (nominal, understaffed, a what-if)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["rows", "table"]


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def rows(n: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) lines of one scorecard's numbers."""
    out = [("messages routed / conversations", f"{n['messages_routed']} / {n['conversations']}")]
    for tier, c in n["first_response_sla"].items():
        out.append(
            (
                f"first-response SLA {tier}",
                f"{_pct(c.get('attainment'))} ({c.get('met', 0)} met, "
                f"{c.get('missed', 0)} missed, {c.get('pending', 0)} open)",
            )
        )
    for channel, c in n.get("first_response_by_channel", {}).items():
        calls = f", {c['called_back']} by call" if c.get("called_back") else ""
        out.append(
            (
                f"first response on {channel}",
                f"{_pct(c.get('attainment'))} in SLA ({c.get('conversations', 0)} conversations, "
                f"{c.get('unanswered', 0)} unanswered{calls})",
            )
        )
    p = n["promises"]
    out.append(
        (
            "promises kept",
            f"{_pct(p['share_kept'])} ({p['kept']} kept, {p['broken']} broken, {p['open']} open)",
        )
    )
    out.append(
        (
            "status update before breach",
            f"{_pct(n['share_status_before_breach'])} "
            f"({n['status_update_before_breach']} of {n['breaches']} breaches)",
        )
    )
    d = n["duplicates"]
    out.append(
        (
            "duplicate conversations",
            f"{d['events_in_two_conversations']} events doubled, {d['parallel_conversations']} parallel",
        )
    )
    t = n["transfers"]
    out.append(
        (
            "conversations with <= 1 transfer",
            f"{_pct(t['share_at_most_one'])} ({t['conversations_transferred']} transferred, max {t['max']})",
        )
    )
    h = n["history"]
    out.append(
        (
            "repeat contacts carrying history",
            f"{_pct(h['share'])} ({h['carrying_history']} of {h['routed_after_earlier_contact']})",
        )
    )
    g = n["guard"]
    out.append(("guard held / warned", f"{g['held']} / {g['sent_with_warning']}"))
    a = n["after_resolution"]
    out.append(
        (
            "resolved / follow-ups / reopened / closed",
            f"{a['resolved']} / {a['follow_ups_sent']} / {a['reopened']} / {a['closed']}",
        )
    )
    d2 = n["tool_down"]
    p50, worst = d2["seconds_to_hand_off_p50"], d2["seconds_to_hand_off_max"]
    out.append(
        (
            "tool down: to fallback, hand-off p50/max",
            f"{d2['handed_to_fallback']}, {p50 and round(p50 / 60, 1)} / {worst and round(worst / 60, 1)} min"
            f" ({d2['failed_handoffs']} failed)",
        )
    )
    return out


def table(titles: Sequence[str], numbers: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of several scorecards side by side."""
    columns = [dict(rows(n)) for n in numbers]
    lines = ["| | " + " | ".join(titles) + " |", "|---|" + "---|" * len(titles)]
    # every label of any column, in first-seen order (channels differ between days)
    labels = list(dict.fromkeys(label for c in columns for label in c))
    for label in labels:
        lines.append(f"| {label} | " + " | ".join(c.get(label, "") for c in columns) + " |")
    return "\n".join(lines)


def shares(n: dict[str, Any]) -> dict[str, float | None]:
    """The scorecard's shares (0..1), by a label: what the targets are set on."""
    out: dict[str, float | None] = {
        f"first-response SLA {tier}": c.get("attainment") for tier, c in n["first_response_sla"].items()
    }
    out |= {
        f"first response in SLA on {channel}": c.get("attainment")
        for channel, c in n.get("first_response_by_channel", {}).items()
    }
    out["promises kept"] = n["promises"]["share_kept"]
    out["status update before breach"] = n["share_status_before_breach"]
    out["conversations with <= 1 transfer"] = n["transfers"]["share_at_most_one"]
    out["repeat contacts carrying history"] = n["history"]["share"]
    return out


def aggregate(days: Sequence[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Mean and minimum of every share over several days (seeds); days without the share are left out."""
    per_day = [shares(n) for n in days]
    labels = list(dict.fromkeys(label for d in per_day for label in d))
    out: dict[str, dict[str, float | None]] = {}
    for label in labels:
        values = [v for d in per_day if (v := d.get(label)) is not None]
        out[label] = {
            "mean": sum(values) / len(values) if values else None,
            "min": min(values) if values else None,
            "days": len(values),
        }
    return out


def aggregate_table(titles: Sequence[str], aggregates: Sequence[dict[str, dict[str, float | None]]]) -> str:
    """Mean / min of each share, one column per group of seeds."""
    lines = ["| | " + " | ".join(titles) + " |", "|---|" + "---|" * len(titles)]
    labels = list(dict.fromkeys(label for a in aggregates for label in a))
    for label in labels:
        cells = []
        for a in aggregates:
            got = a.get(label)
            shown = f"{_pct(got['mean'])} / {_pct(got['min'])} ({got['days']:g} days)" if got else ""
            cells.append(shown)
        lines.append(f"| {label} (mean / min) | " + " | ".join(cells) + " |")
    return "\n".join(lines)
