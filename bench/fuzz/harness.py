"""One target under atheris, in its own process (libFuzzer ends the process when it is done).

    python -m bench.fuzz.harness NAME FINDINGS_DIR LIMIT_SECONDS [libFuzzer flags and corpus dirs]

The project's packages and the stdlib `email` package are instrumented, so coverage
guides the mutations into the parsers. Every input goes through the contract
check; an input that breaks it is saved in FINDINGS_DIR (one per crash signature, a few
slow ones) and reported on stdout as a line `FINDING {json}`, and fuzzing goes on.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import atheris

from bench.fuzz.contract import Finding, Target, check

__all__ = ["INSTRUMENTED", "main"]

# what coverage is measured in: our packages and the stdlib's email package. Not PyYAML: its
# pure-Python scanner is most of a policy's parse time, and instrumented it runs 7 times slower
INSTRUMENTED = ("connectors", "processors", "router", "schemas", "email")
# slow inputs of one run kept at most: they are slow to replay
_MAX_SLOW = 3


class _Keeper:
    """Saves the inputs that break the contract: the first of each crash, a few slow ones."""

    def __init__(self, target: Target, directory: Path) -> None:
        self._target = target
        self._directory = directory
        self._slow = 0

    def keep(self, finding: Finding, data: bytes) -> None:
        """Save the input and report it, unless it adds nothing new."""
        if finding.kind == "slow":
            if self._slow >= _MAX_SLOW:
                return
            self._slow += 1
            name = f"slow-{hashlib.sha1(data).hexdigest()[:12]}"
        else:
            name = f"crash-{finding.key}"
        path = self._directory / f"{name}{self._target.suffix}"
        if path.exists():
            return
        self._directory.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        print("FINDING " + json.dumps({"file": str(path), "kind": finding.kind, "summary": finding.summary,
                                       "seconds": round(finding.seconds, 3)}), flush=True)


def main(argv: list[str]) -> None:
    """Fuzz one target until libFuzzer's limits (-max_total_time, -runs) end the process."""
    name, findings, limit, libfuzzer_args = argv[1], Path(argv[2]), float(argv[3]), argv[4:]
    with atheris.instrument_imports(include=list(INSTRUMENTED)):
        from bench.fuzz.targets import TARGETS
    target = TARGETS[name]
    keeper = _Keeper(target, findings)

    def one_input(data: bytes) -> None:
        finding = check(target, data, limit)
        if finding is not None:
            keeper.keep(finding, data)

    atheris.Setup([argv[0], *libfuzzer_args], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
