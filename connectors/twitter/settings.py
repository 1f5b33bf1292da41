"""Settings of the X channel: our account, its credentials, the limit and cost tables, polling.

Mounted as `x` (env `SB_X__ACCOUNT_ID`, ... or JSON in `SB_X`). The consumer secret signs
the X Activity API's webhooks (CRC and `x-twitter-webhooks-signature`); the four OAuth 1.0a
credentials send posts and DMs as our account. Rate limits and prices are tables, not
constants: X changes them per plan and per year, and an operator edits them here.
"""

from __future__ import annotations

from typing import Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = ["DEFAULT_LIMITS", "Limit", "Prices", "XProbeAccount", "XSettings"]


class Limit(BaseModel):
    """One endpoint's limit: `calls` per `window_seconds`, plus an optional 24-hour cap."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    calls: int = Field(gt=0)
    window_seconds: float = Field(default=900.0, gt=0)
    per_day: int | None = Field(default=None, gt=0)


# X's 2026 pay-per-use plan, per user context; older plans are far tighter
DEFAULT_LIMITS: dict[str, Limit] = {
    "mentions": Limit(calls=300),
    "dm_events": Limit(calls=15),
    "dm_send": Limit(calls=15, per_day=1440),
    "post": Limit(calls=100, window_seconds=86_400.0),
}


class Prices(BaseModel):
    """What each call costs in US dollars on the pay-per-use plan."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    read_post: float = Field(default=0.001, ge=0)
    post: float = Field(default=0.015, ge=0)
    post_with_url: float = Field(default=0.20, ge=0)
    dm: float = Field(default=0.015, ge=0)


class XProbeAccount(BaseModel):
    """A second X account, ours too, that posts the synthetic probe's mention of our account."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    # OAuth 1.0a user context of the probe account
    access_token: SecretStr
    access_token_secret: SecretStr
    # the app it authorised; empty: the channel's own app
    consumer_key: SecretStr = SecretStr("")
    consumer_secret: SecretStr = SecretStr("")
    # every probe is a billed post: at most one this often, however often the others run
    interval_seconds: float = Field(default=3600.0, ge=1)

    @model_validator(mode="after")
    def _one_app(self) -> Self:
        if bool(self.consumer_key.get_secret_value()) != bool(self.consumer_secret.get_secret_value()):
            raise ValueError("consumer_key and consumer_secret go together (or neither: the channel's app)")
        return self


class XSettings(BaseModel):
    """How Switchboard talks to X as one account."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    # the deployment's Redis and key namespace, filled in by the router: every process that
    # calls X as this account shares one pacer and one budget there
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:16379/0")
    namespace: str = "sb"

    # our account's numeric user id: posts and DMs by it are ours and never routed
    # (empty only in a section that is not configured: nothing is then taken or sent)
    account_id: str = Field(default="", pattern=r"^[0-9]{0,19}$")
    # our handle, without @, for the public DM invite and logs
    handle: str = Field(default="support", pattern=r"^[A-Za-z0-9_]{1,15}$")
    # the app's consumer secret signs every webhook (CRC and body)
    consumer_key: SecretStr = SecretStr("")
    consumer_secret: SecretStr = SecretStr("")
    # OAuth 1.0a user context of our account, for posting and DMs
    access_token: SecretStr = SecretStr("")
    access_token_secret: SecretStr = SecretStr("")
    # the API's root; tests point it at a local emulator
    base_url: str = "https://api.twitter.com"
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # the largest webhook body read; X's events are a few kilobytes
    max_body_bytes: int = Field(default=256_000, gt=0, le=5_000_000)
    # polling of mentions and DM events, for accounts without the Activity API
    poll: bool = False
    poll_overlap_seconds: float = Field(default=120.0, ge=0, le=86_400)
    limits: dict[str, Limit] = Field(default_factory=lambda: dict(DEFAULT_LIMITS))
    prices: Prices = Prices()
    # the longest a send or poll waits for a rate-limit window to reset; longer is a failure
    max_wait_seconds: float = Field(default=900.0, ge=0, le=3_600)
    # spend per UTC day after which optional calls stop (polling) and senders refuse
    daily_budget_usd: float = Field(default=50.0, ge=0)
    # the short public answer inviting a DM (X adds its "Send a private message" button)
    dm_invite: str = Field(default="We'd like to help with this in a private message.",
                           min_length=1, max_length=200)
    # the synthetic probe's account (router/probes.py); None: the X channel is not probed
    probe: XProbeAccount | None = None

    @field_validator("base_url")
    @classmethod
    def _http(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            raise ValueError("must be an http:// or https:// root URL")
        return url.rstrip("/")

    def poll_interval(self, endpoint: str) -> float:
        """Seconds between polls of `endpoint` that stay inside its 15-minute limit."""
        limit = self.limits.get(endpoint, DEFAULT_LIMITS.get(endpoint, Limit(calls=1)))
        return limit.window_seconds / limit.calls
