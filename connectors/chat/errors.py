"""Errors of the chat channel: a visitor's bad frame, answered with an error frame."""

from __future__ import annotations

from schemas.errors import ParseError

__all__ = ["FrameError"]


class FrameError(ParseError):
    """A frame the socket will not take; `code` is stable, the reason is for the visitor's widget."""

    def __init__(self, code: str, reason: str, *, frame_id: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.frame_id = frame_id
        self.retry_after = retry_after
