"""The built-in `api` channel: `POST /v1/messages` on the router's HTTP server.

It is pushed to (routes.py), so it has no pulled source, and it has no sender: an API
caller reads replies back from the conversations API, and when the customer's identity is
an email address and the email channel runs, the customer is answered by email
(`reply_via`).
"""

from __future__ import annotations

from connectors.api.parse import parse
from connectors.api.probe import probe
from connectors.api.routes import routes
from connectors.api.settings import ApiSettings
from connectors.spec import ConnectorSpec
from schemas.inbound import ApiExtras

__all__ = ["SPEC"]

SPEC = ConnectorSpec(name="api", settings=ApiSettings, extras=ApiExtras, on_by_default=True,
                     routes=routes, parse=parse, reply_via=("email",),
                   probe=probe)
