"""The one settings object: read from the environment (prefix `SB_`) once, passed down.

Each connector's section (`SB_EMAIL`, `SB_SLACK`, ...) is read for every section the
registry names (connectors/registry.py), as JSON in `SB_<SECTION>` or one variable per
key, `SB_<SECTION>__<KEY>` (nested keys joined by `__`), and validated by the
connector's own model at load: a bad value fails the start naming its variable. The
secrets a policy names by variable (a webhook's `secret_env`) are read here too.
"""

from __future__ import annotations

import json
import os
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)
from redis.asyncio import Redis

from connectors.registry import sections
from processors.brain.thread import ThreadRules
from processors.stores.client import new_redis
from router.http.integrations import IntegrationList
from schemas.errors import ConfigError
from schemas.topics import TopicSpec

__all__ = ["Settings", "load"]

ROOT = Path(__file__).resolve().parent.parent
M = TypeVar("M", bound=BaseModel)
DEVELOPMENT_KEY = "switchboard-development-key"
_FIELD_IN = re.compile(r'field "(\w+)"')
MIN_KEY_CHARS = 16


class Settings(BaseSettings):
    """Every knob Switchboard has; secrets are `SecretStr` and print as `**********`."""

    model_config = SettingsConfigDict(env_prefix="SB_", env_nested_delimiter="__", frozen=True,
                                      extra="ignore", hide_input_in_errors=True)

    # where the project keeps its local state: stack data, logs, PID files
    state_dir: Path = ROOT / ".local"
    # the local stack's Kafka jars; unset: the state dir's own, else the checkout's .local cache
    kafka_libs: Path | None = None

    kafka_bootstrap: str = "127.0.0.1:19092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    # TLS to Kafka (SSL, SASL_SSL): the CA bundle that signed the brokers (else the system's),
    # and a client certificate and key when the brokers ask for one (mutual TLS)
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    # chosen for growth (decision 0021): partitions never shrink, and adding them re-maps
    # customers, so Redis keys must be retagged; 12 spreads evenly over 1, 2, 3, 4, 6 or 12 workers
    kafka_partitions: int = Field(default=12, ge=1)
    kafka_replication_factor: int = Field(default=1, ge=1)
    # the most bytes the producer packs into one partition's batch: a stage's whole batch
    # should fit, or each full batch waits a round trip to Kafka before the next record is
    # added (at the 16 KiB default, every fourth routed record); keep it under the topics'
    # max.message.bytes (1 MiB unless the broker says otherwise)
    kafka_batch_bytes: int = Field(default=512 * 1024, ge=16 * 1024)
    # how soon a dead worker's partitions move to a live one
    kafka_session_timeout_seconds: float = Field(default=10.0, ge=6.0)
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:16379/0")
    # SB_REDIS_URL names one node of a Redis Cluster (the rest are discovered): the keys'
    # hash tags keep every Lua call in one slot (decisions 0021, 0022)
    redis_cluster: bool = False
    # the local stack's Dovecot (deploy/local): IMAP for the mailbox, LMTP to deliver into it
    imap_port: int = Field(default=10143, ge=1, le=65535)
    lmtp_port: int = Field(default=10024, ge=1, le=65535)
    # the local stack's SMTP relay (devtools/relay.py): delivers any mail into Dovecot over LMTP
    smtp_port: int = Field(default=10025, ge=1, le=65535)

    # consumer group of the stream processors; workers sharing it share the work
    app_id: str = "switchboard"
    # prepended to every topic name: lets tests and tenants share one cluster
    topic_prefix: str = ""

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=18080, ge=0, le=65535)
    # largest request body the HTTP API accepts, in bytes
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # a request's deadline, its body included: a trickled body cannot hold a connection longer
    http_request_seconds: float = Field(default=30.0, gt=0)
    api_tokens: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    # integrations: name, SHA-256 of the token, scopes (JSON list; `switchboard token new`)
    integrations: IntegrationList = ()

    # how long an event id stays claimed: re-reads inside it are duplicates
    dedupe_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    # a stream batch: at most this many events; while events flow, a stage's fetch waits at
    # most this long for a batch's worth (fewer, fuller batches: less CPU a message for a few
    # ms more latency; 0 takes what is there at once). Idle, a lone event is taken at once.
    batch_size: int = Field(default=500, ge=1)
    batch_within_seconds: float = Field(default=0.0, ge=0, le=0.5)

    # signs the reply tokens in our outgoing mail; the same on every worker, kept secret;
    # `run` and `worker` refuse the built-in one (it only serves explain, whatif and tests)
    reply_token_key: SecretStr = SecretStr(DEVELOPMENT_KEY)
    # how long conversation state is remembered after its last activity
    conversation_ttl_seconds: int = Field(default=90 * 86400, ge=3600)

    # connectors' sections as given (SB_EMAIL, SB_SLACK__BOT_TOKEN, ...): read them with section()
    sections: dict[str, Any] = Field(default_factory=dict, repr=False)

    # the routing policy; reloaded when it changes (a bad edit is refused, the old one stays)
    policy_file: Path | None = None
    # history lines kept per customer, and how many travel with each routed conversation
    history_cap: int = Field(default=50, ge=1)
    history_attached: int = Field(default=10, ge=0)
    # the stream stages this worker runs; split them over workers to scale one on its own
    # (e.g. SB_STAGES=intake,brain on some, SB_STAGES=send,dispatch on others)
    stages: Annotated[tuple[Literal["intake", "brain", "send", "dispatch"], ...], NoDecode] = (
        "intake", "brain", "send", "dispatch")
    # sends per second per customer channel (e.g. {"x": 5}); channels not named are not limited
    send_rates: dict[str, float] = Field(default_factory=dict)
    # the longest a reply may wait for a channel's limit to reset (a 24-hour cap) before it
    # fails instead, counted from when it was written; and how often due ones are looked for
    send_max_defer_seconds: int = Field(default=3 * 86_400, ge=60)
    send_deferred_tick_seconds: float = Field(default=1.0, gt=0)
    # how far back the dashboard of an edge reads the topics when it starts (what it can show
    # of conversations still owed a response, and of "today")
    dashboard_lookback_seconds: int = Field(default=48 * 3600, ge=3600)
    # how often the leader looks for SLA clocks that fell due
    sla_tick_seconds: float = Field(default=1.0, gt=0)
    # how often each worker looks whether the policy file changed
    policy_reload_seconds: float = Field(default=2.0, gt=0)
    # our own mail domains: an address there is never a customer's stated identity
    our_domains: Annotated[tuple[str, ...], NoDecode] = ()
    # synthetic probes (router/probes.py): one per probed channel this often from the edge (0: never);
    # routed later than probe_slow_seconds is slow, not routed within probe_timeout_seconds silent
    probe_interval_seconds: float = Field(default=60.0, ge=0)
    probe_slow_seconds: float = Field(default=30.0, gt=0)
    probe_timeout_seconds: float = Field(default=120.0, gt=0)
    log_level: str = "INFO"
    log_json: bool | None = None

    @cached_property
    def redis_dsn(self) -> str:
        """The Redis URL in clear, for the client only."""
        return self.redis_url.get_secret_value()

    def new_redis(self, **options: Any) -> Redis:
        """A client for SB_REDIS_URL, a Cluster's when SB_REDIS_CLUSTER says so; every process's."""
        return new_redis(self.redis_dsn, cluster=self.redis_cluster, **options)

    @cached_property
    def thread_rules(self) -> ThreadRules:
        """The threading rules these settings describe."""
        return ThreadRules(token_key=self.reply_token_key.get_secret_value().encode())

    @property
    def policy_path(self) -> Path:
        """The policy file in force: SB_POLICY_FILE, else the documented example."""
        return self.policy_file or ROOT / "deploy" / "policy.example.yaml"

    @field_validator("api_tokens", "stages", "our_domains", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        """A list setting: a JSON list, or words separated by commas (`intake,brain`)."""
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("["):
            try:
                return json.loads(value)
            except (ValueError, RecursionError) as e:  # RecursionError: nested deeper than the stack
                raise ValueError(f"not a valid JSON list: {e}") from e
        return [part.strip() for part in value.split(",") if part.strip()]

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: Any,
                                   env_settings: Any, dotenv_settings: Any,
                                   file_secret_settings: Any) -> tuple[Any, ...]:
        """The environment, plus each connector's section gathered from its variables."""
        return init_settings, env_settings, _Sections(settings_cls), dotenv_settings, file_secret_settings

    @model_validator(mode="after")
    def _check_kafka_auth(self) -> Settings:
        """SASL settings and the security protocol must agree, or the start fails naming them."""
        sasl = self.kafka_security_protocol.startswith("SASL_")
        if sasl and not (self.kafka_sasl_mechanism and self.kafka_sasl_username):
            raise ConfigError(f"{self.kafka_security_protocol} needs SB_KAFKA_SASL_MECHANISM and "
                              "SB_KAFKA_SASL_USERNAME", where="environment SB_KAFKA_SECURITY_PROTOCOL")
        if self.kafka_sasl_mechanism and not sasl:
            raise ConfigError("needs SB_KAFKA_SECURITY_PROTOCOL SASL_PLAINTEXT or SASL_SSL",
                              where="environment SB_KAFKA_SASL_MECHANISM")
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise ConfigError("a client certificate needs its key, and a key its certificate",
                              where="environment SB_KAFKA_SSL_CERTFILE / SB_KAFKA_SSL_KEYFILE")
        return self

    @model_validator(mode="after")
    def _check_sections(self) -> Settings:
        """Validate every section now, so a bad one fails the start naming its variable."""
        self._sections()
        return self

    def _sections(self) -> dict[str, BaseModel]:
        found: dict[str, BaseModel] = {}
        for name, (model, on_by_default) in sections().items():
            raw = self.sections.get(name)
            if raw is None and not on_by_default:
                continue
            raw = dict(raw) if isinstance(raw, dict) else ({} if raw is None else raw)
            if isinstance(raw, dict):
                # the deployment's own: one reply-token key for every channel that signs, one
                # Redis and key namespace for every connector that keeps state there
                deployment = {"token_key": self.reply_token_key, "redis_url": self.redis_url,
                              "namespace": f"{self.topic_prefix}sb"}
                if self.redis_cluster and "redis_url" in model.model_fields:
                    # a connector's state is on one node (decision 0022): its own Redis, never the Cluster
                    if "redis_url" not in raw:
                        raise ConfigError("SB_REDIS_CLUSTER is on, and this channel keeps its state on a "
                                          "single Redis node: give it one",
                                          where=f"environment SB_{name.upper()}__REDIS_URL")
                    del deployment["redis_url"]
                raw |= {k: v for k, v in deployment.items() if k in model.model_fields}
            try:
                section = model.model_validate(raw)
            except ValidationError as e:
                first = e.errors()[0]
                key = "__".join(str(p) for p in first["loc"]).upper()
                raise ConfigError(first["msg"], where=f"environment SB_{name.upper()}"
                                  + (f"__{key}" if key else "")) from e
            found[name] = section
        return found

    def section(self, name: str, model: type[M]) -> M | None:
        """A connector's settings section, or None when it is not configured."""
        # validated again on every call: cheap, and right after model_copy(update=...)
        found = self._sections().get(name)
        return found if isinstance(found, model) else None

    def require_reply_token_key(self) -> None:
        """Refuse to process with a guessable reply-token key: a forged token would join any thread."""
        key = self.reply_token_key.get_secret_value()
        if key == DEVELOPMENT_KEY or len(key) < MIN_KEY_CHARS:
            raise ConfigError(f"must be a secret of at least {MIN_KEY_CHARS} characters, not the built-in "
                              "development key: it signs reply tokens, and anyone who knows it can join "
                              "any conversation (make run sets a demo key for you)",
                              where="environment SB_REPLY_TOKEN_KEY")

    def secret(self, variable: str) -> SecretStr | None:
        """A secret the policy names by its environment variable, or None when unset or empty."""
        value = os.environ.get(variable, "")
        return SecretStr(value) if value else None

    def topic(self, spec: TopicSpec) -> str:
        """The Kafka name of a topic in this deployment."""
        return spec.named(self.topic_prefix)


class _Sections(PydanticBaseSettingsSource):
    """Gathers `SB_<SECTION>` (JSON) and `SB_<SECTION>__<KEY>` variables into `sections`."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        """Unused: this source fills one field, in __call__."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        """The raw sections found in the environment, by section name."""
        environ = {k.upper(): v for k, v in os.environ.items() if k.upper().startswith("SB_")}
        found: dict[str, Any] = {}
        for name in sections():
            variable = f"SB_{name.upper()}"
            section: dict[str, Any] = {}
            if variable in environ:
                section = _json(variable, environ[variable])
            for key, value in environ.items():
                if key.startswith(variable + "__"):
                    *path, leaf = key[len(variable) + 2:].lower().split("__")
                    node = section
                    for part in path:
                        node = node.setdefault(part, {})
                    node[leaf] = _json(key, value) if value[:1] in "[{" else value
            if variable in environ or section:
                found[name] = section
        return {"sections": found} if found else {}


def _json(variable: str, value: str) -> Any:
    try:
        return json.loads(value)
    except (ValueError, RecursionError) as e:  # RecursionError: nested deeper than the stack
        raise ConfigError(f"not valid JSON: {e}", where=f"environment {variable}") from e


def load(**overrides: object) -> Settings:
    """Build settings from the environment, failing with a ConfigError that names the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as e:
        first = e.errors()[0]
        key = "SB_" + "_".join(str(p) for p in first["loc"]).upper()
        raise ConfigError(first["msg"], where=f"environment {key}") from e
    except SettingsError as e:
        # a value pydantic-settings could not decode before validation (e.g. broken JSON)
        field = _FIELD_IN.search(str(e))
        key = f"SB_{field.group(1).upper()}" if field else "SB_*"
        raise ConfigError(f"cannot read the value: {e.__cause__ or e}", where=f"environment {key}") from e
    except RecursionError as e:
        # JSON nested deeper than the stack, in a value pydantic-settings decodes (SB_SEND_RATES, ...)
        raise ConfigError("cannot read a value: JSON nested too deeply", where="environment SB_*") from e
