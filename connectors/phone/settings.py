"""Settings of the phone channel: the Twilio account, the public URL Twilio calls, the greeting.

Mounted into the main Settings as `phone` (env `SB_PHONE__AUTH_TOKEN=…`, … or JSON in
`SB_PHONE`). The auth token signs every webhook and authenticates the Messages API;
it and the shared signing keys are `SecretStr`, masked in every printout.
"""

from __future__ import annotations

import re
from typing import Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = ["TRANSCRIBED_SECONDS", "PhoneSettings"]

# Twilio transcribes recordings of at most two minutes
TRANSCRIBED_SECONDS = 120
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


class PhoneSettings(BaseModel):
    """One Twilio account and number: how calls are answered and how texts go out."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    account_sid: str = "AC00000000000000000000000000000000"
    # signs the voice webhooks (HMAC-SHA1) and authenticates the REST API
    auth_token: SecretStr = SecretStr("")
    # webhooks signed with a SharedKey (X-Twilio-Webhooks-Signature-Settings: key=<id>): id → secret
    signing_keys: dict[str, SecretStr] = {}
    # what Twilio calls, as configured on the number: behind a proxy the request's own URL differs
    public_base_url: str = "http://127.0.0.1:18080"
    path_prefix: str = "/v1/phone"
    # the number texts are sent from (E.164); None: no SMS replies
    from_number: str | None = None
    # the REST API's root; tests point it at a local emulator
    api_base_url: str = "https://api.twilio.com"
    timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # attempts of one text when Twilio answers 429 or 5xx before taking it
    send_attempts: int = Field(default=3, ge=1, le=10)
    backoff_seconds: float = Field(default=0.5, ge=0, le=30)
    # the greeting, read by <Say>
    voice: str = "Polly.Joanna"
    language: str = "en-US"
    tier_greetings: dict[str, str] = {
        "default": "Thank you for calling support.",
        "premium": "Thank you for calling. As a premium customer, your message goes first.",
        "enterprise": "Thank you for calling your enterprise support line.",
    }
    open_text: str = ("Please leave a message after the tone. Someone from our team will get back "
                      "to you by {expected}.")
    closed_text: str = ("We are closed right now and open again {opens}. Please leave a message after "
                        "the tone; we will answer it first thing.")
    # the same, for a caller whose tier the policy answers by calling back (reply_mode: callback)
    callback_open_text: str = "Please leave a message after the tone. We will call you back by {expected}."
    callback_closed_text: str = ("We are closed right now and open again {opens}. Please leave a message "
                                 "after the tone; we will call you back first thing.")
    # a transcript is wanted: recordings then stop at two minutes, which Twilio transcribes
    transcribe: bool = True
    max_recording_seconds: int = Field(default=TRANSCRIBED_SECONDS, ge=5, le=3600)
    # seconds of silence that end a recording
    silence_seconds: int = Field(default=5, ge=1, le=60)
    # a voicemail whose transcript has not come by then is routed without it
    transcript_wait_seconds: float = Field(default=300.0, gt=0, le=86_400)
    # a call with no recording this long after it was answered is a missed call
    missed_call_seconds: float = Field(default=300.0, gt=0, le=86_400)
    # largest webhook body taken; Twilio's are a few KiB
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)

    @field_validator("public_base_url", "api_base_url")
    @classmethod
    def _http(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError("must be an http:// or https:// URL without a query")
        return url.rstrip("/")

    @field_validator("path_prefix")
    @classmethod
    def _path(cls, path: str) -> str:
        if not re.fullmatch(r"(/[A-Za-z0-9_.-]+)+", path):
            raise ValueError("must be a path like /v1/phone")
        return path

    @field_validator("from_number")
    @classmethod
    def _e164(cls, number: str | None) -> str | None:
        if number is not None and not _E164.match(number):
            raise ValueError("must be an E.164 number like +14155550100")
        return number

    @field_validator("open_text", "closed_text", "callback_open_text", "callback_closed_text")
    @classmethod
    def _fields(cls, text: str) -> str:
        try:
            text.format(expected="", opens="", tier="")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"may use {{expected}}, {{opens}} and {{tier}} only: {e}") from e
        return text

    @model_validator(mode="after")
    def _transcribable(self) -> Self:
        if self.transcribe and self.max_recording_seconds > TRANSCRIBED_SECONDS:
            raise ValueError(f"max_recording_seconds: Twilio transcribes at most {TRANSCRIBED_SECONDS} s; "
                             "lower it or set transcribe to false")
        return self

    def token(self) -> str:
        """The auth token; empty means every webhook is refused."""
        return self.auth_token.get_secret_value()

    def url(self, path: str) -> str:
        """The public URL of one of our paths, as Twilio calls it."""
        return self.public_base_url + path
