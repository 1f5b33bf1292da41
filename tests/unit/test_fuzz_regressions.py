"""Every input the fuzzer saved keeps its target's contract now, replayed without atheris.

`python -m bench.fuzz` saves an input that raised an undocumented exception or took too
long under tests/fixtures/fuzz/<target>/; each is one case here, judged by the same
`check` the fuzzer uses (only the documented exceptions, within the time bound).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.fuzz.contract import Target, check
from bench.fuzz.targets import TARGETS
from schemas.errors import ParseError
from tests.paths import FIXTURES

SAVED = FIXTURES / "fuzz"
CASES = sorted((d.name, p) for d in SAVED.iterdir() if d.is_dir() for p in d.iterdir() if p.is_file())


@pytest.mark.parametrize(("target", "path"), CASES, ids=[f"{t}/{p.name}" for t, p in CASES])
def test_saved_input_keeps_the_contract(target: str, path: Path) -> None:
    finding = check(TARGETS[target], path.read_bytes())
    assert finding is None, finding.summary


def test_every_saved_input_belongs_to_a_target() -> None:
    assert CASES
    assert {d.name for d in SAVED.iterdir() if d.is_dir()} <= set(TARGETS)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_seed_keeps_the_contract(name: str) -> None:
    target = TARGETS[name]
    seeds = target.seeds()
    assert seeds
    assert [f.summary for f in (check(target, s) for s in seeds) if f] == []


def _raises(error: Exception) -> Target:
    def run(data: bytes) -> None:
        raise error

    return Target("fake", run, (ParseError,), list)


def test_an_undocumented_exception_is_a_crash_naming_where() -> None:
    finding = check(_raises(KeyError("x")), b"")
    assert finding is not None
    assert finding.kind == "crash"
    assert finding.signature.startswith("KeyError at tests/unit/test_fuzz_regressions.py:")
    assert "KeyError: 'x'" in finding.summary


def test_a_documented_exception_keeps_the_contract() -> None:
    assert check(_raises(ParseError("not a mail")), b"") is None


def test_an_answer_past_the_bound_is_slow() -> None:
    finding = check(Target("fake", len, (), list), b"abc", limit=-1.0)
    assert finding is not None
    assert (finding.kind, finding.signature) == ("slow", "slow")
