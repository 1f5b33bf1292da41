"""A mail system of the test's own: the stack's Dovecot and SMTP relay, on free ports, in a fresh dir.

The shared stack's Dovecot is left alone; this one is started by the same code `make run`
uses (`switchboard stack up --with-imap`) and stopped by PID at the end.
"""

from __future__ import annotations

import imaplib
import json
import shutil
import smtplib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest

from devtools import stack as local_stack
from devtools.relay import CUSTOMER_PASSWORD
from router.settings import Settings
from tests.processes import free_port

SUPPORT, SUPPORT_PASSWORD = "support@example.com", "support-secret"


@dataclass(frozen=True)
class MailStack:
    """The private mail system's settings and how the email channel reaches it."""

    settings: Settings

    def channel(self, **account: object) -> dict[str, str]:
        """SB_EMAIL for the support mailbox here, replies through the relay (like `make run`)."""
        s = self.settings
        config = {
            "accounts": [{"name": "support", "host": "127.0.0.1", "port": s.imap_port, "username": SUPPORT,
                          "password": SUPPORT_PASSWORD, "tls": "none", "timeout": 10, **account}],
            "smtp": {"host": "127.0.0.1", "port": s.smtp_port, "tls": "none",
                     "from_address": SUPPORT, "from_name": "Example Support",
                     "message_id_domain": "support.example.com", "max_attempts": 3},
        }
        return {"SB_EMAIL": json.dumps(config), "SB_OUR_DOMAINS": "support.example.com"}

    def mail(self, sender: str, subject: str, text: str, to: str = SUPPORT) -> None:
        """Send a mail through the relay, as a newcomer's client would."""
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = sender, to, subject
        mail.set_content(text)
        with smtplib.SMTP("127.0.0.1", self.settings.smtp_port, timeout=10) as smtp:
            smtp.send_message(mail)

    def inbox(self, address: str, password: str = CUSTOMER_PASSWORD) -> list[bytes]:
        """Every mail in a mailbox's INBOX, raw; empty while the mailbox does not exist yet."""
        try:
            with imaplib.IMAP4("127.0.0.1", self.settings.imap_port, timeout=10) as imap:
                imap.login(address, password)
                imap.select("INBOX", readonly=True)
                _, found = imap.search(None, "ALL")
                raw = []
                for number in found[0].split():
                    _, data = imap.fetch(number.decode(), "(RFC822)")
                    raw.append(data[0][1] if isinstance(data[0], tuple) else b"")
                return raw
        except imaplib.IMAP4.error:
            return []


@pytest.fixture
def mail_stack(stack: Settings) -> Iterator[MailStack]:
    """Dovecot and the relay of this test alone; stopped and removed afterwards."""
    # not under pytest's 0700 tmp: Dovecot's mail user must be able to reach its mailboxes
    state = Path(tempfile.mkdtemp(prefix="sb-mail-"))
    state.chmod(0o755)
    settings = stack.model_copy(update={"state_dir": state, "imap_port": free_port(),
                                        "lmtp_port": free_port(), "smtp_port": free_port()})
    try:
        local_stack.up(settings, local_stack.MAIL_SERVICES, timeout=60)
        yield MailStack(settings)
    finally:
        local_stack.down(settings)
        shutil.rmtree(state, ignore_errors=True)
