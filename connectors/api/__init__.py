"""The built-in `api` channel: `POST /v1/messages` on the router's HTTP server.

Its inbound side is the HTTP handler (push), so it has no polling source; replies to
API callers are read back from the conversation API, so it has no sender either.
"""

from __future__ import annotations

from connectors.api.parse import parse
from connectors.api.settings import ApiSettings
from connectors.base import ConnectorSpec

__all__ = ["SPEC"]

SPEC = ConnectorSpec(name="api", settings=ApiSettings, inbound=None, outbound=None, parse=parse)
