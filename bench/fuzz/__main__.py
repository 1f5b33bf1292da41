"""Fuzz every parser of outside input, bounded: `python -m bench.fuzz [--seconds N] [--target NAME]`.

Each target runs in its own atheris process (bench/fuzz/harness.py) for `--seconds`,
its corpus kept under `.local/fuzz/<target>/` between runs and seeded from the fixtures.
Inputs that break a target's contract are saved in `tests/fixtures/fuzz/<target>/`,
where tests/unit/test_fuzz_regressions.py replays them; a run that finds a new one
exits 1. An input that hangs past `--hang` seconds ends libFuzzer's process: it is saved
as `hang-…` and the target starts again for the time left.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.fuzz.contract import DEFAULT_LIMIT_SECONDS
from bench.fuzz.targets import TARGETS

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / ".local" / "fuzz"
FINDINGS = ROOT / "tests" / "fixtures" / "fuzz"
_STATUS = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/")
_EXECUTED = re.compile(r"^stat::number_of_executed_units:\s*(\d+)", re.M)
# what libFuzzer leaves when it ends the process on an input, and what we call it
_ARTIFACTS = {"timeout-": "hang", "crash-": "crash", "oom-": "oom"}
_MAX_RESTARTS = 3
HEADER = f"{'target':<15} {'executions':>10} {'exec/s':>9} {'cov':>6} {'ft':>6} {'corpus':>7} {'findings':>9}"


@dataclass
class Outcome:
    """What one target's run did: executions, libFuzzer's coverage counters, new findings."""

    target: str
    executions: int = 0
    seconds: float = 0.0
    cov: int = 0
    ft: int = 0
    corpus: int = 0
    findings: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One row of the summary table."""
        rate = self.executions / self.seconds if self.seconds else 0.0
        return (f"{self.target:<15} {self.executions:>10,} {rate:>9,.0f} {self.cov:>6} {self.ft:>6} "
                f"{self.corpus:>7} {len(self.findings):>9}")


def _prepare(name: str) -> tuple[Path, Path, Path]:
    """The target's kept corpus, a fresh seeds directory and its artifacts directory."""
    base = STATE / name
    corpus, seeds, artifacts = base / "corpus", base / "seeds", base / "artifacts"
    shutil.rmtree(seeds, ignore_errors=True)
    for directory in (corpus, seeds, artifacts):
        directory.mkdir(parents=True, exist_ok=True)
    for data in TARGETS[name].seeds():
        (seeds / hashlib.sha1(data).hexdigest()).write_bytes(data)
    return corpus, seeds, artifacts


def _environment() -> dict[str, str]:
    """The environment without Switchboard's settings, the repository first on the path."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("SB_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _read_log(log: str, outcome: Outcome) -> None:
    """Add one process's executions and its last coverage counters to the outcome."""
    executed = _EXECUTED.findall(log)
    statuses = [m for m in (_STATUS.match(line) for line in log.splitlines()) if m]
    if statuses:
        _, cov, ft, corpus = (int(g) for g in statuses[-1].groups())
        outcome.cov, outcome.ft, outcome.corpus = max(outcome.cov, cov), max(outcome.ft, ft), corpus
    outcome.executions += int(executed[-1]) if executed else int(statuses[-1].group(1)) if statuses else 0


def _collect_artifacts(name: str, artifacts: Path, hang: float) -> list[str]:
    """Move what libFuzzer left (an input it stopped on) into the target's findings."""
    found = []
    for path in sorted(artifacts.iterdir()):
        kind = next((k for prefix, k in _ARTIFACTS.items() if path.name.startswith(prefix)), None)
        if kind is None:
            continue
        data = path.read_bytes()
        saved = FINDINGS / name / f"{kind}-{hashlib.sha1(data).hexdigest()[:12]}{TARGETS[name].suffix}"
        saved.parent.mkdir(parents=True, exist_ok=True)
        if not saved.exists():
            saved.write_bytes(data)
            why = f"no answer within {hang:.0f}s" if kind == "hang" else f"libFuzzer stopped: {kind}"
            found.append(f"{kind}: {why} -> {saved.relative_to(ROOT)}")
        path.unlink()
    return found


def fuzz(name: str, seconds: float, limit: float, hang: float) -> Outcome:
    """Fuzz one target for `seconds`, starting again after an input that ends the process."""
    corpus, seeds, artifacts = _prepare(name)
    outcome = Outcome(name)
    started = time.monotonic()
    for _ in range(_MAX_RESTARTS + 1):
        left = int(seconds - (time.monotonic() - started))
        if left < 1:
            break
        command = [sys.executable, "-m", "bench.fuzz.harness", name, str(FINDINGS / name), str(limit),
                   f"-max_total_time={left}", f"-timeout={int(hang)}", f"-max_len={TARGETS[name].max_len}",
                   "-print_final_stats=1", "-rss_limit_mb=2048", f"-artifact_prefix={artifacts}/",
                   str(corpus), str(seeds)]
        run = subprocess.run(command, capture_output=True, text=True, errors="replace", env=_environment(),
                             cwd=ROOT, timeout=left + hang + 120, check=False)
        (STATE / name / "log.txt").write_text(run.stderr)
        _read_log(run.stderr, outcome)
        for line in run.stdout.splitlines():
            if line.startswith("FINDING "):
                found = json.loads(line.removeprefix("FINDING "))
                outcome.findings.append(f"{found['kind']}: {found['summary']} -> "
                                        f"{Path(found['file']).relative_to(ROOT)}")
        stopped = _collect_artifacts(name, artifacts, hang)
        outcome.findings += stopped
        if run.returncode == 0 or not stopped:
            break
    outcome.seconds = time.monotonic() - started
    return outcome


def main(argv: list[str] | None = None) -> int:
    """Run the chosen targets one after another and print what each did."""
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="fuzzing time per target")
    parser.add_argument("--target", action="append", choices=sorted(TARGETS),
                        help="a target to fuzz (repeatable); all of them when not given")
    parser.add_argument("--limit", type=float, default=DEFAULT_LIMIT_SECONDS,
                        help="seconds one input may take before it is a finding")
    parser.add_argument("--hang", type=float, default=30.0,
                        help="seconds after which libFuzzer gives up on an input")
    args = parser.parse_args(argv)
    names = args.target or list(TARGETS)
    print(HEADER, flush=True)
    outcomes = []
    for name in names:
        outcome = fuzz(name, args.seconds, args.limit, args.hang)
        outcomes.append(outcome)
        print(outcome.line(), flush=True)
    for outcome in outcomes:
        for finding in outcome.findings:
            print(f"  {outcome.target}: {finding}")
    return 1 if any(o.findings for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
