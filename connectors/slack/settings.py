"""Settings of the Slack tool: the bot token that posts, the secret Slack signs events with.

Mounted into the main Settings as `slack` (env `SB_SLACK__BOT_TOKEN`, ... or JSON in
`SB_SLACK`). Which channel a destination posts to is the policy's (`destinations.<name>
.channel`, a channel id); these are the workspace-wide parts. Secrets are `SecretStr`,
so every repr, log line and diagnostic shows `**********`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

__all__ = ["SlackSettings"]


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
