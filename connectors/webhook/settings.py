"""Settings of the webhook tool: one timeout for every call, and each destination's endpoint.

An endpoint's URL comes from the policy (`destinations.<name>.url`) and its HMAC secret
from the environment variable the policy names (`secret_env`); `endpoints_for` joins the
two, given the environment by the one place that reads it. Secrets are `SecretStr`, so
every repr, log line and diagnostic shows `**********`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from schemas.errors import ConfigError

__all__ = ["WebhookDestination", "WebhookEndpoint", "WebhookSettings", "endpoints_for"]


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


class WebhookDestination(Protocol):
    """What `endpoints_for` needs of a policy destination (processors.policy_model.Destination)."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def url(self) -> str | None: ...

    @property
    def secret_env(self) -> str | None: ...


def endpoints_for(destinations: Iterable[WebhookDestination],
                  environ: Mapping[str, str]) -> dict[str, WebhookEndpoint]:
    """The endpoint of every webhook destination; a ConfigError names what is missing."""
    found: dict[str, WebhookEndpoint] = {}
    for d in destinations:
        if d.kind != "webhook":
            continue
        where = f"policy destinations.{d.name}"
        if not d.url:
            raise ConfigError("a webhook destination needs a url", where=f"{where}.url")
        if not d.secret_env:
            raise ConfigError("a webhook destination needs secret_env, the variable holding its "
                              "signing secret", where=f"{where}.secret_env")
        secret = environ.get(d.secret_env, "")
        if not secret:
            raise ConfigError(f"environment variable {d.secret_env} is not set or empty",
                              where=f"{where}.secret_env")
        try:
            found[d.name] = WebhookEndpoint(url=d.url, secret=SecretStr(secret))
        except ValueError as e:
            raise ConfigError(f"url {d.url!r} must be an http:// or https:// URL",
                              where=f"{where}.url") from e
    return found
