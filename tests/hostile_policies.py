"""Policy files that must be refused with a ConfigError, never crash or stall whoever reads them.

Each case turns any valid policy text into a hostile file: most put one hostile value in
front (`x:` on line 1, refused while the YAML is read, before any key is checked), so the
same table serves the parser's unit tests and a running worker's reload.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from processors.policy.load import MAX_POLICY_BYTES

__all__ = ["HOSTILE", "Hostile"]


@dataclass(frozen=True, slots=True)
class Hostile:
    """One hostile file: how it is made from a valid text, where and why it is refused."""

    name: str
    make: Callable[[str], bytes]
    where: str  # after the file name: ":LINE key", or "" when the whole file is refused
    reason: str


def _first(line: str) -> Callable[[str], bytes]:
    return lambda valid: (line + "\n" + valid).encode()


_LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True))

HOSTILE = [
    Hostile("unknown tag", _first("x: !foo 1"), ":1 x", "unknown YAML tag !foo"),
    Hostile("python object tag", _first("x: !!python/object/apply:os.system [echo hi]"), ":1 x",
            "unknown YAML tag !!python/object/apply:os.system"),
    Hostile("tag on the whole file", lambda valid: ("--- !policy\n" + valid).encode(), ":1",
            "unknown YAML tag !policy"),
    Hostile("bad !!int", _first("x: !!int abc"), ":1 x", "'abc' is not a valid !!int"),
    Hostile("bad !!float", _first("x: !!float abc"), ":1 x", "'abc' is not a valid !!float"),
    Hostile("bad !!bool", _first("x: !!bool maybe"), ":1 x", "'maybe' is not a valid !!bool"),
    Hostile("bad !!timestamp", _first("x: !!timestamp yesterday"), ":1 x",
            "'yesterday' is not a valid !!timestamp"),
    Hostile("!!binary", _first("x: !!binary aGk="), ":1 x", "unknown YAML tag !!binary"),
    Hostile("tag on the wrong kind", _first("x: !!map 1"), ":1 x", "tag !!map needs a mapping"),
    Hostile("billion laughs", lambda valid: (_LAUGHS + valid).encode(), ":5 e[0]",
            "more than 10000 values in the policy"),
    Hostile("alias inside its anchor", _first("x: &loop [*loop]"), ":1 x[0]", "inside its own anchor"),
    Hostile("undefined alias", _first("x: *nowhere"), ":1", "not valid YAML: found undefined alias"),
    Hostile("deep flow nesting", _first("x: " + "[" * 5000 + "]" * 5000), ":1 x" + "[0]" * 31,
            "nests deeper than 32 levels"),
    Hostile("deep block nesting", _first("".join(" " * i + "a:\n" for i in range(200))),
            ":32 " + ".".join(["a"] * 31), "nests deeper than 32 levels"),
    Hostile("escaped lone surrogate", _first('x: "\\ud800"'), ":1 x", "unpaired surrogate"),
    Hostile("NUL character", lambda valid: ("x: a\x00b\n" + valid).encode(), ":1",
            "character U+0000 is not allowed"),
    Hostile("not UTF-8", lambda valid: b"x: caf\xe9\n" + valid.encode(), ":1", "not UTF-8: byte 0xe9"),
    Hostile("UTF-16", lambda valid: valid.encode("utf-16"), ":1", "not UTF-8: byte 0xff"),
    Hostile("huge file", lambda valid: (valid + "#" * MAX_POLICY_BYTES).encode(), "",
            "the policy file is larger than 256 KiB"),
]
