"""Errors of the Slack tool, placed in the one error tree (schemas/errors.py).

TransientError
└── SlackUnavailable  429 / `ratelimited`, 5xx, Slack's own internal errors, a refused
                      connection or a timeout (`retry_after` from Slack's Retry-After)
PermanentError
├── SlackRejected     Slack said no for good: `channel_not_found`, `not_in_channel`,
│                     `is_archived`, `invalid_blocks`, ... (`error` is Slack's code)
└── SignatureError    an Events API request's signature is missing, stale or wrong
AuthError             `invalid_auth`, `not_authed`, a revoked token, a missing scope
"""

from __future__ import annotations

from schemas.errors import PermanentError, TransientError

__all__ = ["SignatureError", "SlackRejected", "SlackUnavailable"]


class SlackUnavailable(TransientError):
    """Slack is busy or away; `status` is its HTTP status when it answered."""

    def __init__(self, reason: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason, retry_after)
        self.status = status


class SlackRejected(PermanentError):
    """Slack refused the call for good; `error` is its error code."""

    def __init__(self, reason: str, error: str) -> None:
        super().__init__(reason)
        self.error = error


class SignatureError(PermanentError):
    """A request does not carry a valid, fresh Slack signature."""
