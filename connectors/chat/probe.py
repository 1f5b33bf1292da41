"""The chat channel's synthetic probe: a visitor's message over our own chat socket.

It speaks the widget's protocol (frames.py): `hello`, `welcome`, `message`, `accepted`.
One session carries a run of probes, resumed with its token and the last number seen,
so no history is replayed and the address's hourly quota of new sessions is barely
touched; a fresh session every `SESSION_PROBES` probes keeps each log short (the logs
expire like any visitor's).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from connectors.base import Probe, ProbeTarget
from connectors.chat.routes import SOCKET_PATH
from connectors.chat.settings import ChatSettings
from schemas.errors import TransientError

__all__ = ["SESSION_PROBES", "ChatProbe", "probe"]

SESSION_PROBES = 60
TIMEOUT_SECONDS = 10.0


class ChatProbe(Probe):
    """Opens the socket as a visitor's widget does and says one marked message."""

    def __init__(self, target: ProbeTarget) -> None:
        self.url = target.api_url.rstrip("/") + SOCKET_PATH
        self._session: str | None = None
        self._token: str | None = None
        self._last_seq = 0
        self._sent = 0

    def _hello(self) -> dict[str, Any]:
        if self._session is None or self._sent >= SESSION_PROBES:
            self._session = self._token = None
            self._last_seq = self._sent = 0
            return {"type": "hello"}
        return {"type": "hello", "session": self._session, "token": self._token, "last_seq": self._last_seq}

    async def send(self, probe_id: str, text: str) -> None:
        """Greet, say the probe, wait until the socket accepted it; anything else is the reason it failed."""
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)) as http, \
                    http.ws_connect(self.url, heartbeat=None, max_msg_size=1024 * 1024) as ws:
                await ws.send_str(json.dumps(self._hello()))
                welcome = await self._frame(ws, "welcome")
                self._session, self._token = welcome["session"], welcome["token"]
                self._last_seq = max(self._last_seq, int(welcome.get("last_seq", 0)))
                await ws.send_str(json.dumps({"type": "message", "id": probe_id, "text": text}))
                accepted = await self._frame(ws, "accepted", probe_id)
                self._last_seq = max(self._last_seq, int(accepted["seq"]))
                self._sent += 1
        except (aiohttp.ClientError, TimeoutError, KeyError, ValueError, TypeError) as e:
            raise TransientError(f"chat socket {self.url}: {e!r}"[:300]) from e

    async def _frame(self, ws: aiohttp.ClientWebSocketResponse, wanted: str,
                     frame_id: str | None = None) -> dict[str, Any]:
        """The next frame of type `wanted` (for `frame_id`); an error frame about it is the failure."""
        while True:
            msg = await ws.receive(timeout=TIMEOUT_SECONDS)
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise TransientError(f"chat socket {self.url} closed before {wanted} ({msg.type.name})")
            frame = json.loads(msg.data)
            if not isinstance(frame, dict):
                continue
            if frame.get("type") == "error" and frame.get("code") != "bad_session" and \
                    frame.get("id") in (None, frame_id):
                raise TransientError(f"chat socket refused the probe: {frame.get('code')}: "
                                     f"{frame.get('message')}")
            if frame.get("type") == wanted and (frame_id is None or frame.get("id") == frame_id):
                return frame


def probe(settings: ChatSettings, target: ProbeTarget) -> Probe | None:
    """The chat is probed through the router's own HTTP server, where its socket is served."""
    return ChatProbe(target)
