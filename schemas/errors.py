"""The one error tree every package raises from; `retriable` is data, not a list of types.

SwitchboardError
├── PermanentError   the input is bad: dead-letter it and move on
│   └── ParseError   a payload could not be turned into an event
├── TransientError   the other side is slow or away: back off and retry
├── AuthError        credentials refused: stop that connector and alert
└── ConfigError      settings or policy are wrong: fail at start, naming where
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "ConfigError",
    "ParseError",
    "PermanentError",
    "SwitchboardError",
    "TransientError",
]


class SwitchboardError(Exception):
    """Base of every error Switchboard raises on purpose."""

    retriable: bool = False

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PermanentError(SwitchboardError):
    """The input can never succeed; keep it in the dead-letter topic."""


class ParseError(PermanentError):
    """A raw payload could not be parsed into an event."""


class TransientError(SwitchboardError):
    """A temporary failure of the other side; retrying later may succeed."""

    retriable = True

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class AuthError(SwitchboardError):
    """The other side refused our credentials."""


class ConfigError(SwitchboardError):
    """Settings or policy are invalid; `where` names the file, line and key."""

    def __init__(self, reason: str, where: str = "") -> None:
        super().__init__(f"{where}: {reason}" if where else reason)
        self.where = where
