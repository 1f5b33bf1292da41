"""Errors of the API channel: all are the caller's input, so all are permanent."""

from __future__ import annotations

from schemas.errors import ParseError

__all__ = ["ApiInputError"]


class ApiInputError(ParseError):
    """The request body is not a valid message; `field` names what is wrong.

    `code` is `bad_json` when the body is not JSON at all, `invalid` when it is JSON
    that is not a valid message.
    """

    def __init__(self, reason: str, field: str | None = None, code: str = "invalid") -> None:
        super().__init__(reason)
        self.field = field
        self.code = code
