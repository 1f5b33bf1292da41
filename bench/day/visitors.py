"""Chat visitors and callers of the day: the web chat's real socket and Twilio's signed voice webhooks.

A visitor opens `/v1/chat/socket` as the widget does (hello, then messages; logged-in
visitors carry the shop's identity hash, the others type an address to continue by
mail), reads what the agents write and acknowledges it, and may leave before the
answer: the continuation mail then reaches them by SMTP. A caller's voicemail is the
Twilio emulator's call: the voice request, the recording status, the transcript, each
signed as Twilio signs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable

import aiohttp

from connectors.chat.sessions import identity_hash
from tests.emulators.twilio import Call

__all__ = ["PUBLIC", "ChatVisitor", "leave_voicemail"]

# the public URL Twilio knows our number's webhooks by (the edge is reached directly)
PUBLIC = "https://support.example.com"


class ChatVisitor:
    """One visitor's socket: says things, sees the agents' messages, may leave."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        url: str,
        address: str,
        *,
        site_secret: bytes | None,
        on_agent: Callable[[str], None],
    ) -> None:
        self.http, self.url, self.address = http, url, address
        self.site_secret, self.on_agent = site_secret, on_agent
        self.session = ""
        self.seen: list[str] = []
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def here(self) -> bool:
        """Whether the socket is still open."""
        return self._ws is not None and not self._ws.closed

    async def open(self) -> None:
        """Open the socket, say hello (vouched for by the shop when logged in), give an address."""
        self._ws = await self.http.ws_connect(self.url, max_msg_size=1024 * 1024)
        hello: dict[str, object] = {"type": "hello"}
        if self.site_secret is not None:
            hello |= {"user_email": self.address, "user_hash": identity_hash(self.address, self.site_secret)}
        await self._ws.send_str(json.dumps(hello))
        while True:
            frame = json.loads((await self._ws.receive(timeout=30)).data)
            if frame["type"] == "welcome":
                self.session = str(frame["session"])
                break
        if self.site_secret is None:
            # not logged in: they type their address to get the answer by mail should they leave
            await self._ws.send_str(json.dumps({"type": "email", "address": self.address}))
        self._reader = asyncio.create_task(self._read())

    async def say(self, text: str) -> None:
        """One message, with the widget's id for it."""
        assert self._ws is not None
        frame = {"type": "message", "id": uuid.uuid4().hex, "text": text[:4000]}
        await self._ws.send_str(json.dumps(frame))

    async def leave(self) -> None:
        """Close the tab."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._ws is not None:
            await self._ws.close()

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            frame = json.loads(msg.data)
            if frame.get("type") != "message":
                continue
            # displayed: the widget acknowledges, so the reply is not mailed on as well
            await self._ws.send_str(json.dumps({"type": "ack", "seq": frame["seq"]}))
            if frame.get("author") == "agent":
                self.seen.append(str(frame["text"]))
                self.on_agent(str(frame["text"]))


async def leave_voicemail(
    http: aiohttp.ClientSession, edge: str, caller: str, text: str, *, pause: Callable[[], float]
) -> Call:
    """A call to our number: greeted, recorded, transcribed; each webhook signed as Twilio signs."""
    call = Call(edge_url=edge, public_url=PUBLIC, caller=caller)
    status, twiml = await call.answer(http)
    if status != 200:
        raise RuntimeError(f"voice webhook answered {status}: {twiml[:200]}")
    await asyncio.sleep(pause())  # the caller speaks after the beep
    await call.record(http, seconds=min(110, 8 + len(text) // 12))
    await asyncio.sleep(pause())  # Twilio transcribes
    await call.transcribe(http, text)
    return call
