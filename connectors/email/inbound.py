"""IMAP in: every account's new mail as deliveries, pushed by IDLE or polled, resumable by UID.

One task per account follows its mailbox and feeds a bounded queue (backpressure: a slow
consumer stops the fetching). The cursor is (UIDVALIDITY, UID) of the last mail handed
out; the runner commits it once Kafka has the event, so a restart resumes right after it.
A mail that cannot be parsed becomes a DeadLetter with the same cursor, so it never
blocks the line. Every mail is parsed in the connector's `ParserPool` (worker processes
made at start(), a CPU-time limit per mail), never on the event loop: a mail that takes
too long is a dead letter "parsing took longer than N s" and the next one flows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
from prometheus_client import Counter, Histogram

from connectors.base import Arrival, CursorStore, Inbound, cancel_tasks
from connectors.email.errors import ImapError
from connectors.email.imap import (
    DEADLETTER_BYTES,
    FETCH_BYTES,
    Fetched,
    ImapSession,
    backoff_delay,
    imap_url,
    open_checked_session,
    open_session,
)
from connectors.email.parser_pool import ParserPool
from connectors.email.settings import EmailSettings, ImapAccount
from schemas.deadletter import DeadLetter
from schemas.errors import AuthError, ParseError, TransientError

__all__ = ["EmailCursor", "EmailInbound"]

log = logging.getLogger(__name__)
T = TypeVar("T")

FETCHED = Counter("sb_email_fetched_total", "Mails fetched over IMAP", ["account"])
DEADLETTERED = Counter("sb_email_deadlettered_total", "Mails set aside unparsed", ["account"])
RECONNECTS = Counter("sb_email_reconnects_total", "IMAP reconnects after an error", ["account"])
FETCH_BATCH = Histogram(
    "sb_email_fetch_batch", "Mails per IMAP body fetch", ["account"],
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 10_000),
)

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
    queue: asyncio.Queue[Arrival | _Stopped]
    parser: ParserPool
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
                    self.session = await open_session(self.account)
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
        except TransientError:
            raise
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

    async def _hand_out(self, validity: int, info: Fetched, raw: bytes, whole: bool) -> None:
        FETCHED.labels(self.account.name).inc()
        cursor = EmailCursor(self.account.name, cursor_key(self.account), validity, info.uid)
        item: Any
        if not whole:
            item = self._dead_letter(raw, f"message is {info.size} bytes, limit is "
                                     f"{self.account.max_message_bytes}", info.size)
        else:
            item = await self.parser.parse(raw, account=self.account.username,
                                           max_bytes=self.account.max_message_bytes,
                                           received_at=info.arrived)
            if isinstance(item, ParseError):
                item = self._dead_letter(raw, item.reason, len(raw))
            else:
                item = msgspec.structs.replace(item, raw_ref=imap_url(self.account, validity, info.uid))
        await self.queue.put(Arrival(item, cursor))

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


def _groups(infos: Sequence[Fetched], limit: int) -> list[tuple[list[Fetched], bool]]:
    """Split into body fetches of at most FETCH_BYTES; oversized mails go alone, cut short."""
    groups: list[tuple[list[Fetched], bool]] = []
    current: list[Fetched] = []
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


# ---- the source -------------------------------------------------------------------------


class EmailInbound(Inbound[EmailSettings]):
    """Mail from every configured IMAP account, merged into one stream of deliveries."""

    def __init__(self, settings: EmailSettings, cursors: CursorStore) -> None:
        super().__init__(settings, cursors)
        size = max((a.fetch_batch for a in settings.accounts), default=1)
        self._queue: asyncio.Queue[Arrival | _Stopped] = asyncio.Queue(maxsize=size)
        self._parser = ParserPool(workers=settings.parse_workers,
                                  cpu_seconds=settings.parse_cpu_seconds)
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
        readers = [_Reader(a, self.cursors, self._queue, self._parser) for a in self.settings.accounts]
        opened = await asyncio.gather(*(open_checked_session(r.account) for r in readers),
                                      return_exceptions=True)
        for reader, result in zip(readers, opened, strict=True):
            if isinstance(result, ImapSession):
                reader.session = result
        failure = next((r for r in opened if isinstance(r, BaseException)), None)
        if failure is not None:
            await asyncio.gather(*(r.session.close() for r in readers if r.session))
            raise failure
        self._parser.start()
        self._readers = {r.account.name: r for r in readers}

    async def stop(self) -> None:
        """Stop every reader and close its connection; safe to call twice."""
        self._stopped = True
        await cancel_tasks(list(self._tasks.values()))
        self._tasks.clear()
        for reader in self._readers.values():
            await reader.drop_session()
            reader.state = "stopped"
        await self._parser.stop()
        # uncommitted deliveries are read again after a restart; make room for the end mark
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(_Stopped("", None))

    async def messages(self) -> AsyncIterator[Arrival]:
        """Deliveries from all accounts; ends after stop(), raises when every account failed."""
        if not self._tasks and not self._stopped:
            for name, reader in self._readers.items():
                self._tasks[name] = asyncio.create_task(self._run(reader), name=f"email:{name}")
        failed: dict[str, BaseException] = {}
        while True:
            got = await self._queue.get()
            if isinstance(got, Arrival):
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
        try:
            async with asyncio.timeout(timeout):
                await self.cursors.save(cursor.key, cursor.value)
        except TimeoutError as e:
            raise TransientError(f"cursor store: saving {cursor.key} timed out") from e
        if reader is not None:
            reader.committed_to(cursor)
