"""Mail in and out of the simulated day: customers' mail filed into Dovecot, our mail caught by a sink.

Inbound mail is filed into a folder of its own of the shared Dovecot's support user with
IMAP APPEND (as a delivery agent files it; the shared INBOX belongs to `make run`), and
the email channel reads that folder. Everything Switchboard sends — to customers and to
the teams' mailboxes — goes to an aiosmtpd server of the simulator, which hands each mail
to the customer or team it is for.
"""

from __future__ import annotations

import asyncio
import imaplib
import threading
import uuid
from collections.abc import Callable
from datetime import datetime
from email import message_from_bytes
from email.message import EmailMessage, Message
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import default
from email.utils import format_datetime
from typing import Any

from aiosmtpd.controller import Controller

__all__ = ["SUPPORT", "TEAM_DOMAIN", "Folder", "Sink", "bounce", "customer_mail"]

SUPPORT, SUPPORT_PASSWORD = "support@example.com", "support-secret"
TEAM_DOMAIN = "support.example.com"


def customer_mail(
    sender: str,
    name: str,
    subject: str,
    text: str,
    at: datetime,
    *,
    reply_to: EmailMessage | None = None,
    auto: bool = False,
) -> tuple[bytes, str]:
    """A customer's mail (or an answer in the thread of one of ours) and its Message-ID."""
    mail = EmailMessage()
    own = f"<{uuid.uuid4().hex}@customers.example.org>"
    mail["From"] = f"{name} <{sender}>"
    mail["To"] = SUPPORT
    mail["Date"] = format_datetime(at)
    mail["Message-ID"] = own
    if reply_to is not None:
        theirs = str(reply_to.get("Message-ID", ""))
        del mail["To"]
        mail["To"] = str(reply_to.get("Reply-To") or SUPPORT)
        mail["Subject"] = "Re: " + str(reply_to.get("Subject", "")).removeprefix("Re: ")
        mail["In-Reply-To"] = theirs
        mail["References"] = (str(reply_to.get("References", "")) + " " + theirs).strip()
    else:
        mail["Subject"] = subject
    if auto:
        mail["Auto-Submitted"] = "auto-replied"
    mail.set_content(text)
    return mail.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"), own


def bounce(original: Message, recipient: str, at: datetime) -> bytes:
    """A mailer daemon's delivery status notification (RFC 3464) for `original`."""
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = "Mail Delivery System <MAILER-DAEMON@customers.example.org>"
    report["To"] = SUPPORT
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Date"] = format_datetime(at)
    report["Message-ID"] = f"<{uuid.uuid4().hex}@customers.example.org>"
    report["Auto-Submitted"] = "auto-replied"
    report.attach(MIMEText(f"Your message to {recipient} could not be delivered: mailbox unavailable.\n"))
    status = Message()
    status.set_payload(
        f"Reporting-MTA: dns; mx.customers.example.org\n\nFinal-Recipient: rfc822; {recipient}\n"
        "Action: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 mailbox unavailable\n"
    )
    part = MIMEMessage(status, "delivery-status")
    report.attach(part)
    headers = MIMEText("".join(f"{k}: {v}\n" for k, v in original.items()), "rfc822-headers")
    report.attach(headers)
    return report.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class Folder:
    """An IMAP folder of the support user that customers' mail is filed into."""

    def __init__(self, port: int, name: str) -> None:
        self.port, self.name = port, name
        self._imap: imaplib.IMAP4 | None = None
        self._lock = threading.Lock()
        self.filed = 0

    def _connect(self) -> imaplib.IMAP4:
        imap = imaplib.IMAP4("127.0.0.1", self.port, timeout=30)
        imap.login(SUPPORT, SUPPORT_PASSWORD)
        return imap

    def create(self) -> None:
        """Create the folder."""
        with self._lock:
            self._imap = self._connect()
            self._imap.create(self.name)

    def drop(self) -> None:
        """Delete the folder and log out."""
        with self._lock:
            if self._imap is not None:
                self._imap.delete(self.name)
                self._imap.logout()
                self._imap = None

    def _file(self, raw: bytes, at: datetime) -> None:
        with self._lock:
            for attempt in range(3):
                try:
                    if self._imap is None:
                        self._imap = self._connect()
                    # the arrival time is the simulated one: the channel dates mail by INTERNALDATE
                    status, _ = self._imap.append(self.name, None, imaplib.Time2Internaldate(at), raw)
                    if status == "OK":
                        self.filed += 1
                        return
                except (imaplib.IMAP4.error, OSError):
                    self._imap = None
                if attempt == 2:
                    raise RuntimeError(f"cannot file mail into {self.name}")

    async def file(self, raw: bytes, at: datetime) -> None:
        """APPEND one mail arriving at `at` (the blocking client in a thread)."""
        await asyncio.to_thread(self._file, raw, at)


class Sink:
    """The SMTP server Switchboard sends to; each mail goes to `on_mail(recipient, message)`."""

    def __init__(
        self, port: int, on_mail: Callable[[str, EmailMessage], None], loop: asyncio.AbstractEventLoop
    ) -> None:
        self.port = port
        self._on_mail, self._loop = on_mail, loop
        self.accepted = 0
        self._controller = Controller(self, hostname="127.0.0.1", port=port)

    def start(self) -> Sink:
        """Listen (in the controller's thread)."""
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        self._controller.stop()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Aiosmtpd's hook: hand the mail to the simulator's loop, once per recipient."""
        message = message_from_bytes(envelope.content, policy=default)
        for recipient in envelope.rcpt_tos:
            self._loop.call_soon_threadsafe(self._on_mail, recipient.lower(), message)
        self.accepted += 1
        return "250 OK"
