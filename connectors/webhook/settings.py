"""Settings of the webhook tool: one timeout for every call, and each destination's endpoint.

An endpoint's URL comes from the policy (`destinations.<name>.url`) and its HMAC secret
from the environment variable the policy names (`secret_env`); `endpoint_for` joins the
two, given the secrets by the settings, the one place that reads the environment. Secrets are `SecretStr`, so
every repr, log line and diagnostic shows `**********`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

import msgspec
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from schemas.errors import ConfigError

# a secret by the name of its environment variable, None when unset (connectors.spec.Secrets)
Secrets = Callable[[str], SecretStr | None]
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")

__all__ = ["Secrets", "WebhookDestination", "WebhookEndpoint", "WebhookSettings", "endpoint_for"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class WebhookSettings(_Frozen):
    """How every webhook call is made."""

    # one attempt: connect, send, and read the answer; the dispatch stage retries
    timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    user_agent: str = "Switchboard-Webhook/1"


class WebhookEndpoint(_Frozen):
    """Where one destination's webhook is, and the secret its requests are signed with."""

    url: str
    secret: SecretStr

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL")
        return url

    @field_validator("secret")
    @classmethod
    def _not_empty(cls, secret: SecretStr) -> SecretStr:
        if not secret.get_secret_value():
            raise ValueError("must not be empty: every request is signed")
        return secret


class WebhookDestination(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A webhook in the policy: where to POST, and the variable holding its signing secret."""

    url: str
    # every webhook is signed: a receiver must be able to tell our deliveries from forgeries
    secret_env: str

    def __post_init__(self) -> None:
        """Refuse what cannot work, naming the field (the policy loader points at its line)."""
        try:
            parts = urlsplit(self.url)
            host = parts.hostname
        except ValueError:
            parts, host = None, None
        if parts is None or parts.scheme not in ("http", "https") or not host:
            raise ValueError("url: must be an http or https URL like https://helpdesk.example.com/hook")
        if parts.username or parts.password:
            # the policy file is shared and printed; keys belong in the environment
            raise ValueError("url: must not carry credentials; name the environment variable with "
                             "the key in secret_env")
        if not _ENV_NAME.match(self.secret_env):
            raise ValueError("secret_env: must be the name of an environment variable holding the key, "
                             "like SB_WEBHOOK_SECRET")


def endpoint_for(destination: WebhookDestination, secrets: Secrets) -> WebhookEndpoint:
    """The endpoint of one destination; a ConfigError says what this process is missing."""
    secret = secrets(destination.secret_env)
    if secret is None or not secret.get_secret_value():
        raise ConfigError(f"environment variable {destination.secret_env} is not set or empty",
                          where="secret_env")
    return WebhookEndpoint(url=destination.url, secret=secret)
