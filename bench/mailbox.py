"""The benchmark's side of the IMAP server: create folders, file mail, drop a backlog."""

from __future__ import annotations

import imaplib
import time
import uuid
from email.message import EmailMessage

__all__ = ["BenchMailbox", "stamped_mail"]


def stamped_mail(n: int, run: str) -> bytes:
    """A customer mail whose body carries the moment it was filed, for latency."""
    mail = EmailMessage()
    mail["From"] = f"Customer {n} <customer{n}@example.org>"
    mail["To"] = "support@example.com"
    mail["Subject"] = f"Where is order {n}?"
    mail["Message-ID"] = f"<{run}.{n}.{uuid.uuid4().hex[:6]}@example.org>"
    mail.set_content(f"My order {n} has not arrived.\nbench-t0={time.time():.6f}\n")
    return mail.as_bytes().replace(b"\n", b"\r\n")


class BenchMailbox:
    """One logged-in stdlib IMAP connection to the local Dovecot (blocking; use a thread)."""

    def __init__(self, port: int, user: str, password: str) -> None:
        self._conn = imaplib.IMAP4("127.0.0.1", port, timeout=60)
        self._conn.login(user, password)

    def create(self, folder: str) -> None:
        """Create a folder (fresh per run)."""
        self._conn.create(f'"{folder}"')

    def delete(self, folder: str) -> None:
        """Remove a folder and its mail."""
        self._conn.delete(f'"{folder}"')

    def file(self, folder: str, raw: bytes) -> None:
        """File one mail the way a delivery agent does."""
        typ, data = self._conn.append(f'"{folder}"', "", None, raw)
        assert typ == "OK", data

    def move_all(self, source: str, target: str) -> None:
        """Move every mail of `source` into `target` in one command: a backlog drops at once."""
        self._conn.select(f'"{source}"')
        try:
            typ, data = self._conn.uid("MOVE", "1:*", f'"{target}"')
            assert typ == "OK", data
        finally:
            self._conn.close()  # unselect, so the folder can be deleted under us

    def close(self) -> None:
        """Log out."""
        self._conn.logout()
