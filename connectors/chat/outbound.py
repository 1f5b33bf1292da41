"""Replies into the chat: appended to the conversation's log, which wakes the visitor's socket.

Whichever worker sends, the reply lands in Redis and the edge process holding the
visitor's socket pushes it (hub.py). A reply the visitor has not displayed after
`email_after_seconds` goes on by mail when an address is known (continuation.py).
Appending is idempotent by reply id, so a retry after a Redis hiccup is still one message.
A `transcript` is the visitor's own answer to a continuation mail, verified by intake: it
joins the log as theirs ("by email"), and the address it came from becomes the session's
verified email.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

from prometheus_client import Counter

from connectors.base import Outbound, cancel_tasks
from connectors.chat.continuation import Continuation
from connectors.chat.frames import Author, Entry
from connectors.chat.log import ChatLog, connect
from connectors.chat.parse import session_of
from connectors.chat.settings import ChatSettings
from schemas.errors import TransientError
from schemas.outbound import DeliveryReceipt, DeliveryStatus, OutboundMessage

__all__ = ["ChatOutbound"]

log = logging.getLogger(__name__)
SENT = Counter("sb_chat_replies_total", "Replies into the chat by final status", ["status"])
ATTEMPTS = 3
_AUTHORS: dict[str, Author] = {"agent_reply": "agent", "transcript": "visitor"}


class ChatOutbound(Outbound[ChatSettings]):
    """Appends replies to chat logs; runs the continuation mail when SMTP is configured."""

    def __init__(self, settings: ChatSettings) -> None:
        super().__init__(settings)
        self._log: ChatLog | None = None
        self._continuation: Continuation | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Reach Redis (and SMTP), then start looking for replies due by mail."""
        s = self.settings
        redis = connect(s.redis_url.get_secret_value())
        self._log = ChatLog(redis, s.namespace, ttl_seconds=s.log_ttl_seconds)
        await self._log.last("s_" + "0" * 22)  # a round trip: Redis answers now, or the start says so
        if s.smtp is not None:
            self._continuation = Continuation(self._log, s.smtp, s.token_key.get_secret_value(),
                                              recap=s.recap_messages, clock=time.time,
                                              token_days=s.continuation_days)
            await self._continuation.start()
            self._task = asyncio.create_task(self._continuation.run(s.email_poll_seconds), name="chat-mail")

    async def stop(self) -> None:
        """Stop the mail loop and close connections; safe to call twice."""
        task, self._task = self._task, None
        if task is not None:
            # cancelled again if a Redis call swallowed it: a stop hung once on a task stuck cancelling
            await cancel_tasks([task])
        continuation, self._continuation = self._continuation, None
        if continuation is not None:
            await continuation.stop()
        chat_log, self._log = self._log, None
        if chat_log is not None:
            await chat_log.close()

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        """Append one reply to its conversation's log; sent means the visitor will see it."""
        if self._log is None:
            return self._receipt(message, "failed", "the chat sender is not started")
        session = session_of(message.in_reply_to) or (
            message.recipient.value if message.recipient.kind == "chat" else None)
        if session is None:
            return self._receipt(message, "failed", "the reply names no chat session")
        entry = Entry(id=message.reply_id, author=_AUTHORS.get(message.kind, "system"),
                      name=message.author, text=message.text, at=message.created_at, kind=message.kind)
        # intake verified the visitor reads this mailbox before it sent the transcript
        proven = ({"email": message.author.lower(), "verified": "1"}
                  if message.kind == "transcript" and message.author else {})
        last = ""
        for attempt in range(ATTEMPTS):
            try:
                seq, _ = await self._log.append(session, entry)
                await self._log.remember(session, conversation=message.conversation_id, **proven)
                if self._continuation is not None and entry.author == "agent":
                    await self._log.mail_later(session, time.time() + self.settings.email_after_seconds)
            except TransientError as e:
                last = e.reason
                await asyncio.sleep(0.2 * 2**attempt)
                continue
            return self._receipt(message, "sent", None, f"{session}#{seq}")
        return self._receipt(message, "failed", f"gave up after {ATTEMPTS} attempts: {last}")

    def _receipt(self, message: OutboundMessage, status: DeliveryStatus, reason: str | None,
                 provider_id: str | None = None) -> DeliveryReceipt:
        SENT.labels(status).inc()
        if status != "sent":
            log.warning("chat: reply %s: %s", status, reason, extra={"reply_id": message.reply_id})
        return DeliveryReceipt(reply_id=message.reply_id, conversation_id=message.conversation_id,
                               channel="chat", status=status, at=datetime.now(UTC), reason=reason,
                               provider_id=provider_id)
