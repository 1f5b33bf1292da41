"""The one settings object: read from the environment (prefix `SB_`) once, passed down."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.email.settings import EmailSettings
from connectors.slack.settings import SlackSettings
from processors.brain.thread import ThreadRules
from router.http.integrations import IntegrationList
from schemas.errors import ConfigError
from schemas.topics import TopicSpec

__all__ = ["Settings", "load"]

ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Every knob Switchboard has; secrets are `SecretStr` and print as `**********`."""

    model_config = SettingsConfigDict(env_prefix="SB_", env_nested_delimiter="__", frozen=True,
                                      extra="ignore", hide_input_in_errors=True)

    # where the project keeps its local state: stack data, logs, PID files
    state_dir: Path = ROOT / ".local"

    kafka_bootstrap: str = "127.0.0.1:19092"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_partitions: int = Field(default=4, ge=1)
    kafka_replication_factor: int = Field(default=1, ge=1)
    # how soon a dead worker's partitions move to a live one
    kafka_session_timeout_seconds: float = Field(default=10.0, ge=6.0)
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:16379/0")
    # the local stack's Dovecot (deploy/local): IMAP for the mailbox, LMTP to deliver into it
    imap_port: int = Field(default=10143, ge=1, le=65535)
    lmtp_port: int = Field(default=10024, ge=1, le=65535)

    # consumer group of the stream processors; workers sharing it share the work
    app_id: str = "switchboard"
    # prepended to every topic name: lets tests and tenants share one cluster
    topic_prefix: str = ""

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=18080, ge=0, le=65535)
    # largest request body the HTTP API accepts, in bytes
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    api_tokens: tuple[SecretStr, ...] = ()
    # integrations: name, SHA-256 of the token, scopes (JSON list; `switchboard token new`)
    integrations: IntegrationList = ()

    # how long an event id stays claimed: re-reads inside it are duplicates
    dedupe_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    # a stream batch: at most this many events, waiting at most this long
    batch_size: int = Field(default=500, ge=1)
    batch_within_seconds: float = Field(default=0.005, gt=0)

    # signs the reply tokens in our outgoing mail; the same on every worker, kept secret
    reply_token_key: SecretStr = SecretStr("switchboard-development-key")
    # how long conversation state is remembered after its last activity
    conversation_ttl_seconds: int = Field(default=90 * 86400, ge=3600)

    # channels: a section present means the channel runs (JSON in SB_EMAIL, or SB_EMAIL__…)
    email: EmailSettings | None = None
    # the Slack agents' tool: bot token and signing secret (SB_SLACK__BOT_TOKEN, ...)
    slack: SlackSettings | None = None

    # the routing policy; reloaded when it changes (a bad edit is refused, the old one stays)
    policy_file: Path | None = None
    # history lines kept per customer, and how many travel with each routed conversation
    history_cap: int = Field(default=50, ge=1)
    history_attached: int = Field(default=10, ge=0)
    # the stream stages this worker runs; split them over workers to scale one on its own
    # (e.g. SB_STAGES='["intake","brain"]' on some, '["send","dispatch"]' on others)
    stages: tuple[Literal["intake", "brain", "send", "dispatch"], ...] = (
        "intake", "brain", "send", "dispatch")
    # sends per second per customer channel (e.g. {"x": 5}); channels not named are not limited
    send_rates: dict[str, float] = Field(default_factory=dict)
    # how often the leader looks for SLA clocks that fell due
    sla_tick_seconds: float = Field(default=1.0, gt=0)
    # our own mail domains: an address there is never a customer's stated identity
    our_domains: tuple[str, ...] = ()
    log_level: str = "INFO"
    log_json: bool | None = None

    @cached_property
    def redis_dsn(self) -> str:
        """The Redis URL in clear, for the client only."""
        return self.redis_url.get_secret_value()

    @cached_property
    def thread_rules(self) -> ThreadRules:
        """The threading rules these settings describe."""
        return ThreadRules(token_key=self.reply_token_key.get_secret_value().encode())

    @property
    def policy_path(self) -> Path:
        """The policy file in force: SB_POLICY_FILE, else the documented example."""
        return self.policy_file or ROOT / "deploy" / "policy.example.yaml"

    def channel_settings(self, name: str) -> Any:
        """A channel's settings section, with the shared reply-token key filled in."""
        section = getattr(self, name, None)
        if isinstance(section, BaseModel) and "token_key" in type(section).model_fields:
            return section.model_copy(update={"token_key": self.reply_token_key})
        return section

    def topic(self, spec: TopicSpec) -> str:
        """The Kafka name of a topic in this deployment."""
        return spec.named(self.topic_prefix)


def load(**overrides: object) -> Settings:
    """Build settings from the environment, failing with a ConfigError that names the key."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as e:
        first = e.errors()[0]
        key = "SB_" + "_".join(str(p) for p in first["loc"]).upper()
        raise ConfigError(first["msg"], where=f"environment {key}") from e
