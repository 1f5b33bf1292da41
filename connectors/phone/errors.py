"""Errors of the phone channel: what Twilio sent us is refused, or what it answered a send."""

from __future__ import annotations

from schemas.errors import ParseError, PermanentError, TransientError

__all__ = ["BadSignature", "PhoneInputError", "SmsRefused", "SmsUnavailable"]


class BadSignature(PermanentError):
    """A webhook whose X-Twilio-Signature does not hold: not from Twilio, or changed on the way."""


class PhoneInputError(ParseError):
    """A signed webhook whose parameters are not a call, recording or transcription we can use."""


class SmsRefused(PermanentError):
    """Twilio refused a text for good (unsubscribed, invalid number, too long): `code` is Twilio's."""

    def __init__(self, reason: str, code: int | None) -> None:
        super().__init__(reason)
        self.code = code


class SmsUnavailable(TransientError):
    """Twilio did not take a text now (429, 5xx, network): it may on a later attempt."""
