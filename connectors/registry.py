"""Every connector Switchboard knows, one line each; nothing is discovered by scanning."""

from __future__ import annotations

from connectors import api, email
from connectors.base import ConnectorSpec
from schemas.errors import ConfigError

__all__ = ["CONNECTORS", "get"]

CONNECTORS: dict[str, ConnectorSpec] = {
    api.SPEC.name: api.SPEC,
    email.SPEC.name: email.SPEC,
}


def get(name: str) -> ConnectorSpec:
    """The connector called `name`, or a ConfigError listing the known ones."""
    try:
        return CONNECTORS[name]
    except KeyError:
        known = ", ".join(sorted(CONNECTORS))
        raise ConfigError(f"unknown channel {name!r}; known: {known}") from None
