"""A local SMTP server that keeps every message it is given (aiosmtpd on a loopback port)."""

from __future__ import annotations

import email
import email.policy
from typing import Any

__all__ = ["Inbox"]


class Inbox:
    """An SMTP server on loopback that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(parsed)  # type: ignore[arg-type]
        return "250 OK"
