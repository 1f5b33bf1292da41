"""What a claim holds once its attempt is over: `<status>:<record>|<detail>`.

Naming the record lets a stage tell its own result, read again after a restart (the
outputs may not have reached Kafka: give them again), from a result of another record
of the same item (a true duplicate: give nothing). Results written before the record was
named have no `|` and count as another record's.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Result", "parse_result", "result"]


@dataclass(frozen=True, slots=True)
class Result:
    """A parsed result: its status, the record that wrote it ("" if not named), and the detail."""

    status: str
    owner: str
    detail: str

    def by(self, owner: str) -> bool:
        """True when `owner` (a record) wrote this result."""
        return bool(self.owner) and self.owner == owner


def result(status: str, owner: str, detail: str | None) -> str:
    """The value that records `status` for the record `owner`, with where or why."""
    return f"{status}:{owner}|{detail or ''}"


def parse_result(value: bytes) -> Result:
    """Read a value `result()` wrote (or an older `<status>:<detail>` one)."""
    status, _, rest = value.decode(errors="replace").partition(":")
    owner, named, detail = rest.partition("|")
    return Result(status, owner, detail) if named else Result(status, "", rest)
