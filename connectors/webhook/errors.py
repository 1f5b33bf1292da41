"""Errors of the webhook tool, placed in the one error tree (schemas/errors.py).

TransientError
└── WebhookUnavailable  408, 429, 5xx, a refused connection or a timeout: try again later
                        (`retry_after` from the receiver's Retry-After header, if any)
PermanentError
├── WebhookRejected     any other 4xx (or a redirect): this request will never be taken
└── SignatureError      a receiver's check of our signature header failed
"""

from __future__ import annotations

from schemas.errors import PermanentError, TransientError

__all__ = ["SignatureError", "WebhookRejected", "WebhookUnavailable"]


class WebhookUnavailable(TransientError):
    """The receiver is away or busy; `status` is its HTTP status when it answered."""

    def __init__(self, reason: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason, retry_after)
        self.status = status


class WebhookRejected(PermanentError):
    """The receiver refused the request for good; `status` is its HTTP status."""

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason)
        self.status = status


class SignatureError(PermanentError):
    """A signature header is missing, malformed, stale or does not match the body."""
