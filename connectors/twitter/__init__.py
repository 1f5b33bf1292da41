"""The X (Twitter) channel, called `x` in events and the policy.

Mentions and DMs come in by the X Activity API's webhook (webhook.py) or by polling
(inbound.py); both meet in one parser (parse.py). Replies go out through tweepy's async
client (outbound.py): in the customer's thread when X allows it, else by DM or a short
public invite to DM.
"""

from __future__ import annotations

from connectors.base import CursorStore
from connectors.spec import ConnectorSpec
from connectors.twitter.inbound import XPolling
from connectors.twitter.limits import shared_account
from connectors.twitter.outbound import XSender
from connectors.twitter.parse import parse
from connectors.twitter.probe import probe
from connectors.twitter.settings import XSettings
from connectors.twitter.webhook import routes
from schemas.inbound import XExtras

__all__ = ["SPEC"]



def polling(settings: XSettings, cursors: CursorStore) -> XPolling:
    """The account's poller, on the account's pacer and budget (shared by every process in Redis)."""
    return XPolling(settings, cursors, account=shared_account(settings))


def sender(settings: XSettings) -> XSender:
    """The account's sender, on the account's pacer and budget (shared by every process in Redis)."""
    return XSender(settings, account=shared_account(settings))


SPEC = ConnectorSpec(name="x", settings=XSettings, extras=XExtras, inbound=polling, outbound=sender,
                     routes=routes, parse=parse, addresses=frozenset({"xid"}),
                     probe=probe)
