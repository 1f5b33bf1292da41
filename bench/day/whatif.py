"""The recorded day again under another policy: the same seed, customers and arrivals; old vs new."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.day.report import table
from bench.day.run import ZONE, DayOptions, read_recorded, run_day
from bench.day.score import score
from router.settings import Settings

__all__ = ["replay", "rescore"]


def _options(recorded: dict[str, Any], policy: Path) -> DayOptions:
    o = recorded["options"]
    return DayOptions(
        seed=int(o["seed"]),
        per_day=float(o["per_day"]),
        speed=float(o["speed"]),
        hours=range(*o["hours"]),
        staffing=float(o["staffing"]),
        policy=policy,
    )


def replay(scorecard: Path, policy: Path) -> str:
    """Run the day `scorecard` records again under `policy`: both scorecards side by side, and failures."""
    old: dict[str, Any] = json.loads(scorecard.read_text())
    new = asyncio.run(run_day(_options(old, policy)))
    titles = [f"old: {Path(old['options']['policy']).name}", f"new: {policy.name}"]
    lines = [table(titles, [old["scorecard"]["numbers"], new.scorecard.numbers]), ""]
    for title, failures in zip(titles, (old["scorecard"]["failures"], new.scorecard.failures), strict=True):
        lines += [f"{title}:", *(f"  - {f}" for f in failures or ["no failures"])]
    return "\n".join(lines)


def rescore(scorecard: Path, settings: Settings | None = None) -> dict[str, Any]:
    """Score a recorded day again from its topics (after a change to the scorecard)."""
    recorded: dict[str, Any] = json.loads(scorecard.read_text())
    prefix = recorded["options"]["prefix"]
    deployment = (settings or Settings()).model_copy(update={"topic_prefix": prefix})

    card = score(
        asyncio.run(read_recorded(deployment)),
        until=datetime.fromisoformat(recorded["end"]),
        zones=(ZONE,),
        speed=float(recorded["options"]["speed"]),
    )
    recorded["scorecard"] = card.as_json()
    scorecard.write_text(json.dumps(recorded, indent=2, default=str))
    return recorded
