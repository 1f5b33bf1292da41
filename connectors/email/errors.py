"""Errors of the email channel, placed in the one error tree (schemas/errors.py).

TransientError
├── ImapError        the IMAP server is away, slow, or said something we cannot use
└── SmtpTransient    4xx, a dropped connection or a timeout: try the send again later
PermanentError
└── SmtpRejected     5xx: the server will never take this message
AuthError            login refused (IMAP or SMTP): stop that account and alert
ConfigError          e.g. a mailbox that does not exist
"""

from __future__ import annotations

from schemas.errors import PermanentError, TransientError

__all__ = ["ImapError", "SmtpRejected", "SmtpTransient"]


class ImapError(TransientError):
    """An IMAP connection or command failed; `refused` when the server answered NO or BAD."""

    def __init__(self, reason: str, refused: bool = False) -> None:
        super().__init__(reason)
        self.refused = refused


class SmtpTransient(TransientError):
    """A send failed for now; `code` is the SMTP reply code when the server gave one."""

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.code = code


class SmtpRejected(PermanentError):
    """The SMTP server refused the message for good; `code` is its 5xx reply code."""

    def __init__(self, reason: str, code: int) -> None:
        super().__init__(reason)
        self.code = code
