"""The offline brain harness: its fixed instant, and how it turns valgrind's counts into a message's."""

from __future__ import annotations

import os
import stat
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench import brain

NIGHT = datetime(2026, 12, 12, 23, 30, tzinfo=UTC)


def test_every_message_arrives_and_is_decided_at_the_chosen_instant() -> None:
    work = brain._work(8, 3, NIGHT)
    assert {m.message.received_at for m in work.decoded} == {NIGHT}
    assert {o.routed.routed_at for o in work.outcomes} == {NIGHT}
    assert [len(o.routed.history) for o in work.outcomes] == [3] * 8


# stands in for valgrind: runs the counted child for real, then reports 1,000 instructions of
# start-up and 7 a message a pass, in valgrind's own words and number format
FAKE_VALGRIND = f"""#!{sys.executable}
import re, subprocess, sys
command = [a for a in sys.argv[1:] if not a.startswith("--tool") and not a.startswith("--cache")]
subprocess.run(command, check=True)
passes = int(command[command.index("--passes") + 1])
messages = int(command[command.index("--messages") + 1])
print(f"==4242== I   refs:      {{1_000 + 7 * messages * passes:,}}", file=sys.stderr)
"""


def test_instructions_are_the_difference_of_one_warm_pass_per_message(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "valgrind"
    fake.write_text(FAKE_VALGRIND)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert brain.instructions(50, 2, NIGHT) == 7
