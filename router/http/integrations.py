"""Who may call the HTTP API: integrations with hashed tokens and scopes.

An integration is configured in `SB_INTEGRATIONS` as `{name, token_sha256, scopes}`;
only the SHA-256 of its token is ever stored, so the settings leak no credential.
`switchboard token new NAME --scope ...` makes a token and prints its entry.

Development tokens (`SB_API_TOKENS`, plain text) keep working and grant every scope under
the name `dev`: they are what a laptop and the end-to-end tests use. A deployment that
lists integrations should leave `SB_API_TOKENS` empty.

A request without a known bearer token is refused with 401; a known token without the
route's scope with 403 naming the scope.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal, get_args

from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator

if TYPE_CHECKING:
    from router.settings import Settings

__all__ = [
    "DEV_NAME",
    "SCOPES",
    "Caller",
    "Denied",
    "IntegrationConfig",
    "IntegrationList",
    "Integrations",
    "Scope",
    "digest_hex",
    "forbidden",
    "new_entry",
    "new_token",
    "unauthorized",
]

Scope = Literal[
    "messages:write",       # POST /v1/messages
    "conversations:read",   # GET /v1/conversations/{id}
    "conversations:write",  # replies, resolve, notes
    "customers:read",       # GET /v1/customers/{id}
    "customers:write",      # links, tiers, the CSV import
    "dashboard:read",       # GET /v1/dashboard and its events
]
SCOPES: tuple[Scope, ...] = get_args(Scope)
# the caller name of every SB_API_TOKENS token; reserved, no integration may take it
DEV_NAME = "dev"
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
# a prefix lets secret scanners (and people) recognise a leaked token
_TOKEN_PREFIX = "sbi_"


class IntegrationConfig(BaseModel):
    """One integration as configured: its name, its token's SHA-256 (hex) and its scopes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    token_sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    scopes: tuple[Scope, ...] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _not_dev(cls, name: str) -> str:
        if name == DEV_NAME:
            raise ValueError(f"the name {DEV_NAME!r} is reserved for SB_API_TOKENS")
        return name


def _distinct(integrations: tuple[IntegrationConfig, ...]) -> tuple[IntegrationConfig, ...]:
    names = [i.name for i in integrations]
    digests = [i.token_sha256.lower() for i in integrations]
    if len(set(names)) != len(names):
        raise ValueError("two integrations have the same name")
    # two names on one token would make the caller's name a coin toss
    if len(set(digests)) != len(digests):
        raise ValueError("two integrations have the same token")
    return integrations


IntegrationList = Annotated[tuple[IntegrationConfig, ...], AfterValidator(_distinct)]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made a request: the integration's name and what it may do."""

    name: str
    scopes: frozenset[str]

    def may(self, scope: Scope) -> bool:
        """True when this caller holds `scope`."""
        return scope in self.scopes


class Denied(Exception):
    """A request refused for its credentials: 401 (who are you?) or 403 (not allowed)."""

    def __init__(self, status: int, code: str, message: str, scope: Scope | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.scope = status, code, message, scope


def digest_hex(token: str) -> str:
    """The SHA-256 of a token, in hex: what SB_INTEGRATIONS keeps instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random token (256 bits)."""
    return _TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_entry(name: str, scopes: Iterable[Scope], token: str) -> str:
    """The SB_INTEGRATIONS entry of a token, as one JSON line."""
    config = IntegrationConfig(name=name, token_sha256=digest_hex(token),
                               scopes=tuple(dict.fromkeys(scopes)))
    return json.dumps(config.model_dump(mode="json"), separators=(",", ":"))


class Integrations:
    """Every token this process accepts, kept as digests, and the caller each one names."""

    def __init__(self, integrations: Sequence[IntegrationConfig],
                 dev_tokens: Sequence[SecretStr] = ()) -> None:
        everything = frozenset(SCOPES)
        known = [(bytes.fromhex(i.token_sha256), Caller(i.name, frozenset(i.scopes)))
                 for i in integrations]
        known += [(hashlib.sha256(t.get_secret_value().encode()).digest(), Caller(DEV_NAME, everything))
                  for t in dev_tokens]
        self._known = tuple(known)

    @classmethod
    def from_settings(cls, settings: Settings) -> Integrations:
        """The integrations and development tokens of these settings."""
        return cls(settings.integrations, settings.api_tokens)

    def caller(self, headers: Mapping[str, str]) -> Caller | None:
        """The caller named by the request's `Authorization: Bearer` token, or None."""
        scheme, _, token = headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        # aiohttp hands undecodable header bytes over as surrogates; surrogatepass encodes any text
        presented = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        found = None
        # every digest is compared, in constant time each: how long this takes says nothing
        # about how close a guess came
        for digest, caller in self._known:
            if hmac.compare_digest(presented, digest) and found is None:
                found = caller
        return found

    def caller_of(self, request: web.Request) -> Caller | None:
        """The caller of an aiohttp request, or None."""
        return self.caller(request.headers)

    def authorize(self, headers: Mapping[str, str], scope: Scope) -> Caller:
        """The caller when it holds `scope`; otherwise raise Denied (401 or 403)."""
        caller = self.caller(headers)
        if caller is None:
            raise unauthorized()
        if not caller.may(scope):
            raise forbidden(caller, scope)
        return caller


def unauthorized() -> Denied:
    """The 401 for a missing or unknown token."""
    return Denied(401, "unauthorized", "a valid 'Authorization: Bearer <token>' is required")


def forbidden(caller: Caller, scope: Scope) -> Denied:
    """The 403 for a known caller without the route's scope."""
    return Denied(403, "forbidden", f"integration {caller.name!r} lacks the scope {scope!r}", scope)
