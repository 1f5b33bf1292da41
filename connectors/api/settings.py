"""Settings of the API channel: it has none of its own; the HTTP server carries it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ApiSettings"]


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """Nothing to configure: the channel lives on the router's HTTP server."""
