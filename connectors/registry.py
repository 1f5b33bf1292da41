"""Every connector Switchboard knows, one line each; nothing is discovered by scanning."""

from __future__ import annotations

from connectors import api
from connectors.base import ConnectorSpec

__all__ = ["CONNECTORS", "get"]

CONNECTORS: dict[str, ConnectorSpec] = {
    api.SPEC.name: api.SPEC,
}


def get(name: str) -> ConnectorSpec:
    """The connector called `name`, or KeyError listing the known ones."""
    try:
        return CONNECTORS[name]
    except KeyError:
        raise KeyError(f"unknown channel {name!r}; known: {', '.join(sorted(CONNECTORS))}") from None
