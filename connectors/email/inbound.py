"""IMAP in: every account's new mail as deliveries, pushed by IDLE or polled, resumable by UID.

One task per account follows its mailbox and feeds a bounded queue (backpressure: a slow
consumer stops the fetching). The cursor is (UIDVALIDITY, UID) of the last mail handed
out; the runner commits it once Kafka has the event, so a restart resumes right after it.
A mail that cannot be parsed becomes a DeadLetter with the same cursor, so it never
blocks the line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import aioimaplib
import msgspec
from prometheus_client import Counter, Histogram

from connectors.base import CursorStore, Delivery, Inbound
from connectors.email.errors import ImapError
from connectors.email.parse import parse_email
from connectors.email.settings import EmailSettings, ImapAccount, tls_context
from schemas.deadletter import DeadLetter
from schemas.errors import AuthError, ConfigError, ParseError, TransientError

__all__ = ["EmailCursor", "EmailInbound", "ImapSession", "backoff_delay"]

log = logging.getLogger(__name__)
T = TypeVar("T")

FETCHED = Counter("sb_email_fetched_total", "Mails fetched over IMAP", ["account"])
DEADLETTERED = Counter("sb_email_deadlettered_total", "Mails set aside unparsed", ["account"])
RECONNECTS = Counter("sb_email_reconnects_total", "IMAP reconnects after an error", ["account"])
FETCH_BATCH = Histogram(
    "sb_email_fetch_batch", "Mails per IMAP body fetch", ["account"],
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 10_000),
)

# a dead letter keeps at most this much of the original
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
class _Fetched:
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

    async def describe(self, uids: Sequence[int]) -> dict[int, _Fetched]:
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
        await self._ok("UID STORE", self._client.uid("store", uid_set(uids), "+FLAGS.SILENT", "(\\Deleted)"))
        if self._client.has_capability("UIDPLUS"):
            await self._ok("UID EXPUNGE", self._client.uid("expunge", uid_set(uids)))

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


def _parse_fetch(lines: Sequence[bytes | bytearray]) -> list[_Fetched]:
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
        found.append(_Fetched(uid=int(uid.group(1)), size=int(size.group(1)) if size else None,
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


# ---- one account ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EmailCursor:
    """Where an account's mailbox has been read up to: the value saved is `UIDVALIDITY:UID`."""

    account: str
    key: str
    uidvalidity: int
    uid: int

    @property
    def value(self) -> str:
        """The string kept in the cursor store."""
        return f"{self.uidvalidity}:{self.uid}"


def cursor_key(account: ImapAccount) -> str:
    """The cursor store key of an account's mailbox."""
    return f"email:{account.name}:{account.mailbox}"


@dataclass
class _Stopped:
    """What a reader task leaves in the queue when it ends."""

    account: str
    error: BaseException | None


@dataclass
class _Reader:
    """Follows one account's mailbox and puts its mail, in UID order, on the queue."""

    account: ImapAccount
    cursors: CursorStore
    queue: asyncio.Queue[Delivery | _Stopped]
    session: ImapSession | None = None
    state: str = "starting"
    # (UIDVALIDITY, UID) handed out so far in this process; None until the cursor is read
    position: tuple[int, int] | None = None
    committed: tuple[int, int] | None = None
    healthy: bool = False
    # committed UIDs waiting for \Seen / MOVE, with the UIDVALIDITY they belong to
    actions: list[tuple[int, int]] = field(default_factory=list)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def log_extra(self) -> dict[str, str]:
        """Context for every log line about this account."""
        return {"account": self.account.name, "mailbox": self.account.mailbox}

    async def run(self) -> None:
        """Read forever, reconnecting with backoff and jitter; an AuthError ends it."""
        attempt = 0
        while True:
            try:
                if self.session is None:
                    self.session = await _open(self.account)
                await self._follow(self.session)
            except TransientError as e:
                # a session that got as far as a full sync starts the backoff over
                attempt = 1 if self.healthy else attempt + 1
                self.healthy = False
                delay = e.retry_after or backoff_delay(attempt)
                self.state = "backoff"
                RECONNECTS.labels(self.account.name).inc()
                log.warning("email: %s; reconnecting in %.1fs", e.reason, delay, extra=self.log_extra)
                await self.drop_session()
                await asyncio.sleep(delay)

    async def drop_session(self) -> None:
        """Close the connection, if any."""
        session, self.session = self.session, None
        if session is not None:
            await session.close()

    async def _follow(self, session: ImapSession) -> None:
        validity = await session.select(self.account.mailbox)
        await self._resume(validity)
        push = session.has_idle and self.account.idle is not False
        while True:
            self.state = "fetching"
            await self._apply_actions(session, validity)
            await self._sync(session, validity)
            self.healthy = True
            if push:
                self.state = "idle"
                await session.wait_for_mail(self.account.idle_renew_seconds)
            else:
                self.state = "polling"
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.account.poll_seconds):
                        await self._wake.wait()
                self._wake.clear()

    async def _resume(self, validity: int) -> None:
        """Pick the UID to read after: this process's position, else the saved cursor."""
        if self.position is None:
            self.position = (validity, await self._load_saved(validity))
        elif self.position[0] != validity:
            log.warning("email: UIDVALIDITY changed from %d to %d; reading the mailbox anew",
                        self.position[0], validity, extra=self.log_extra)
            self.position = (validity, 0)

    async def _load_saved(self, validity: int) -> int:
        key = cursor_key(self.account)
        try:
            async with asyncio.timeout(self.account.timeout):
                saved = await self.cursors.load(key)
        except (TimeoutError, OSError) as e:
            raise TransientError(f"cursor store: loading {key} failed: {e!r}") from e
        if saved is None:
            return 0
        old_validity, _, uid = saved.partition(":")
        if not (old_validity.isdigit() and uid.isdigit()):
            log.error("email: cursor %s=%r is not UIDVALIDITY:UID; reading the mailbox anew",
                      key, saved, extra=self.log_extra)
            return 0
        if int(old_validity) != validity:
            log.warning("email: UIDVALIDITY changed from %s to %d since the last run; "
                        "reading the mailbox anew", old_validity, validity, extra=self.log_extra)
            return 0
        return int(uid)

    async def _sync(self, session: ImapSession, validity: int) -> None:
        """Hand out every message above the position, in bounded batches, until none is new."""
        assert self.position is not None
        while True:
            announced = session.announced
            uids = await session.uids_after(self.position[1])
            if not uids and session.announced == announced:
                return
            for start in range(0, len(uids), self.account.fetch_batch):
                await self._fetch(session, validity, uids[start:start + self.account.fetch_batch])

    async def _fetch(self, session: ImapSession, validity: int, uids: Sequence[int]) -> None:
        described = await session.describe(uids)
        for group, whole in _groups([described[u] for u in uids if u in described],
                                    self.account.max_message_bytes):
            expected = sum(f.size or 0 for f in group) if whole else DEADLETTER_BYTES
            bodies = await session.bodies([f.uid for f in group], expected,
                                          None if whole else DEADLETTER_BYTES)
            FETCH_BATCH.labels(self.account.name).observe(len(group))
            for info in group:
                raw = bodies.get(info.uid)
                if raw is not None:  # None: expunged since the search
                    await self._hand_out(validity, info, raw, whole)
                self.position = (validity, info.uid)

    async def _hand_out(self, validity: int, info: _Fetched, raw: bytes, whole: bool) -> None:
        FETCHED.labels(self.account.name).inc()
        cursor = EmailCursor(self.account.name, cursor_key(self.account), validity, info.uid)
        item: Any
        if not whole:
            item = self._dead_letter(raw, f"message is {info.size} bytes, limit is "
                                     f"{self.account.max_message_bytes}", info.size)
        else:
            item = await _parse(raw, self.account, info.arrived, imap_url(self.account, validity, info.uid))
            if isinstance(item, ParseError):
                item = self._dead_letter(raw, item.reason, len(raw))
        await self.queue.put(Delivery(item, cursor))

    def _dead_letter(self, raw: bytes, reason: str, size: int | None) -> DeadLetter:
        DEADLETTERED.labels(self.account.name).inc()
        log.warning("email: dead-lettering a mail of %s bytes", size, extra=self.log_extra)
        # the reason can quote the sender or headers: customer data stays at debug
        log.debug("email: dead-letter reason: %s", reason, extra=self.log_extra)
        if size is not None and size > DEADLETTER_BYTES:
            reason += f"; original truncated to the first {DEADLETTER_BYTES} of {size} bytes"
        return DeadLetter(stage="email", reason=reason, original=raw[:DEADLETTER_BYTES],
                          at=datetime.now(UTC), channel="email")

    def behind(self, cursor: EmailCursor) -> bool:
        """Whether a commit of `cursor` would not move past the last one."""
        last = self.committed
        return last is not None and last[0] == cursor.uidvalidity and last[1] >= cursor.uid

    def committed_to(self, cursor: EmailCursor) -> None:
        """Note a saved commit and queue its post-commit actions."""
        self.committed = (cursor.uidvalidity, cursor.uid)
        if self.account.mark_seen or self.account.move_to:
            self.actions.append(self.committed)
            self._wake.set()
            if self.session is not None:
                self.session.wake()

    async def _apply_actions(self, session: ImapSession, validity: int) -> None:
        """Seen flag and MOVE for committed mail; a refusal is logged, a network error retried."""
        uids = [uid for v, uid in self.actions if v == validity]
        if not uids:
            self.actions.clear()  # only marks of an older UIDVALIDITY: they name other mail
            return
        try:
            if self.account.mark_seen:
                await session.mark_seen(uids)
            if self.account.move_to:
                await session.move(uids, self.account.move_to)
        except ImapError as e:
            if not e.refused:
                raise
            log.error("email: post-commit action refused: %s", e.reason, extra=self.log_extra)
        # keep what was committed meanwhile; drop what was done and what names older mail
        self.actions = [a for a in self.actions if a[0] == validity and a[1] not in uids]


def _groups(infos: Sequence[_Fetched], limit: int) -> list[tuple[list[_Fetched], bool]]:
    """Split into body fetches of at most FETCH_BYTES; oversized mails go alone, cut short."""
    groups: list[tuple[list[_Fetched], bool]] = []
    current: list[_Fetched] = []
    total = 0
    for info in infos:
        size = info.size or 0
        if size > limit:
            if current:
                groups.append((current, True))
                current, total = [], 0
            groups.append(([info], False))
            continue
        if current and total + size > FETCH_BYTES:
            groups.append((current, True))
            current, total = [], 0
        current.append(info)
        total += size
    if current:
        groups.append((current, True))
    return groups


async def _parse(raw: bytes, account: ImapAccount, arrived: datetime | None,
                 ref: str) -> Any:
    """Parse a mail (big ones off the event loop); a ParseError is returned, not raised."""
    def run() -> Any:
        try:
            message = parse_email(raw, account=account.username,
                                  max_bytes=account.max_message_bytes, received_at=arrived)
        except ParseError as e:
            return e
        return msgspec.structs.replace(message, raw_ref=ref)

    return await asyncio.to_thread(run) if len(raw) > 256 * 1024 else run()


# ---- the source -------------------------------------------------------------------------


class EmailInbound(Inbound[EmailSettings]):
    """Mail from every configured IMAP account, merged into one stream of deliveries."""

    def __init__(self, settings: EmailSettings, cursors: CursorStore) -> None:
        super().__init__(settings, cursors)
        size = max((a.fetch_batch for a in settings.accounts), default=1)
        self._queue: asyncio.Queue[Delivery | _Stopped] = asyncio.Queue(maxsize=size)
        self._readers: dict[str, _Reader] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopped = False

    def states(self) -> dict[str, str]:
        """Each account's state: starting, fetching, idle, polling, backoff or stopped."""
        return {name: reader.state for name, reader in self._readers.items()}

    async def start(self) -> None:
        """Connect and log in to every account, check its mailboxes; fail on the first refusal."""
        self._stopped = False
        self._queue = asyncio.Queue(maxsize=self._queue.maxsize)  # nothing from a previous run
        readers = [_Reader(a, self.cursors, self._queue) for a in self.settings.accounts]
        opened = await asyncio.gather(*(_open_checked(r.account) for r in readers),
                                      return_exceptions=True)
        for reader, result in zip(readers, opened, strict=True):
            if isinstance(result, ImapSession):
                reader.session = result
        failure = next((r for r in opened if isinstance(r, BaseException)), None)
        if failure is not None:
            await asyncio.gather(*(r.session.close() for r in readers if r.session))
            raise failure
        self._readers = {r.account.name: r for r in readers}

    async def stop(self) -> None:
        """Stop every reader and close its connection; safe to call twice."""
        self._stopped = True
        await _cancel(list(self._tasks.values()))
        self._tasks.clear()
        for reader in self._readers.values():
            await reader.drop_session()
            reader.state = "stopped"
        # uncommitted deliveries are read again after a restart; make room for the end mark
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(_Stopped("", None))

    async def messages(self) -> AsyncIterator[Delivery]:
        """Deliveries from all accounts; ends after stop(), raises when every account failed."""
        if not self._tasks and not self._stopped:
            for name, reader in self._readers.items():
                self._tasks[name] = asyncio.create_task(self._run(reader), name=f"email:{name}")
        failed: dict[str, BaseException] = {}
        while True:
            got = await self._queue.get()
            if isinstance(got, Delivery):
                yield got
                continue
            if got.error is None:
                return
            if not isinstance(got.error, AuthError):
                raise got.error
            failed[got.account] = got.error
            if len(failed) == len(self._readers):
                raise AuthError("every email account was refused: "
                                + "; ".join(e.args[0] for e in failed.values()))

    async def _run(self, reader: _Reader) -> None:
        try:
            await reader.run()
        except AuthError as e:
            await reader.drop_session()
            reader.state = "stopped"
            log.error("ALERT email: account stopped: %s", e.reason, extra={**reader.log_extra, "alert": True})
            await self._queue.put(_Stopped(reader.account.name, e))
        except Exception as e:
            # a bug, not bad mail: surface it through messages() so the runner fails loudly
            await reader.drop_session()
            reader.state = "stopped"
            log.exception("email: reader crashed", extra=reader.log_extra)
            await self._queue.put(_Stopped(reader.account.name, e))

    async def commit(self, cursor: Any) -> None:
        """Save an account's cursor; the Seen flag / MOVE of that mail follow when configured."""
        if not isinstance(cursor, EmailCursor):
            raise TypeError(f"not an email cursor: {cursor!r}")
        reader = self._readers.get(cursor.account)
        if reader is not None and reader.behind(cursor):
            return
        timeout = reader.account.timeout if reader else 30.0
        async with asyncio.timeout(timeout):
            await self.cursors.save(cursor.key, cursor.value)
        if reader is not None:
            reader.committed_to(cursor)


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel tasks and wait for them, cancelling again if one swallowed the first."""
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=1.0)
    await asyncio.gather(*tasks, return_exceptions=True)


async def _open(account: ImapAccount) -> ImapSession:
    """A logged-in session; nothing is left open when that fails."""
    session = ImapSession(account)
    try:
        await session.open()
    except BaseException:
        await session.close()
        raise
    return session


async def _open_checked(account: ImapAccount) -> ImapSession:
    """A logged-in session whose mailbox (and move target) exist, else ConfigError."""
    session = await _open(account)
    try:
        for box in (account.mailbox, account.move_to):
            if box is not None and not await session.exists(box):
                raise ConfigError(f"IMAP account {account.name!r}: mailbox {box!r} does not exist",
                                  where=f"email.accounts[{account.name}]")
    except BaseException:
        await session.close()
        raise
    return session
