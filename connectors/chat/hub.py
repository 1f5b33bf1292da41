"""The sockets one edge process holds, and the one subscription that wakes them.

Every append to any conversation's log is announced on one Redis channel; this process
listens while it holds sockets, and wakes those of the session named. A woken socket
reads its log from the last number it sent, so a notice lost or doubled changes nothing:
the log is the truth, the notice only says "look". After the subscription breaks, every
socket here looks again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from connectors.chat.frames import message_frame
from connectors.chat.log import ChatLog
from schemas.errors import TransientError

__all__ = ["Hub", "Visitor"]

log = logging.getLogger(__name__)
Send = Callable[[dict[str, object]], Awaitable[None]]
_BATCH = 100


@dataclass(eq=False)
class Visitor:
    """One open socket: its session, what it has been sent, and how to send it more."""

    session: str
    last_sent: int
    send: Send
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    pump: asyncio.Task[None] | None = None


class Hub:
    """The sockets of one process, by session; pushes each the log's new messages, in order, once."""

    def __init__(self, log_: ChatLog, *, retry_seconds: float = 1.0) -> None:
        self._log = log_
        self._sessions: dict[str, set[Visitor]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._retry = retry_seconds

    @property
    def open_sockets(self) -> int:
        """How many sockets this process holds."""
        return sum(len(v) for v in self._sessions.values())

    def join(self, visitor: Visitor) -> None:
        """Start pushing to a socket, from the number after its `last_sent`."""
        self._sessions.setdefault(visitor.session, set()).add(visitor)
        visitor.pump = asyncio.create_task(self._pump(visitor), name=f"chat-pump-{visitor.session}")
        visitor.wake.set()
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(), name="chat-listener")

    async def leave(self, visitor: Visitor) -> None:
        """Stop pushing to a socket; the last one out stops the subscription."""
        peers = self._sessions.get(visitor.session, set())
        peers.discard(visitor)
        if not peers:
            self._sessions.pop(visitor.session, None)
        tasks = [visitor.pump] if visitor.pump else []
        if not self._sessions and self._listener is not None:
            tasks.append(self._listener)
            self._listener = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _wake(self, session: str | None = None) -> None:
        groups = [self._sessions.get(session, set())] if session else list(self._sessions.values())
        for group in groups:
            for visitor in group:
                visitor.wake.set()

    async def _pump(self, visitor: Visitor) -> None:
        """Send the socket every message after the last it was sent, whenever woken."""
        while not _cancelled():
            await visitor.wake.wait()
            visitor.wake.clear()
            try:
                while batch := await self._log.read(visitor.session, visitor.last_sent, _BATCH):
                    for seq, entry in batch:
                        await visitor.send(message_frame(seq, entry))
                        visitor.last_sent = seq
            except TransientError as e:
                log.warning("chat: could not read a log; retrying", extra={"reason": e.reason})
                await asyncio.sleep(self._retry)
                visitor.wake.set()
            except ConnectionError:
                return  # the socket closed under us; its handler cleans up

    async def _listen(self) -> None:
        """Follow the announcements channel for as long as this process holds sockets."""
        while not _cancelled():
            pubsub = self._log.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._log.channel)
                # whatever was announced while we were not listening: every socket looks again
                self._wake()
                while not _cancelled():
                    message = await pubsub.get_message(timeout=30.0)
                    if message is not None and message.get("type") == "message":
                        session, _, _ = bytes(message["data"]).decode(errors="replace").partition(" ")
                        self._wake(session)
            except (RedisError, OSError) as e:
                log.warning("chat: subscription lost; resubscribing", extra={"reason": repr(e)})
                await asyncio.sleep(self._retry)
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]


def _cancelled() -> bool:
    """Whether this task was cancelled, even if a library swallowed the CancelledError.

    On Python 3.11 a cancel that meets a timeout inside redis-py (`get_message(timeout=…)`,
    a read under `asyncio.timeout`) can come out as a timeout; the pump or listener then
    looped on and a stop with a socket open waited for the 30 s stop deadline.
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
