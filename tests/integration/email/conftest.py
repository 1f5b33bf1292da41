"""The email channel against the real local Dovecot, and an in-process aiosmtpd.

Each test reads its own freshly created IMAP folder (one Dovecot user is shared), fills
it with IMAP APPEND the way a delivery agent files mail, and drops it afterwards. The
test side speaks stdlib imaplib/smtplib, never our own client, so it checks our code
rather than agreeing with it.
"""

from __future__ import annotations

import asyncio
import imaplib
import re
import smtplib
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiosmtpd.controller import Controller
from pydantic import SecretStr

from connectors.base import Arrival
from connectors.email.inbound import EmailInbound
from connectors.email.settings import EmailSettings, ImapAccount, SmtpSettings
from router.settings import Settings
from tests.waiting import POLL_SECONDS

USER, PASSWORD = "support@example.com", "support-secret"
TOKEN_KEY = "test-token-key"
T = TypeVar("T")


async def eventually(check: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    """Wait until `check()` holds, failing at the deadline."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"still not true after {timeout}s: {what}"
        await asyncio.sleep(POLL_SECONDS)


async def eventually_true(check: Callable[[], Awaitable[bool]], timeout: float = 20.0,
                          what: str = "") -> None:
    """Wait until the coroutine `check()` returns True, failing at the deadline."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"still not true after {timeout}s: {what}"
        await asyncio.sleep(POLL_SECONDS)


def make_mail(subject: str, *, sender: str = "ada@example.org", body: str = "Hello.",
              message_id: str | None = None) -> bytes:
    """A small well-formed customer mail with a unique Message-ID."""
    mail = EmailMessage()
    mail["From"] = f"Ada Lovelace <{sender}>"
    mail["To"] = USER
    mail["Subject"] = subject
    mail["Date"] = "Mon, 23 Nov 2026 09:00:00 +0000"
    mail["Message-ID"] = message_id or f"<{uuid.uuid4().hex}@example.org>"
    mail.set_content(body)
    return mail.as_bytes().replace(b"\n", b"\r\n")


class MemoryCursors:
    """An in-memory CursorStore (the test stand-in for Redis) that records every save."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.saves: list[tuple[str, str]] = []

    async def load(self, key: str) -> str | None:
        return self.values.get(key)

    async def save(self, key: str, value: str) -> None:
        self.values[key] = value
        self.saves.append((key, value))


class Mailbox:
    """One IMAP folder, driven from the test side with stdlib imaplib in a thread."""

    def __init__(self, port: int, name: str) -> None:
        self.port = port
        self.name = name

    def _connect(self) -> imaplib.IMAP4:
        conn = imaplib.IMAP4("127.0.0.1", self.port, timeout=30)
        conn.login(USER, PASSWORD)
        return conn

    def _run(self, work: Callable[[imaplib.IMAP4], T]) -> T:
        conn = self._connect()
        try:
            return work(conn)
        finally:
            conn.logout()

    async def call(self, work: Callable[[imaplib.IMAP4], T]) -> T:
        """Run `work(conn)` on a fresh logged-in connection, off the event loop."""
        return await asyncio.to_thread(self._run, work)

    async def create(self, name: str | None = None) -> None:
        typ, data = await self.call(lambda c: c.create(_q(name or self.name)))
        assert typ == "OK", data

    async def delete(self, name: str | None = None) -> None:
        await self.call(lambda c: c.delete(_q(name or self.name)))

    async def append(self, *raws: bytes, folder: str | None = None) -> None:
        """File mails into the folder, in order, over one connection."""
        def work(conn: imaplib.IMAP4) -> None:
            for raw in raws:
                typ, data = conn.append(_q(folder or self.name), "", None, raw)
                assert typ == "OK", data
        await self.call(work)

    async def exists(self, name: str) -> bool:
        typ, data = await self.call(lambda c: c.list('""', _q(name)))
        return typ == "OK" and any(d for d in data if d)

    async def uidvalidity(self) -> int:
        typ, data = await self.call(lambda c: c.status(_q(self.name), "(UIDVALIDITY)"))
        found = re.search(rb"UIDVALIDITY (\d+)", data[0])
        assert typ == "OK" and found, data
        return int(found.group(1))

    async def flags(self, folder: str | None = None) -> dict[int, set[str]]:
        """UID → flags of every message, read without touching them."""
        def work(conn: imaplib.IMAP4) -> dict[int, set[str]]:
            conn.select(_q(folder or self.name), readonly=True)
            _, data = conn.uid("FETCH", "1:*", "(UID FLAGS)")
            found: dict[int, set[str]] = {}
            for line in data:
                if isinstance(line, bytes) and (m := re.search(rb"UID (\d+) FLAGS \(([^)]*)\)", line)):
                    found[int(m.group(1))] = set(m.group(2).decode().split())
            return found
        return await self.call(work)

    async def messages(self, folder: str | None = None) -> list[bytes]:
        """Every message's bytes, in UID order, fetched with PEEK."""
        def work(conn: imaplib.IMAP4) -> list[bytes]:
            conn.select(_q(folder or self.name), readonly=True)
            _, data = conn.uid("FETCH", "1:*", "(BODY.PEEK[])")
            return [part[1] for part in data if isinstance(part, tuple)]
        return await self.call(work)


def _q(name: str) -> str:
    return f'"{name}"'


class Collector:
    """Pumps `inbound.messages()` into a list in the background; commits like the runner."""

    def __init__(self, inbound: EmailInbound, *, commit: bool = True) -> None:
        self.inbound = inbound
        self.commit = commit
        self.got: list[Arrival] = []
        self.error: BaseException | None = None
        self.task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        try:
            async for delivery in self.inbound.messages():
                self.got.append(delivery)
                if self.commit:
                    await self.inbound.commit(delivery.cursor)
        except Exception as e:  # noqa: BLE001 - kept for the test to assert on
            self.error = e

    async def wait_for(self, count: int, timeout: float = 20.0) -> list[Arrival]:
        """Wait until `count` deliveries arrived; fail at the deadline or on an error."""
        await eventually(lambda: len(self.got) >= count or self.error is not None, timeout,
                         f"{count} deliveries (have {len(self.got)})")
        assert self.error is None, repr(self.error)
        return self.got[:count]

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
def imap_port(stack: Settings) -> int:
    return stack.imap_port


@pytest.fixture
async def folder(imap_port: int) -> AsyncIterator[Mailbox]:
    """A fresh IMAP folder for this test alone, removed afterwards."""
    box = Mailbox(imap_port, f"sb-test-{uuid.uuid4().hex[:12]}")
    await box.create()
    yield box
    await box.delete()


@pytest.fixture
def account(imap_port: int) -> Callable[..., ImapAccount]:
    """Build an ImapAccount on the local Dovecot; keywords override the defaults."""
    def build(mailbox: str, **overrides: Any) -> ImapAccount:
        values: dict[str, Any] = {
            "name": f"t{uuid.uuid4().hex[:8]}", "host": "127.0.0.1", "port": imap_port,
            "username": USER, "password": SecretStr(PASSWORD), "mailbox": mailbox,
            "tls": "none", "poll_seconds": 600.0, "timeout": 10.0,
        }
        values.update(overrides)
        return ImapAccount(**values)
    return build


@pytest.fixture
async def inbounds() -> AsyncIterator[Callable[..., Awaitable[EmailInbound]]]:
    """Start EmailInbound sources that are all stopped at the end of the test."""
    started: list[EmailInbound] = []

    async def start(*accounts: ImapAccount, cursors: MemoryCursors) -> EmailInbound:
        source = EmailInbound(EmailSettings(accounts=accounts, token_key=SecretStr(TOKEN_KEY)),
                              cursors)
        await source.start()
        started.append(source)
        return source

    yield start
    for source in started:
        await source.stop()


@pytest.fixture
async def collectors() -> AsyncIterator[Callable[..., Collector]]:
    made: list[Collector] = []

    def make(inbound: EmailInbound, *, commit: bool = True) -> Collector:
        made.append(Collector(inbound, commit=commit))
        return made[-1]

    yield make
    for collector in made:
        await collector.close()


# ---- SMTP -------------------------------------------------------------------------------


@dataclass
class Recorder:
    """An aiosmtpd handler: answers from scripted replies first, then accepts and records."""

    rcpt_replies: list[str] = field(default_factory=list)
    data_replies: list[str] = field(default_factory=list)
    envelopes: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    rcpt_calls: int = 0
    data_calls: int = 0
    ehlos: int = 0

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        self.ehlos += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        self.rcpt_calls += 1
        if self.rcpt_replies:
            return self.rcpt_replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_calls += 1
        if self.data_replies:
            return self.data_replies.pop(0)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SmtpServer:
    """An aiosmtpd server on a loopback port that can be stopped and started again."""

    def __init__(self, handler: Recorder, **smtp_options: Any) -> None:
        self.handler = handler
        self.port = free_port()
        self.options = smtp_options
        self.controller: Controller | None = None

    async def start(self) -> None:
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                     **self.options)
        await asyncio.to_thread(self.controller.start)

    async def stop(self) -> None:
        if self.controller is not None:
            await asyncio.to_thread(self.controller.stop)
            self.controller = None


@pytest.fixture
async def smtp_servers() -> AsyncIterator[Callable[..., Awaitable[SmtpServer]]]:
    """Start aiosmtpd servers, all stopped at the end of the test."""
    made: list[SmtpServer] = []

    async def start(handler: Recorder, **options: Any) -> SmtpServer:
        server = SmtpServer(handler, **options)
        await server.start()
        made.append(server)
        return server

    yield start
    for server in made:
        await server.stop()


def smtp_settings(port: int, **overrides: Any) -> SmtpSettings:
    """SmtpSettings for a local plain-text server, with fast retries."""
    values: dict[str, Any] = {
        "host": "127.0.0.1", "port": port, "tls": "none", "from_address": "support@example.com",
        "from_name": "Example Support", "message_id_domain": "mail.example.com", "timeout": 10.0,
        "max_attempts": 4, "backoff_base_seconds": 0.01, "backoff_max_seconds": 0.05,
    }
    values.update(overrides)
    return SmtpSettings(**values)


def deliver_lmtp(port: int, raw: bytes, recipient: str = USER) -> None:
    """Hand a mail to Dovecot over LMTP, as a mail server would."""
    with smtplib.LMTP("127.0.0.1", port, timeout=30) as lmtp:
        refused = lmtp.sendmail("sender@example.org", [recipient], raw)
        assert not refused, refused


# ---- TLS --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate for 127.0.0.1: its PEM (also the CA to trust) and key."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    where = tmp_path_factory.mktemp("tls")
    made = Certificate(where / "cert.pem", where / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(made.key), "-out", str(made.cert)],
        check=True, capture_output=True, timeout=60)
    return made


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


@pytest.fixture
async def tls_front(certificate: Certificate, imap_port: int) -> AsyncIterator[int]:
    """A TLS-terminating front for Dovecot (it serves plain text here): IMAPS on a free port."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", imap_port)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer),
                             return_exceptions=True)

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=certificate.server_context())
    yield server.sockets[0].getsockname()[1]
    server.close()


@pytest.fixture
async def starttls_front(certificate: Certificate, imap_port: int) -> AsyncIterator[int]:
    """A front for Dovecot that offers STARTTLS: it adds the capability, answers the command,
    upgrades its client side, then pipes; everything else is Dovecot's own answer."""
    async def relay(line: bytes, tag: bytes, writer: asyncio.StreamWriter,
                    up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> None:
        up_writer.write(line)
        await up_writer.drain()
        while answer := await up_reader.readline():
            if answer.startswith(b"* CAPABILITY "):
                answer = answer.rstrip(b"\r\n") + b" STARTTLS\r\n"
            writer.write(answer)
            if answer.startswith(tag + b" "):
                break
        await writer.drain()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", imap_port)
        writer.write(await up_reader.readline())  # the greeting
        while line := await reader.readline():
            tag, _, command = line.strip().partition(b" ")
            if command.upper() != b"STARTTLS":
                await relay(line, tag, writer, up_reader, up_writer)
                continue
            writer.write(tag + b" OK Begin TLS negotiation now\r\n")
            await writer.drain()
            await writer.start_tls(certificate.server_context())
            break
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer),
                             return_exceptions=True)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
