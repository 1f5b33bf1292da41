"""Settings of the Slack tool: the bot token that posts, the secret Slack signs events with.

Mounted into the main Settings as `slack` (env `SB_SLACK__BOT_TOKEN`, ... or JSON in
`SB_SLACK`). Which channel a destination posts to is the policy's (`destinations.<name>
.channel`, a channel id); these are the workspace-wide parts. Secrets are `SecretStr`,
so every repr, log line and diagnostic shows `**********`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import msgspec
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

__all__ = ["SlackDestination", "SlackSettings"]


class SlackDestination(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A Slack destination in the policy: the channel (an id like C0123ABCD) it posts to."""

    channel: str

    def __post_init__(self) -> None:
        """A channel id is one word; the policy loader points a refusal at its line."""
        if not re.fullmatch(r"[A-Za-z0-9_#-]{1,80}", self.channel):
            raise ValueError("channel: must be a Slack channel id like C0SUPPORT")


class SlackSettings(BaseModel):
    """How Switchboard talks to one Slack workspace."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    # a bot token (xoxb-...) with chat:write; its app subscribes to message.channels
    bot_token: SecretStr
    # the app's signing secret: every Events API request is checked against it
    signing_secret: SecretStr
    # the Web API's root; tests point it at a local emulator
    base_url: str = "https://slack.com/api/"
    # one Web API call: connect, send and read the answer
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    @field_validator("bot_token", "signing_secret")
    @classmethod
    def _not_empty(cls, secret: SecretStr) -> SecretStr:
        if not secret.get_secret_value().strip():
            raise ValueError("must not be empty")
        return secret

    @field_validator("base_url")
    @classmethod
    def _http(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL")
        # the SDK joins method names onto it
        return url if url.endswith("/") else url + "/"
