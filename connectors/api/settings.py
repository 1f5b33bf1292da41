"""Settings of the API channel: none of its own; the router's HTTP server carries it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["ApiSettings"]


class ApiSettings(BaseModel):
    """Nothing to configure: the channel is a route on the router's HTTP server."""

    model_config = ConfigDict(frozen=True, extra="forbid")
