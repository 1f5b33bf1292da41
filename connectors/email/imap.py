"""IMAP sessions: one logged-in connection, its commands under timeouts, fetch parsing.

aioimaplib is wrapped here so the rest of the channel speaks in mailboxes, UIDs and
raw mail; library errors are mapped to the error tree at this edge.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import socket
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import aioimaplib

from connectors.email.errors import ImapError
from connectors.email.settings import ImapAccount, tls_context
from schemas.errors import AuthError, ConfigError

__all__ = [
    "DEADLETTER_BYTES", "FETCH_BYTES", "Fetched", "ImapSession", "backoff_delay", "imap_url",
    "open_checked_session", "open_session", "uid_set",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

DEADLETTER_BYTES = 1024 * 1024
# one body fetch carries at most this many bytes, whatever fetch_batch says
FETCH_BYTES = 32 * 1024 * 1024
# a body fetch may last as long as this rate needs, on top of the timeout
_SLOWEST_BYTES_PER_SECOND = 100_000
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0

_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_FETCH_START = re.compile(rb"^\d+ FETCH \(")
_UID = re.compile(rb"\bUID (\d+)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_DATE = re.compile(rb'\bINTERNALDATE "([ 0-9]{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-]\d{4})"')
_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
_NETWORK = (TimeoutError, OSError, aioimaplib.AioImapException)


def backoff_delay(attempt: int, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**(attempt-1))]."""
    return random.uniform(0, min(cap, base * 2 ** min(max(attempt - 1, 0), 30)))


def imap_url(account: ImapAccount, uidvalidity: int, uid: int) -> str:
    """The RFC 5092 IMAP URL of one message."""
    user = quote(account.username, safe="")
    box = quote(account.mailbox, safe="/")
    return f"imap://{user}@{account.host}:{account.port}/{box};UIDVALIDITY={uidvalidity}/;UID={uid}"


# ---- one IMAP connection ----------------------------------------------------------------


class _Protocol(aioimaplib.IMAP4ClientProtocol):  # type: ignore[misc]
    """aioimaplib's protocol that counts new-mail announcements and fails fast on a drop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, conn_lost_cb: Any = None) -> None:
        super().__init__(loop, conn_lost_cb)
        self.announced = 0
        self.lost = False

    def _untagged_response(self, line: bytes) -> Any:
        # `* n EXISTS` arriving during a SEARCH or FETCH is dropped by the library; counting
        # it lets the reader sync again instead of idling past the new mail
        if line.endswith(b" EXISTS"):
            self.announced += 1
        return super()._untagged_response(line)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        # a dead connection never answers: wake every waiter now instead of at its timeout
        for command in (self.pending_sync_command, *self.pending_async_commands.values()):
            if command is not None:
                command.close(b"connection lost", "BYE")
        self.idle_queue.put_nowait(aioimaplib.STOP_WAIT_SERVER_PUSH)
        super().connection_lost(exc)


class _Client(aioimaplib.IMAP4):  # type: ignore[misc]
    """aioimaplib's client speaking through `_Protocol`."""

    def create_client(self, host: str, port: int, loop: asyncio.AbstractEventLoop | None,
                      conn_lost_cb: Any = None, ssl_context: Any = None) -> None:
        running = loop or asyncio.get_running_loop()
        self.protocol = _Protocol(running, conn_lost_cb)
        self._client_task = running.create_task(
            running.create_connection(lambda: self.protocol, host, port, ssl=ssl_context))


@dataclass(frozen=True, slots=True)
class Fetched:
    uid: int
    size: int | None = None
    arrived: datetime | None = None
    body: bytes | None = None


class ImapSession:
    """One logged-in IMAP connection: a timeout on every await, library errors mapped."""

    def __init__(self, account: ImapAccount) -> None:
        self.account = account
        self._client: Any = None
        self._idling = False

    @property
    def announced(self) -> int:
        """How many `EXISTS` announcements the server has made on this connection."""
        return int(self._client.protocol.announced) if self._client is not None else 0

    @property
    def has_idle(self) -> bool:
        """Whether the server offers IDLE."""
        return self._client is not None and bool(self._client.has_capability("IDLE"))

    def _where(self) -> str:
        return f"IMAP account {self.account.name!r} ({self.account.host}:{self.account.port})"

    async def _guard(self, what: str, pending: Awaitable[T], seconds: float | None = None) -> T:
        """Await a library call under a timeout, mapping its failures to ImapError."""
        if self._client is not None and self._client.protocol.lost:
            if asyncio.iscoroutine(pending):
                pending.close()
            raise ImapError(f"{self._where()}: connection lost before {what}")
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel (gh-86296)
            async with asyncio.timeout(seconds or self.account.timeout):
                return await pending
        except _NETWORK as e:
            raise ImapError(f"{self._where()}: {what} failed: {e!r}"[:400]) from e

    async def _ok(self, what: str, pending: Awaitable[Any], seconds: float | None = None) -> Any:
        """Run a command and insist on an OK answer."""
        response = await self._guard(what, pending, seconds)
        if response.result != "OK":
            text = b" ".join(bytes(x) for x in response.lines[-1:]).decode(errors="replace")
            raise ImapError(f"{self._where()}: {what} answered {response.result} {text}"[:400],
                            refused=response.result in ("NO", "BAD"))
        return response

    async def open(self) -> None:
        """Connect, upgrade to TLS as configured and log in; AuthError when refused."""
        account = self.account
        context = tls_context(account.tls_ca_file) if account.tls == "implicit" else None
        self._client = _Client(host=account.host, port=account.port, timeout=account.timeout,
                               ssl_context=context)
        await self._guard("connect", self._client.wait_hello_from_server())
        _keep_alive(self._client.protocol.transport)
        if account.tls == "starttls":
            await self._starttls()
        password = account.password.get_secret_value()
        response = await self._guard(
            "LOGIN", self._client.login(aioimaplib.quoted(account.username), password))
        if response.result == "OK":
            # servers may advertise IDLE, MOVE, ... only once logged in
            await self._guard("CAPABILITY", self._client.protocol.capability())
            return
        text = b" ".join(bytes(x) for x in response.lines).decode(errors="replace")[:200]
        if response.result == "NO" and "[UNAVAILABLE]" not in text:
            raise AuthError(f"{self._where()}: login as {account.username!r} refused: {text}")
        raise ImapError(f"{self._where()}: LOGIN answered {response.result} {text}")

    async def _starttls(self) -> None:
        """Upgrade the plain connection in place (aioimaplib has no STARTTLS of its own)."""
        if not self._client.has_capability("STARTTLS"):
            raise ConfigError(f"{self._where()} does not offer STARTTLS",
                              where=f"email.accounts[{self.account.name}].tls")
        protocol = self._client.protocol
        command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
        await self._ok("STARTTLS", protocol.execute(command))
        loop = asyncio.get_running_loop()
        protocol.transport = await self._guard("TLS handshake", loop.start_tls(
            protocol.transport, protocol, tls_context(self.account.tls_ca_file),
            server_hostname=self.account.host))
        await self._guard("CAPABILITY", protocol.capability())

    async def select(self, mailbox: str) -> int:
        """Select `mailbox` and return its UIDVALIDITY."""
        response = await self._ok(f"SELECT {mailbox}", self._client.select(aioimaplib.quoted(mailbox)))
        for line in response.lines:
            found = _UIDVALIDITY.search(bytes(line))
            if found:
                return int(found.group(1))
        raise ImapError(f"{self._where()}: SELECT {mailbox} gave no UIDVALIDITY")

    async def exists(self, mailbox: str) -> bool:
        """Whether a mailbox of that name exists."""
        response = await self._ok("LIST", self._client.list('""', aioimaplib.quoted(mailbox)))
        # the library strips "LIST": each hit reads `(\\Flags) "/" name`
        return any(bytes(line).startswith(b"(") for line in response.lines[:-1])

    async def create(self, mailbox: str) -> None:
        """Create a mailbox."""
        await self._ok(f"CREATE {mailbox}", self._client.create(aioimaplib.quoted(mailbox)))

    async def append(self, data: bytes, mailbox: str, flags: str = "") -> None:
        """Store a message in `mailbox`."""
        await self._ok(f"APPEND {mailbox}", self._client.append(
            data, mailbox=aioimaplib.quoted(mailbox), flags=flags or None))

    async def uids_after(self, last: int) -> list[int]:
        """UIDs above `last`, ascending (`n:*` also names the highest UID: filtered out)."""
        response = await self._ok("UID SEARCH", self._client.uid_search(f"UID {last + 1}:*", charset=None))
        uids: set[int] = set()
        for line in response.lines[:-1]:  # the library strips "SEARCH"; the last is the status
            uids.update(int(n) for n in bytes(line).split() if n.isdigit())
        return sorted(u for u in uids if u > last)

    async def with_message_id(self, fragment: str) -> list[int]:
        """UIDs of messages whose Message-ID contains `fragment` (letters, digits, `_`, `.`, `-` only)."""
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,200}", fragment):
            raise ValueError(f"not a Message-ID fragment to search for: {fragment[:40]!r}")
        response = await self._ok("UID SEARCH", self._client.uid_search(f'HEADER Message-ID "{fragment}"',
                                                                          charset=None))
        return sorted({int(n) for line in response.lines[:-1] for n in bytes(line).split() if n.isdigit()})

    async def delete(self, uids: Sequence[int]) -> None:
        """Flag messages deleted and expunge them (with UIDPLUS: never expunging what others flagged)."""
        await self._ok("UID STORE", self._client.uid("store", uid_set(uids), "+FLAGS.SILENT", "(\\Deleted)"))
        if self._client.has_capability("UIDPLUS"):
            await self._ok("UID EXPUNGE", self._client.uid("expunge", uid_set(uids)))

    async def describe(self, uids: Sequence[int]) -> dict[int, Fetched]:
        """Size and arrival time of each message still there."""
        response = await self._ok("UID FETCH sizes", self._client.uid(
            "fetch", uid_set(uids), "(UID RFC822.SIZE INTERNALDATE)"))
        return {f.uid: f for f in _parse_fetch(response.lines)}

    async def bodies(self, uids: Sequence[int], expected_bytes: int,
                     first_bytes: int | None = None) -> dict[int, bytes]:
        """Whole messages, or their first bytes, without setting the Seen flag."""
        part = "BODY.PEEK[]" if first_bytes is None else f"BODY.PEEK[]<0.{first_bytes}>"
        # the library times out a stalled read; the whole fetch gets time for its size too
        seconds = self.account.timeout + expected_bytes / _SLOWEST_BYTES_PER_SECOND
        response = await self._ok("UID FETCH bodies", self._client.uid(
            "fetch", uid_set(uids), f"(UID {part})"), seconds)
        return {f.uid: f.body for f in _parse_fetch(response.lines) if f.body is not None}

    async def mark_seen(self, uids: Sequence[int]) -> None:
        """Set the Seen flag on messages."""
        await self._ok("UID STORE", self._client.uid("store", uid_set(uids), "+FLAGS.SILENT", "(\\Seen)"))

    async def move(self, uids: Sequence[int], mailbox: str) -> None:
        """Move messages to another mailbox (COPY, delete, expunge without MOVE)."""
        target = aioimaplib.quoted(mailbox)
        if self._client.has_capability("MOVE"):
            await self._ok("UID MOVE", self._client.uid("move", uid_set(uids), target))
            return
        await self._ok("UID COPY", self._client.uid("copy", uid_set(uids), target))
        await self.delete(uids)

    async def wait_for_mail(self, seconds: float) -> None:
        """IDLE until the server announces new mail, `wake()` is called or `seconds` pass."""
        client = self._client
        queue: asyncio.Queue[list[bytes]] = client.protocol.idle_queue
        while not queue.empty():  # leftovers of the previous IDLE; the sync since covered them
            queue.get_nowait()
        # the library's own stop timer must never beat ours: DONE cancels it
        idle = await self._guard("IDLE", client.idle_start(timeout=seconds + 60))
        self._idling = True
        try:
            await self._until_news(queue, seconds)
        finally:
            # DONE exactly once (close() may have said it): a second one is a bad command
            # whose untagged BAD derails the library
            if self._idling and client.has_pending_idle() and not client.protocol.lost:
                client.idle_done()
            self._idling = False
        await self._guard("IDLE DONE", idle)
        if client.protocol.lost:
            raise ImapError(f"{self._where()}: connection lost while idling")

    async def _until_news(self, queue: asyncio.Queue[list[bytes]], seconds: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0:
            try:
                async with asyncio.timeout(left):
                    lines = await queue.get()
            except TimeoutError:
                return
            if lines is aioimaplib.STOP_WAIT_SERVER_PUSH:
                return
            texts = [bytes(line) for line in lines]
            # Dovecot says `* NO` when the mailbox was deleted under us, and stays connected
            if any(t.startswith((b"NO", b"BAD", b"BYE")) for t in texts):
                said = b"; ".join(texts).decode(errors="replace")[:200]
                raise ImapError(f"{self._where()}: server said {said!r} while idling")
            # flag changes and expunges by other clients are no reason to look for mail
            if any(t.endswith(b"EXISTS") for t in texts):
                return

    def wake(self) -> None:
        """End a running IDLE early (e.g. to apply post-commit actions)."""
        if self._idling and self._client is not None:
            self._client.protocol.idle_queue.put_nowait(aioimaplib.STOP_WAIT_SERVER_PUSH)

    async def close(self) -> None:
        """Log out politely if the line is up, then drop it; safe to call twice."""
        client, self._client = self._client, None
        if client is None:
            return
        client._client_task.cancel()  # still connecting when open() timed out
        protocol = client.protocol
        with contextlib.suppress(*_NETWORK):
            if not protocol.lost and protocol.transport is not None:
                if self._idling:  # closed while idling: wait_for_mail has not said DONE
                    self._idling = False
                    client.idle_done()
                async with asyncio.timeout(min(self.account.timeout, 2.0)):
                    await client.logout()
        if protocol.transport is not None:
            protocol.transport.close()


def _keep_alive(transport: Any) -> None:
    """TCP keepalive: a peer gone silently (NAT, power) ends an IDLE within ~2 minutes."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 15), ("TCP_KEEPCNT", 4)):
        if hasattr(socket, option):  # Linux names; other systems keep their defaults
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def uid_set(uids: Sequence[int]) -> str:
    """A compact IMAP UID set: `1:3,7,9:10`."""
    ordered = sorted(set(uids))
    spans: list[str] = []
    start = prev = ordered[0]
    for uid in [*ordered[1:], -1]:
        if uid != prev + 1:
            spans.append(str(start) if start == prev else f"{start}:{prev}")
            start = uid
        prev = uid
    return ",".join(spans)


def _parse_fetch(lines: Sequence[bytes | bytearray]) -> list[Fetched]:
    """Read `n FETCH (...)` responses: text lines are bytes, literals bytearray."""
    records: list[tuple[list[bytes], list[bytes]]] = []
    for line in lines:
        if isinstance(line, bytearray):
            if records:
                records[-1][1].append(bytes(line))
        elif _FETCH_START.match(line):
            records.append(([line], []))
        elif records:
            records[-1][0].append(line)
    found = []
    for texts, literals in records:
        text = b" ".join(texts)
        uid = _UID.search(text)
        if uid is None:
            continue  # an unsolicited FETCH (flags) that rode along
        size = _SIZE.search(text)
        found.append(Fetched(uid=int(uid.group(1)), size=int(size.group(1)) if size else None,
                              arrived=_internaldate(text), body=literals[0] if literals else None))
    return found


def _internaldate(text: bytes) -> datetime | None:
    match = _DATE.search(text)
    if match is None:
        return None
    day, month, year, hh, mm, ss, zone = (g.decode() for g in match.groups())
    month_number = _MONTHS.get(month.lower())
    if month_number is None:
        return None
    stamp = f"{year}-{month_number:02d}-{int(day):02d}T{hh}:{mm}:{ss}{zone[:3]}:{zone[3:]}"
    return datetime.fromisoformat(stamp).astimezone(UTC)


async def open_session(account: ImapAccount) -> ImapSession:
    """A logged-in session; nothing is left open when that fails."""
    session = ImapSession(account)
    try:
        await session.open()
    except BaseException:
        await session.close()
        raise
    return session


async def open_checked_session(account: ImapAccount) -> ImapSession:
    """A logged-in session whose mailbox (and move target) exist, else ConfigError."""
    session = await open_session(account)
    try:
        for box in (account.mailbox, account.move_to):
            if box is not None and not await session.exists(box):
                raise ConfigError(f"IMAP account {account.name!r}: mailbox {box!r} does not exist",
                                  where=f"email.accounts[{account.name}]")
    except BaseException:
        await session.close()
        raise
    return session
