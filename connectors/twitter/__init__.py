"""The X (Twitter) channel, called `x` in events and the policy.

Mentions and DMs come in by the X Activity API's webhook (webhook.py) or by polling
(inbound.py); both meet in one parser (parse.py). Replies go out through tweepy's async
client (outbound.py): in the customer's thread when X allows it, else by DM or a short
public invite to DM.
"""

from __future__ import annotations

from connectors.spec import ConnectorSpec
from connectors.twitter.inbound import XPolling
from connectors.twitter.outbound import XSender
from connectors.twitter.parse import parse
from connectors.twitter.settings import XSettings
from connectors.twitter.webhook import routes
from schemas.inbound import XExtras

__all__ = ["SPEC"]

SPEC = ConnectorSpec(name="x", settings=XSettings, extras=XExtras, inbound=XPolling, outbound=XSender,
                     routes=routes, parse=parse)
