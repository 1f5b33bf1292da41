"""SMTP out: one reply per send over a pool of reused connections, bounded retries, a receipt always.

Up to `smtp.connections` replies are in flight at once, each on its own connection (opened
when first needed, kept for the next reply); a reply waiting for a free one waits its turn.
Which replies are sent, and how often, is still the send stage's claim (decision 0003):
the pool only lets several claimed replies travel at the same time.

4xx answers and network errors before the message data was sent are retried with
exponential backoff and full jitter; 5xx fails at once with the server's words. A
connection lost while the data was in flight may have delivered it, so that send is
`uncertain`, not retried: a second copy to a customer is worse than a flagged receipt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import aiosmtplib
from prometheus_client import Counter

from connectors.base import Outbound
from connectors.email.errors import SmtpRejected, SmtpTransient
from connectors.email.imap import ImapSession, backoff_delay
from connectors.email.mime import BuiltReply, build_reply
from connectors.email.settings import EmailSettings, SmtpSettings
from connectors.email.smtp import NETWORK, classified, connect
from schemas.errors import AuthError, ConfigError, PermanentError, SwitchboardError
from schemas.outbound import DeliveryReceipt, DeliveryStatus, OutboundMessage

__all__ = ["EmailOutbound"]

log = logging.getLogger(__name__)

SENT = Counter("sb_email_replies_total", "Replies by final status", ["status"])
ATTEMPTS = Counter("sb_email_smtp_attempts_total", "SMTP transactions tried", ["outcome"])



class _InFlight(SwitchboardError):
    """The connection died while the message data was on its way."""


class _Stale(SmtpTransient):
    """The connection was gone before the first command of a transaction."""


class _Line:
    """One SMTP connection of the pool, or the place for one when it is not open."""

    __slots__ = ("client",)

    def __init__(self) -> None:
        self.client: aiosmtplib.SMTP | None = None


class EmailOutbound(Outbound[EmailSettings]):
    """Sends replies through the configured SMTP server and optionally files them in Sent."""

    def __init__(self, settings: EmailSettings) -> None:
        super().__init__(settings)
        size = settings.smtp.connections if settings.smtp is not None else 1
        # last in, first out: a lone reply reuses the warm connection, not a cold one
        self._idle: asyncio.LifoQueue[_Line] = asyncio.LifoQueue()
        for _ in range(size):
            self._idle.put_nowait(_Line())
        self._size = size
        self._archive: ImapSession | None = None
        self._archive_ready = False
        self._archive_refused = False
        self._archive_lock = asyncio.Lock()

    @property
    def _config(self) -> SmtpSettings:
        if self.settings.smtp is None:
            raise ConfigError("no SMTP server configured", where="email.smtp")
        return self.settings.smtp

    async def start(self) -> None:
        """Connect and log in once, so bad credentials show at start; the others open when needed."""
        async with self._line() as line:
            await self._connection(line)

    async def stop(self) -> None:
        """Wait for the replies in flight, say QUIT on every connection; safe to call twice."""
        lines = [await self._idle.get() for _ in range(self._size)]
        try:
            for line in lines:
                await self._drop(line)
        finally:
            for line in lines:
                self._idle.put_nowait(line)
        async with self._archive_lock:
            archive, self._archive = self._archive, None
            if archive is not None:
                await archive.close()

    async def send(self, message: OutboundMessage, *, reply_token: str | None = None) -> DeliveryReceipt:
        """Send one reply; the receipt says sent, failed (with the reason) or uncertain.

        `reply_token` replaces the conversation's token in Reply-To and `[ref:]` (a
        continuation token, bound to the recipient); the Message-ID keeps the conversation's.
        """
        smtp = self._config
        try:
            built = build_reply(message, smtp, self.settings.token_key.get_secret_value().encode(),
                                now=datetime.now(UTC), reply_token=reply_token)
        except PermanentError as e:
            return self._receipt(message, "failed", e.reason)
        except Exception as e:  # noqa: BLE001 - building is pure: nothing left, this reply fails alone
            log.error("email: could not build a reply",
                      extra={"reply_id": message.reply_id, "error": repr(e)})
            return self._receipt(message, "failed", f"could not build the mail: {type(e).__name__}: {e}")
        status, reason = await self._deliver(built)
        if status == "sent" and self.settings.sent_account() is not None:
            async with self._archive_lock:
                await self._file_in_sent(built)
        log.info("email: reply %s", status, extra={"reply_id": message.reply_id,
                 "conversation_id": message.conversation_id, "reason": reason})
        return self._receipt(message, status, reason, built.message_id if status != "failed" else None)

    def _receipt(self, message: OutboundMessage, status: DeliveryStatus, reason: str | None,
                 provider_id: str | None = None) -> DeliveryReceipt:
        SENT.labels(status).inc()
        return DeliveryReceipt(reply_id=message.reply_id, conversation_id=message.conversation_id,
                               channel="email", status=status, at=datetime.now(UTC),
                               reason=reason, provider_id=provider_id)

    async def _deliver(self, built: BuiltReply) -> tuple[DeliveryStatus, str | None]:
        """Try up to max_attempts times; the outcome and, unless sent, why."""
        smtp = self._config
        last = ""
        for attempt in range(1, smtp.max_attempts + 1):
            try:
                # a connection per attempt: the backoff below holds none
                async with self._line() as line:
                    await self._transaction(line, built)
            except SmtpRejected as e:
                ATTEMPTS.labels("rejected").inc()
                return "failed", e.reason
            except _InFlight as e:
                ATTEMPTS.labels("uncertain").inc()
                return "uncertain", e.reason
            except SmtpTransient as e:
                ATTEMPTS.labels("transient").inc()
                last = e.reason
                if attempt < smtp.max_attempts:
                    delay = backoff_delay(attempt, smtp.backoff_base_seconds, smtp.backoff_max_seconds)
                    log.warning("email: send attempt %d failed (%s); retrying in %.2fs",
                                attempt, e.reason, delay, extra={"message_id": built.message_id})
                    await asyncio.sleep(delay)
            else:
                ATTEMPTS.labels("sent").inc()
                return "sent", None
        return "failed", f"gave up after {smtp.max_attempts} attempts; last: {last}"

    @asynccontextmanager
    async def _line(self) -> AsyncIterator[_Line]:
        """A connection of the pool for one transaction, given back after it, whatever happened."""
        line = await self._idle.get()
        try:
            yield line
        finally:
            self._idle.put_nowait(line)

    async def _transaction(self, line: _Line, built: BuiltReply) -> None:
        """MAIL, RCPT, DATA on one pooled connection; a stale reused one is renewed once."""
        reused = line.client is not None and line.client.is_connected
        client = await self._connection(line)
        try:
            await self._envelope(line, client, built)
        except _Stale:
            if not reused:
                raise
            # servers drop idle connections: that costs a reconnect, not an attempt
            client = await self._connection(line)
            await self._envelope(line, client, built)
        await self._data(line, client, built)

    async def _envelope(self, line: _Line, client: aiosmtplib.SMTP, built: BuiltReply) -> None:
        try:
            await client.mail(built.sender)
        except aiosmtplib.SMTPResponseException as e:
            await self._reset(line, client)
            raise classified(e, "MAIL FROM") from e
        except NETWORK as e:
            await self._drop(line)
            raise _Stale(f"MAIL FROM: {e!r}") from e
        await self._recipient(line, client, built)

    async def _recipient(self, line: _Line, client: aiosmtplib.SMTP, built: BuiltReply) -> None:
        try:
            await client.rcpt(built.recipient)
        except aiosmtplib.SMTPResponseException as e:
            await self._reset(line, client)
            raise classified(e, "RCPT TO") from e
        except NETWORK as e:
            await self._drop(line)
            raise SmtpTransient(f"RCPT TO: {e!r}") from e
        except ValueError as e:  # an address aiosmtplib will not put on the wire
            await self._reset(line, client)
            raise SmtpRejected(f"recipient {built.recipient!r}: {e}", 501) from e

    async def _data(self, line: _Line, client: aiosmtplib.SMTP, built: BuiltReply) -> None:
        try:
            await client.data(built.data)
        except aiosmtplib.SMTPResponseException as e:
            await self._reset(line, client)
            raise classified(e, "DATA") from e
        except NETWORK as e:
            await self._drop(line)
            raise _InFlight(f"connection lost during DATA, the server may have the message: {e!r}") from e

    async def _reset(self, line: _Line, client: aiosmtplib.SMTP) -> None:
        """Clear a failed envelope so the connection can carry the next one."""
        try:
            await client.rset()
        except (aiosmtplib.SMTPException, *NETWORK):
            await self._drop(line)

    async def _connection(self, line: _Line) -> aiosmtplib.SMTP:
        """The connection on `line`, (re)connected and logged in as needed."""
        if line.client is None or not line.client.is_connected:
            line.client = await connect(self._config)
        return line.client

    async def _drop(self, line: _Line) -> None:
        client, line.client = line.client, None
        if client is None:
            return
        if client.is_connected:
            try:
                await client.quit(timeout=min(self._config.timeout, 5.0))
            except (aiosmtplib.SMTPException, *NETWORK):
                client.close()

    async def _file_in_sent(self, built: BuiltReply) -> None:
        """Append the sent bytes to the Sent folder; failing that is logged, never fatal."""
        account = self.settings.sent_account()
        smtp = self._config
        if account is None or self._archive_refused:
            return
        try:
            if self._archive is None:
                session = ImapSession(account)
                self._archive = session
                await session.open()
                self._archive_ready = await session.exists(smtp.sent_folder)
            if not self._archive_ready:
                await self._archive.create(smtp.sent_folder)
                self._archive_ready = True
            await self._archive.append(built.data, smtp.sent_folder, flags="(\\Seen)")
        except SwitchboardError as e:
            if isinstance(e, AuthError):
                # a refused login will not heal by itself: stop trying and say so loudly
                self._archive_refused = True
                log.error("ALERT email: replies are no longer filed in %s: %s", smtp.sent_folder,
                          e.reason, extra={"account": account.name, "alert": True})
            else:
                log.warning("email: could not file reply in %s: %s", smtp.sent_folder, e.reason,
                            extra={"message_id": built.message_id, "account": account.name})
            archive, self._archive = self._archive, None
            if archive is not None:
                await archive.close()

