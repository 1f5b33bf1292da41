"""Errors of the X channel, placed in the one error tree (schemas/errors.py).

TransientError
└── XUnavailable     429, a 24-hour cap, 5xx, a refused connection or a timeout
                     (`retry_after` from `x-rate-limit-reset` or the 24-hour reset)
PermanentError
├── XRefused         X said no to this post or DM for good (`code`: duplicate,
│                    not_summoned, dm_closed, too_long, usage_capped, budget)
├── XInputError      a webhook body or polled answer is not an event we can read
│   (a ParseError)
└── SignatureError   a webhook's CRC or signature is missing or wrong
AuthError            401: our credentials were refused
"""

from __future__ import annotations

from schemas.errors import ParseError, PermanentError, TransientError

__all__ = ["SignatureError", "XInputError", "XRefused", "XUnavailable"]


class XUnavailable(TransientError):
    """X is busy, rate-limiting or away; `status` is its HTTP status when it answered."""

    def __init__(self, reason: str, status: int | None = None, retry_after: float | None = None,
                 *, maybe_done: bool = False) -> None:
        super().__init__(reason, retry_after)
        self.status = status
        # a write whose answer was lost: X may have made the post or DM
        self.maybe_done = maybe_done


class XRefused(PermanentError):
    """X refused this post or DM; `code` says which refusal, for the agent's receipt."""

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.code = code


class XInputError(ParseError):
    """An X payload is not an event we can read."""


class SignatureError(PermanentError):
    """A webhook request does not carry a valid signature of our consumer secret."""
