"""What the chat serves on the router's HTTP server: the socket, the widget's files, a demo page.

All of it is public: a website's visitors have no token. The socket checks what it can
instead: the page's origin, the session's signature, per-address and per-session rates.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from connectors.chat.hub import Hub
from connectors.chat.log import ChatLog, connect
from connectors.chat.settings import ChatSettings
from connectors.chat.socket import ChatSocket
from connectors.routes import Edge, Route

__all__ = ["SOCKET_PATH", "routes"]

SOCKET_PATH = "/v1/chat/socket"
STATIC = Path(__file__).parent / "static"
# file → content type; nothing else under static/ is served
_FILES = {"widget.js": "text/javascript", "widget.css": "text/css", "demo.html": "text/html"}


def _static(name: str) -> Route:
    body, content_type = (STATIC / name).read_bytes(), _FILES[name]

    async def serve(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type, charset="utf-8",
                            headers={"Cache-Control": "public, max-age=300",
                                     "X-Content-Type-Options": "nosniff"})

    return Route("GET", f"/chat/{name}", serve, public=True)


def routes(settings: ChatSettings, edge: Edge) -> Sequence[Route]:
    """The socket and the widget's files; building them does no I/O."""
    chat_log = ChatLog(connect(settings.redis_url.get_secret_value()), settings.namespace,
                       ttl_seconds=settings.log_ttl_seconds)
    socket = ChatSocket(settings, edge, chat_log, Hub(chat_log))
    return (Route("GET", SOCKET_PATH, socket.serve, public=True), *(_static(name) for name in _FILES))
