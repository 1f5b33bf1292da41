"""`switchboard mail send|read`: a newcomer's mail client for the local stack.

`send` mails support through the stack's SMTP relay (as any mail client or `swaks`
would); `read` prints a mailbox of the stack's Dovecot, e.g. the customer's, where the
agent's answer lands. Loopback only, plain text, for development and demos.
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import make_msgid

from devtools.relay import CUSTOMER_PASSWORD
from router.settings import Settings
from schemas.errors import SwitchboardError

__all__ = ["SUPPORT", "read", "send"]

SUPPORT = "support@example.com"
TIMEOUT_SECONDS = 10.0


def send(settings: Settings, *, sender: str, text: str, subject: str, to: str = SUPPORT) -> str:
    """Mail `to` through the stack's SMTP relay; returns the Message-ID."""
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = sender, to, subject
    mail["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "localhost")
    mail.set_content(text)
    try:
        with smtplib.SMTP("127.0.0.1", settings.smtp_port, timeout=TIMEOUT_SECONDS) as smtp:
            smtp.send_message(mail)
    except (smtplib.SMTPException, OSError) as e:
        raise SwitchboardError(f"the stack's SMTP server on 127.0.0.1:{settings.smtp_port} did not take "
                               f"the mail ({e}); is it up? `switchboard stack up --with-imap`") from e
    return str(mail["Message-ID"])


def read(settings: Settings, address: str, password: str = CUSTOMER_PASSWORD) -> Iterator[str]:
    """Every mail in the mailbox's INBOX, oldest first, as readable blocks."""
    try:
        with imaplib.IMAP4("127.0.0.1", settings.imap_port, timeout=TIMEOUT_SECONDS) as imap:
            imap.login(address, password)
            imap.select("INBOX", readonly=True)
            _, found = imap.search(None, "ALL")
            for number in found[0].split():
                _, data = imap.fetch(number.decode(), "(RFC822)")
                raw = data[0][1] if data and isinstance(data[0], tuple) else b""
                yield _readable(email.message_from_bytes(raw, policy=email.policy.default))
    except (imaplib.IMAP4.error, OSError) as e:
        raise SwitchboardError(f"cannot read {address} on 127.0.0.1:{settings.imap_port}: {e} (a mailbox "
                               f"exists once mail reached it; customers' password is {CUSTOMER_PASSWORD!r})"
                               ) from e


def _readable(mail: email.message.Message) -> str:
    body = mail.get_body(("plain",)) if isinstance(mail, EmailMessage) else None
    text = body.get_content() if body is not None else "(no plain text)"
    head = "\n".join(f"{name}: {mail[name]}" for name in ("Date", "From", "To", "Subject") if mail[name])
    return f"{head}\n\n{text.strip()}\n"
