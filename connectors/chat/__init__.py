"""The web chat channel: a widget a website embeds with one tag, talking over a WebSocket.

Visitors' messages go onto the inbound topic from the socket (routes.py); replies are
appended to the conversation's numbered log in Redis by the sender (outbound.py) on any
worker and pushed by the edge holding the socket; unseen replies continue by email.
"""

from __future__ import annotations

from connectors.chat.outbound import ChatOutbound
from connectors.chat.parse import parse
from connectors.chat.probe import probe
from connectors.chat.routes import routes
from connectors.chat.settings import ChatSettings
from connectors.spec import ConnectorSpec
from schemas.inbound import ChatExtras

__all__ = ["SPEC", "ChatOutbound", "ChatSettings"]

# the sender reaches a visitor by their session, whoever the customer turned out to be
SPEC = ConnectorSpec(name="chat", settings=ChatSettings, extras=ChatExtras, outbound=ChatOutbound,
                     routes=routes, parse=parse, addresses=frozenset({"chat"}), transcripts=True,
                     probe=probe)
