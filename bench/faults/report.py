"""The results: a table for people (plain or Markdown) and a JSON document for machines."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.faults.count import Counts

__all__ = ["table", "write_json"]

COLUMNS = (
    ("scenario", "scenario"), ("faults", "faults"), ("api", "api in"), ("mail", "mail in"),
    ("replies", "replies"), ("lost", "lost"), ("duplicate_conversations", "dup conv"),
    ("sent_twice", "sent twice"), ("replies_lost", "reply lost"), ("crashes", "crashes"),
    ("uncertain", "uncertain"), ("uncertain_unsent", "unsent"), ("failed", "failed"),
    ("rerouted", "re-routed"), ("receipts_missing", "no receipt"), ("not_handed", "not handed"),
    ("first_s", "first s"), ("drained_s", "drained s"),
)


def _cell(row: Counts, key: str) -> str:
    value = getattr(row, key)
    if key == "drained_s" and value is None:
        return "never"
    if value is None:
        return "-"
    text = f"{value:g}" if isinstance(value, float) else str(value)
    if key in row.failures():
        text += " !"
    elif row.may_double and key in ("duplicate_conversations", "sent_twice") and value:
        text += " *"
    return text


def table(rows: list[Counts], *, markdown: bool = False) -> str:
    """The rows as an aligned text table, or a Markdown one."""
    head = [title for _, title in COLUMNS]
    body = [[_cell(r, key) for key, _ in COLUMNS] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in body])
    widths = [max(len(c) for c in column) for column in zip(head, *body, strict=True)]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))
                     for cells in [head, *body])


def write_json(path: Path, meta: dict[str, Any], rows: list[Counts]) -> None:
    """Write the run's description and every row, examples included."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {**meta, "scenarios": [{**asdict(r), "failures": r.failures()} for r in rows]}
    path.write_text(json.dumps(document, indent=2) + "\n")
