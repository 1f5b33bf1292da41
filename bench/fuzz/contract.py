"""What every fuzz target promises: only its documented exceptions, and an answer within a time bound.

`check` runs one input through one target and returns the `Finding` it breaks the
contract with, or None. The fuzz harness and the regression test share it, so a saved
input is judged the same way with and without atheris.
"""

from __future__ import annotations

import hashlib
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["DEFAULT_LIMIT_SECONDS", "Finding", "Target", "check"]

DEFAULT_LIMIT_SECONDS = 2.0
_ROOT = Path(__file__).resolve().parents[2]
_HERE = Path(__file__).resolve().parent


@dataclass(frozen=True, slots=True)
class Target:
    """One parser of outside input, the exceptions its contract allows, and its seeds."""

    name: str
    # runs one input; returning is success, and so is raising one of `allowed`
    run: Callable[[bytes], object]
    allowed: tuple[type[BaseException], ...]
    seeds: Callable[[], list[bytes]]
    # extension of saved inputs, so a fixture opens as what it is (.eml, .json, .yaml)
    suffix: str = ".bin"
    # longest input the fuzzer makes
    max_len: int = 4096


@dataclass(frozen=True, slots=True)
class Finding:
    """An input that broke a target's contract: an exception it may not raise, or too slow."""

    target: str
    kind: Literal["crash", "slow"]
    # the same for every input that fails the same way: exception type and where it was raised
    signature: str
    summary: str
    seconds: float

    @property
    def key(self) -> str:
        """A short stable name for the signature, used in saved files' names."""
        return hashlib.sha1(self.signature.encode()).hexdigest()[:12]


def check(target: Target, data: bytes, limit: float = DEFAULT_LIMIT_SECONDS) -> Finding | None:
    """Run one input through `target`; the Finding if it breaks the contract, else None."""
    started = time.perf_counter()
    try:
        target.run(data)
    except target.allowed:
        pass
    except Exception as e:  # noqa: BLE001 - any other exception is what this returns
        seconds = time.perf_counter() - started
        where = _where(e)
        return Finding(target.name, "crash", f"{type(e).__name__} at {where}",
                       f"{type(e).__name__}: {str(e)[:200]} (at {where})", seconds)
    seconds = time.perf_counter() - started
    if seconds > limit:
        return Finding(target.name, "slow", "slow", f"took {seconds:.2f}s, limit {limit:.1f}s", seconds)
    return None


def _where(error: BaseException) -> str:
    """The innermost frame of the project (not this harness) that the error passed through."""
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if _inside_project(f.filename)]
    if not frames:
        return "?"
    frame = (ours or frames)[-1]
    path = Path(frame.filename)
    shown = path.relative_to(_ROOT) if path.is_relative_to(_ROOT) else Path(path.name)
    return f"{shown}:{frame.lineno}"


def _inside_project(filename: str) -> bool:
    path = Path(filename).resolve()
    return path.is_relative_to(_ROOT) and not path.is_relative_to(_HERE) and ".venv" not in path.parts
