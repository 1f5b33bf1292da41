"""`GET /v1/chat/socket`: a visitor's WebSocket, from the origin check to the last frame.

Before the upgrade: the page's origin must be allowed. Then the first frame is `hello`:
a session with a valid token resumes (the log is replayed from the number the widget
shows), anything else gets a new session, counted against the address's hourly quota.
A bad frame is answered with an error frame and the socket stays open; only a frame
over `ws_max_size` closes it (1009, by aiohttp, before it is read into memory).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web
from prometheus_client import Counter, Gauge

from connectors.chat.errors import FrameError
from connectors.chat.frames import Ack, Entry, GiveEmail, Hello, Say, decode_frame, error_frame
from connectors.chat.hub import Hub, Visitor
from connectors.chat.log import ChatLog
from connectors.chat.parse import to_inbound
from connectors.chat.sessions import (
    new_session,
    plausible_email,
    session_key,
    session_token,
    verified_email,
    verify_session,
)
from connectors.chat.settings import ChatSettings
from connectors.routes import OPEN_SOCKETS, Edge, Refusal
from schemas.errors import TransientError

__all__ = ["ChatSocket"]

log = logging.getLogger(__name__)
FRAMES_REFUSED = Counter("sb_chat_frames_refused_total", "Visitor frames answered with an error", ["code"])
SOCKETS = Gauge("sb_chat_sockets", "Chat sockets this process holds")
HELLO_SECONDS = 10.0


class ChatSocket:
    """Serves visitors' sockets for one edge process."""

    def __init__(self, settings: ChatSettings, edge: Edge, log_: ChatLog, hub: Hub, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._edge = edge
        self._log = log_
        self._hub = hub
        self._key = session_key(settings.token_key.get_secret_value().encode())
        secret = settings.identity_secret
        self._site_secret = secret.get_secret_value().encode() if secret else None
        self._clock = clock

    async def serve(self, request: web.Request) -> web.StreamResponse:
        """Check the origin, upgrade, greet, then take frames until the visitor goes."""
        origin = request.headers.get("Origin")
        allowed = self._settings.allowed_origins
        if allowed and origin is None:
            raise Refusal(403, "origin_required", "the chat opens from a page: an Origin header is required")
        if allowed and origin is not None and origin.rstrip("/") not in allowed:
            raise Refusal(403, "origin_not_allowed", f"pages on {origin[:200]!r} may not open the chat")
        ws = web.WebSocketResponse(max_msg_size=self._settings.ws_max_size,
                                   heartbeat=self._settings.heartbeat_seconds)
        if not ws.can_prepare(request).ok:
            raise Refusal(426, "upgrade_required", "this is a WebSocket endpoint")
        await ws.prepare(request)
        request.app[OPEN_SOCKETS].add(ws)
        lock = asyncio.Lock()

        async def send(frame: dict[str, Any]) -> None:
            async with lock:
                await ws.send_str(json.dumps(frame, ensure_ascii=False))

        SOCKETS.inc()
        try:
            visitor = await self._greet(ws, request, send)
            if visitor is not None:
                self._hub.join(visitor)
                try:
                    await self._converse(ws, request, visitor, send)
                finally:
                    await self._hub.leave(visitor)
        except ConnectionError:
            pass  # the visitor went away mid-send
        finally:
            SOCKETS.dec()
            await ws.close()
        return ws

    async def _refuse(self, send: Callable[[dict[str, Any]], Any], e: FrameError) -> None:
        FRAMES_REFUSED.labels(e.code).inc()
        await send(error_frame(e))

    async def _greet(self, ws: web.WebSocketResponse, request: web.Request,
                     send: Callable[[dict[str, Any]], Any]) -> Visitor | None:
        """Wait for `hello`; answer with the session to keep; None when the socket must close."""
        while True:
            try:
                async with asyncio.timeout(HELLO_SECONDS):
                    msg = await ws.receive()
            except TimeoutError:
                await self._refuse(send, FrameError("no_hello", "the first frame must be hello"))
                return None
            if msg.type != WSMsgType.TEXT:
                if msg.type == WSMsgType.BINARY:
                    await self._refuse(send, FrameError("binary", "frames are JSON text"))
                    continue
                return None
            try:
                frame = decode_frame(msg.data, self._settings.max_message_chars)
                if not isinstance(frame, Hello):
                    raise FrameError("no_hello", "the first frame must be hello")
                return await self._welcome(frame, request, send)
            except FrameError as e:
                await self._refuse(send, e)
                if e.code == "too_many_sessions":
                    return None
            except TransientError as e:
                await self._refuse(send, FrameError("unavailable", f"{e.reason}; retry", retry_after=1.0))
                return None

    async def _welcome(self, hello: Hello, request: web.Request,
                       send: Callable[[dict[str, Any]], Any]) -> Visitor:
        session = hello.session
        resumed = verify_session(session, hello.token, self._key)
        if not resumed:
            if session is not None:
                await self._refuse(send, FrameError("bad_session", "not a session of ours: a new one starts"))
            ip = request.remote or "unknown"
            if not await self._log.within_rate(f"ip:{ip}", self._settings.sessions_per_ip_per_hour, 3600,
                                               self._clock()):
                raise FrameError("too_many_sessions", "too many new chats from this address; try later",
                                 retry_after=3600.0)
            session = new_session()
        assert session is not None
        if hello.user_hash is not None:
            email = verified_email(hello.user_email, hello.user_hash, self._site_secret)
            if email is None:
                await self._refuse(send, FrameError("bad_identity", "the identity hash does not match"))
            else:
                await self._log.remember(session, email=email, verified="1")
        last = await self._log.last(session)
        meta = await self._log.meta(session)
        await send({"type": "welcome", "session": session, "token": session_token(session, self._key),
                    "resumed": resumed, "last_seq": last, "email": meta.get("email"),
                    "email_verified": meta.get("verified") == "1"})
        await self._status(session, meta, send)
        # resume after what the widget shows; never more than the replay limit of history
        start = max(min(hello.last_seq if resumed else 0, last), last - self._settings.replay_limit, 0)
        return Visitor(session=session, last_sent=start, send=send)

    async def _status(self, session: str, meta: dict[str, str],
                      send: Callable[[dict[str, Any]], Any]) -> None:
        """Say honestly when to expect an answer: the time the acknowledgement would promise."""
        identity = f"email:{meta['email']}" if meta.get("verified") == "1" else f"chat:{session}"
        try:
            outlook = await self._edge.outlook("chat", identity)
        except TransientError as e:
            log.warning("chat: no outlook for the waiting state", extra={"reason": e.reason})
            return
        await send({"type": "status", "tier": outlook.tier, "open_now": outlook.open_now,
                    "opens": outlook.opens.isoformat(), "expected": outlook.expected.isoformat(),
                    "opens_text": outlook.opens_text, "expected_text": outlook.expected_text,
                    # away, or no answer within the visit: offer to continue by mail
                    "offer_email": not outlook.open_now or meta.get("email") is None})

    async def _converse(self, ws: web.WebSocketResponse, request: web.Request, visitor: Visitor,
                        send: Callable[[dict[str, Any]], Any]) -> None:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                await self._refuse(send, FrameError("binary", "frames are JSON text"))
                continue
            if msg.type != WSMsgType.TEXT:
                return
            try:
                frame = decode_frame(msg.data, self._settings.max_message_chars)
                if isinstance(frame, Say):
                    await self._say(frame, request, visitor, send)
                elif isinstance(frame, Ack):
                    await self._log.raise_mark(visitor.session, "seen", min(frame.seq, visitor.last_sent))
                elif isinstance(frame, GiveEmail):
                    await self._give_email(frame, visitor, send)
                else:
                    raise FrameError("invalid_frame", "hello is only the first frame")
            except FrameError as e:
                await self._refuse(send, e)
            except TransientError as e:
                frame_id = frame.id if isinstance(frame, Say) else None
                await self._refuse(send, FrameError("unavailable", f"{e.reason}; retry", frame_id=frame_id,
                                                    retry_after=1.0))

    async def _say(self, say: Say, request: web.Request, visitor: Visitor,
                   send: Callable[[dict[str, Any]], Any]) -> None:
        """Number the message (once, however often it is resent), route it, confirm it."""
        limit = self._settings.messages_per_minute
        if not await self._log.within_rate(f"session:{visitor.session}", limit, 60, self._clock()):
            raise FrameError("rate_limited", f"at most {limit} messages a minute",
                             frame_id=say.id, retry_after=60 - self._clock() % 60)
        now = datetime.fromtimestamp(self._clock(), UTC)
        entry = Entry(id=say.id, author="visitor", text=say.text, at=now)
        seq, _ = await self._log.append(visitor.session, entry)
        meta = await self._log.meta(visitor.session)
        verified = meta.get("email") if meta.get("verified") == "1" else None
        message = to_inbound(visitor.session, say.id, say.text, seq=seq, verified=verified,
                             email=meta.get("email"), origin=request.headers.get("Origin"), received_at=now)
        # a resend is handed over again: intake drops the event id it has seen
        await self._edge.accept(message)
        await send({"type": "accepted", "id": say.id, "seq": seq})

    async def _give_email(self, frame: GiveEmail, visitor: Visitor,
                          send: Callable[[dict[str, Any]], Any]) -> None:
        """Keep the address to continue by mail; it stays unverified."""
        address = plausible_email(frame.address)
        if address is None:
            raise FrameError("invalid_email", "that does not look like an email address")
        meta = await self._log.meta(visitor.session)
        if meta.get("verified") == "1" and meta.get("email") != address:
            raise FrameError("email_fixed", "this chat continues at the address the site gave")
        await self._log.remember(visitor.session, email=address)
        if int(meta.get("mailed", "0")) < await self._log.last(visitor.session):
            await self._log.mail_later(visitor.session, self._clock() + self._settings.email_after_seconds)
        await send({"type": "email", "address": address, "verified": meta.get("verified") == "1"})
