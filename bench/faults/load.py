"""A steady mixed load: API messages, mails filed into the mailbox, agents' replies.

Every item has a unique id that names the run and the scenario it was made in: an API
message's `message_id`, a mail's Message-ID, a reply's `reply_id`. Each is retried with
the same id until it is accepted — a 202 from the edge, an OK to the IMAP APPEND, Kafka's
acknowledgement of the reply — or its give-up time passes; a retry of an item that was
in fact taken is harmless by design (the same id is the same message). The ledger keeps
when each was accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import itertools
import json
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Literal

import aiohttp
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from bench.faults.journal import Journal
from router.settings import Settings
from schemas.codec import encode
from schemas.identity import Identity
from schemas.outbound import OutboundMessage
from schemas.topics import OUTBOUND

__all__ = ["USER", "Item", "Ledger", "Load", "Rates"]

USER, PASSWORD = "support@example.com", "support-secret"
Kind = Literal["api", "mail", "reply"]
CUSTOMERS = 400
IN_FLIGHT = 64
RETRY_FIRST, RETRY_CAP = 0.25, 4.0
GIVE_UP_SECONDS = 120.0  # after the load stops, how long an item not yet taken is retried
# plain questions; no billing words (they move a message to another queue) and no guard phrases
PHRASES = (
    "my parcel has not arrived yet, can you check where it is",
    "the tracking page shows no update since Monday",
    "how do I change the delivery address for my order",
    "the app shows an error when I open my orders",
    "can I return one item of the order and keep the rest",
    "the parcel arrived damaged, the box was crushed",
)


@dataclass
class Item:
    """One thing the load sent, and when it was taken."""

    key: str  # the native id (api, mail) or reply id the event log will show
    kind: Kind
    scenario: str
    created: float
    accepted_at: float | None = None
    attempts: int = 0


@dataclass(frozen=True)
class Rates:
    """Items per second of each kind."""

    api: float = 15.0
    mail: float = 5.0
    reply: float = 4.0


@dataclass
class Ledger:
    """Every item, in the order made."""

    items: list[Item] = field(default_factory=list)

    def of(self, scenario: str, kind: Kind | None = None) -> list[Item]:
        """The items made in one scenario, of one kind or all."""
        return [i for i in self.items if i.scenario == scenario and kind in (None, i.kind)]


class Load:
    """Sends the three kinds at their rates while running; `stop()` waits for the stragglers."""

    def __init__(self, settings: Settings, journal: Journal, *, run: str, edge_url: str, token: str,
                 folder: str, rates: Rates, give_up: float = GIVE_UP_SECONDS) -> None:
        self.settings = settings
        self.run = run
        self.edge_url = edge_url
        self.token = token
        self.folder = folder
        self.journal = journal
        self.rates = rates
        self.give_up = give_up
        self.ledger = Ledger()
        self.scenario = ""
        self._rng = random.Random(run)
        self._mail_rng = random.Random(run + "mail")
        self._serial = itertools.count(1)  # shared with the mail thread: next() is atomic
        self._give_up = float("inf")
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(IN_FLIGHT)
        self._mail_stop = threading.Event()
        self._mail_thread: threading.Thread | None = None

    async def start(self, scenario: str) -> None:
        """Begin sending, every item tagged with `scenario`."""
        self.scenario = scenario
        self._give_up = float("inf")
        self._session = aiohttp.ClientSession()
        self._producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap, acks="all",
                                          request_timeout_ms=10_000)
        await self._producer.start()
        self._tasks = [asyncio.create_task(self._pace(self.rates.api, self._post)),
                       asyncio.create_task(self._pace(self.rates.reply, self._reply))]
        self._mail_stop.clear()
        self._mail_thread = threading.Thread(target=self._mails, name="faults-mail", daemon=True)
        self._mail_thread.start()

    async def stop(self) -> None:
        """Stop making items; wait until each made one is taken or given up."""
        self._give_up = time.time() + self.give_up
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._mail_stop.set()
        if self._pending:
            await asyncio.wait(self._pending, timeout=self.give_up + 30)
        if self._mail_thread is not None:
            await asyncio.to_thread(self._mail_thread.join, self.give_up + 90)
        await self._producer.stop()
        await self._session.close()

    def _new(self, kind: Kind, key: str) -> Item:
        item = Item(key, kind, self.scenario, time.time())
        self.ledger.items.append(item)
        return item

    def _next(self, kind: str) -> str:
        return f"fx{self.run}-{self.scenario}-{kind}{next(self._serial)}"

    async def _pace(self, rate: float, send: Callable[[], asyncio.Task[None] | None]) -> None:
        """Call `send` `rate` times a second, on a fixed schedule that does not drift."""
        interval = 1 / rate
        due = time.monotonic()
        while True:
            due += interval
            await self._slots.acquire()
            task = send()
            if task is None:
                self._slots.release()
            else:
                self._pending.add(task)
                task.add_done_callback(self._done)
            await asyncio.sleep(max(0.0, due - time.monotonic()))

    def _done(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        self._slots.release()

    async def _retry(self, item: Item, attempt: Callable[[], Awaitable[bool]]) -> None:
        """Try `attempt()` (True when the item was taken) until taken or given up."""
        delay = RETRY_FIRST
        while time.time() < self._give_up:
            item.attempts += 1
            if await attempt():
                item.accepted_at = time.time()
                return
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(RETRY_CAP, delay * 2)

    # --- API messages ------------------------------------------------------------------------

    def _post(self) -> asyncio.Task[None]:
        key = self._next("a")
        customer = self._rng.randrange(CUSTOMERS)
        body = json.dumps({"sender": f"c{customer}@example.org", "message_id": key,
                           "subject": f"Order {customer}", "text": self._rng.choice(PHRASES)}).encode()
        item = self._new("api", key)
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}

        async def attempt() -> bool:
            try:
                async with self._session.post(self.edge_url + "/v1/messages", data=body, headers=headers,
                                              timeout=aiohttp.ClientTimeout(total=15)) as r:
                    return r.status == 202
            except (aiohttp.ClientError, TimeoutError):
                return False

        return asyncio.create_task(self._retry(item, attempt))

    # --- agents' replies ---------------------------------------------------------------------

    def _reply(self) -> asyncio.Task[None] | None:
        conversation = self.journal.answerable(self._rng)
        if conversation is None:
            return None  # nothing routed to answer yet
        key = self._next("r").replace("-", "_")
        reply = OutboundMessage(
            reply_id=f"rep_{key}", conversation_id=conversation.conversation_id, channel="email",
            recipient=Identity(kind="email", value=conversation.address), kind="agent_reply",
            text="Thank you for your patience: a new parcel left our warehouse today.",
            created_at=datetime.now(UTC), subject=conversation.subject,
            in_reply_to=conversation.native_id, references=(conversation.native_id,),
            author="agent-fx", customer_id=conversation.customer_id, queue="general")
        item = self._new("reply", reply.reply_id)
        topic, value = self.settings.topic(OUTBOUND), encode(reply)

        async def attempt() -> bool:
            try:
                await asyncio.wait_for(self._producer.send_and_wait(
                    topic, value, key=reply.conversation_id.encode()), 15)
                return True
            except (KafkaError, TimeoutError):
                return False

        return asyncio.create_task(self._retry(item, attempt))

    # --- mail ----------------------------------------------------------------------------------

    def _mails(self) -> None:
        """File mails at their rate over one IMAP connection, reconnecting when it breaks."""
        interval = 1 / self.rates.mail
        due = time.monotonic()
        conn: imaplib.IMAP4 | None = None
        while not self._mail_stop.wait(max(0.0, due - time.monotonic())):
            due += interval
            customer = self._mail_rng.randrange(CUSTOMERS)
            item = self._new("mail", f"{self._next('m')}@customers.example.org")
            raw = _mail(item.key, f"c{customer}@example.org", self._mail_rng.choice(PHRASES))
            delay = RETRY_FIRST
            while time.time() < self._give_up:
                item.attempts += 1
                try:
                    conn = conn or self._connect()
                    typ, _ = conn.append(f'"{self.folder}"', "", None, raw)
                    if typ == "OK":
                        item.accepted_at = time.time()
                        break
                except (OSError, imaplib.IMAP4.error):
                    conn = None
                time.sleep(delay * random.uniform(0.5, 1.0))  # a retry's backoff, in this thread
                delay = min(RETRY_CAP, delay * 2)
            due = max(due, time.monotonic())
        if conn is not None:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                conn.logout()

    def _connect(self) -> imaplib.IMAP4:
        conn = imaplib.IMAP4("127.0.0.1", self.settings.imap_port, timeout=60)
        conn.login(USER, PASSWORD)
        return conn


def _mail(message_id: str, sender: str, text: str) -> bytes:
    mail = EmailMessage()
    mail["From"] = f"Customer <{sender}>"
    mail["To"] = USER
    mail["Subject"] = f"Question {message_id.partition('@')[0][-6:]}"
    mail["Message-ID"] = f"<{message_id}>"
    mail.set_content(f"Hello,\n\n{text}.\n\nThanks\n")
    return mail.as_bytes().replace(b"\n", b"\r\n")
