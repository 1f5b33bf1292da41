"""Settings of the web chat channel (`SB_CHAT` as JSON, or `SB_CHAT__<KEY>`).

`token_key`, `redis_url` and `namespace` are the deployment's, filled in by the router for
every section that declares them: every worker signs and stores alike.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from connectors.email.settings import SmtpSettings

__all__ = ["ChatSettings"]


class ChatSettings(BaseModel):
    """Limits, origins, the identity secret and the email continuation of the chat widget."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    # the deployment's reply-token key: session tokens are signed with a key derived from it
    token_key: SecretStr = SecretStr("switchboard-development-key")
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:16379/0")
    namespace: str = "sb"

    # pages allowed to open the socket (`https://shop.example.com`); empty: any page. When set,
    # a socket without an Origin header (no browser sends none) is refused too
    allowed_origins: tuple[str, ...] = ()
    # characters of one visitor message, and bytes of one WebSocket frame (transport limit)
    max_message_chars: int = Field(default=4_000, ge=1, le=100_000)
    ws_max_size: int = Field(default=64 * 1024, ge=1024, le=4 * 1024 * 1024)
    messages_per_minute: int = Field(default=30, ge=1)
    # new sessions one IP address may open per hour
    sessions_per_ip_per_hour: int = Field(default=20, ge=1)
    heartbeat_seconds: float = Field(default=25.0, gt=0)
    # messages replayed at most on (re)connect: the newest ones
    replay_limit: int = Field(default=500, ge=1, le=10_000)
    # how long a conversation's log is kept after its last message
    log_ttl_seconds: int = Field(default=30 * 86400, ge=60)

    # the website's secret for identity hashes (HMAC-SHA256 of the visitor's email, hex)
    identity_secret: SecretStr | None = None
    # replies the visitor has not seen go by mail after this window, batched
    email_after_seconds: float = Field(default=120.0, gt=0)
    email_poll_seconds: float = Field(default=1.0, gt=0)
    # days an answer to a continuation mail may join the chat (and link the visitor's address)
    continuation_days: int = Field(default=30, ge=1, le=365)
    # messages quoted in the continuation mail's recap
    recap_messages: int = Field(default=6, ge=0, le=50)
    # the server continuation mail goes through; None: replies wait for the visitor's return
    smtp: SmtpSettings | None = None

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        """A list, or origins separated by commas."""
        if isinstance(value, str):
            return tuple(part.strip().rstrip("/") for part in value.split(",") if part.strip())
        return value
