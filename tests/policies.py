"""Policies for tests whose processes run on the real clock: the example, always open.

A process under test reads the wall clock, so any calendar with closed hours makes what
it says ("will answer by …" or "back Mon 08:00") depend on when the suite runs. Tests
that start processes use the example policy with its team calendar open every minute of
every day and no holidays; tests of closed hours give the clock to the code instead.
"""

from __future__ import annotations

from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "deploy" / "policy.example.yaml"
TEAM_CALENDAR = """\
  eu-support:
    timezone: Europe/Berlin
    hours:
      - mon-fri 08:00-18:00
      - sat 10:00-14:00
    holidays: [2026-01-01, 2026-04-03, 2026-04-06, 2026-05-01, 2026-12-24, 2026-12-25, 2026-12-26]
"""
ALWAYS_OPEN = """\
  eu-support:
    timezone: Europe/Berlin
    hours:
      - mon-sun 00:00-24:00
    holidays: []
"""


def example_policy(directory: Path, edits: dict[str, str] | None = None) -> Path:
    """Write the example policy, always open and with `edits` applied, into `directory`."""
    text = EXAMPLE.read_text()
    for old, new in {TEAM_CALENDAR: ALWAYS_OPEN, **(edits or {})}.items():
        assert old in text, f"the example policy no longer has {old!r}"
        text = text.replace(old, new)
    path = directory / "policy.yaml"
    path.write_text(text)
    return path
