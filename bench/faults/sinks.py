"""The receiving side the customer and the agents stand for: an SMTP sink and a webhook.

The SMTP sink is an aiosmtpd server in its own thread that keeps, for every mail it
accepts, its Message-ID, recipient and arrival time; told to refuse, it answers every
transaction with the given reply until told to accept again. The agents' webhook is the
suite's signed receiver (tests/receivers/webhook.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any

from aiosmtpd.controller import Controller

from bench.faults.stack import free_port

__all__ = ["TEAM_DOMAIN", "Mail", "SmtpSink"]

# the team mailboxes' domain (handoffs, at least once by design); customers write from elsewhere
TEAM_DOMAIN = "@support.example.com"

_headers = BytesHeaderParser(policy=compat32)


@dataclass(frozen=True)
class Mail:
    """One accepted mail."""

    message_id: str  # without angle brackets
    recipient: str
    at: float  # wall clock

    @property
    def to_customer(self) -> bool:
        """A reply to a customer, not a handoff to a team mailbox."""
        return not self.recipient.endswith(TEAM_DOMAIN)

    @property
    def nonce(self) -> str | None:
        """The nonce of one of our Message-IDs (`sb.TOKEN.NONCE@domain`): the reply or delivery."""
        local = self.message_id.partition("@")[0]
        return local.rpartition(".")[2] if local.startswith("sb.") else None


class SmtpSink:
    """An SMTP server on loopback that records what it accepts; `refuse()` makes it say no."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mails: list[Mail] = []
        self.refused = 0
        self._refusal: tuple[str, str] | None = None  # (command, reply)
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    def start(self) -> None:
        """Listen (in the controller's own thread)."""
        self._controller.start()

    def stop(self) -> None:
        """Stop listening."""
        self._controller.stop()

    def refuse(self, command: str, reply: str) -> None:
        """Answer `command` (RCPT or DATA) with `reply` (e.g. "451 4.3.0 try later") until accept()."""
        self._refusal = (command, reply)

    def accept(self) -> None:
        """Take mail again."""
        self._refusal = None

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        """Take the recipient, unless refusing at RCPT."""
        refusal = self._refusal
        if refusal is not None and refusal[0] == "RCPT":
            self.refused += 1
            return refusal[1]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Record the mail, unless refusing at DATA."""
        refusal = self._refusal
        if refusal is not None and refusal[0] == "DATA":
            self.refused += 1
            return refusal[1]
        content = envelope.original_content or envelope.content
        headers = _headers.parsebytes(content if isinstance(content, bytes) else content.encode())
        message_id = str(headers.get("Message-ID", "")).strip().strip("<>")
        for recipient in envelope.rcpt_tos:
            self.mails.append(Mail(message_id, str(recipient), time.time()))
        return "250 OK"
