"""Replies the visitor has not seen, sent on by mail in one batch with a short recap.

When a reply is logged, its session is queued for a look `email_after_seconds` later
(the first reply starts the window; later ones ride along). At that time, whichever
worker claims the session first mails every reply numbered after both what the widget
displayed and what was mailed before, if the visitor gave an address. The `mailed` mark
moves before the mail goes: a crash loses that mail (the chat keeps the replies), never
doubles it. The mail is the email channel's own reply; its Message-ID carries the
conversation's token, and its Reply-To and `[ref:]` line a continuation token bound to
the address mailed (schemas/tokens.py): an answer from that address with it proves the
visitor reads that mailbox, so intake links the session to the address's customer and the
answer joins the chat's conversation. From another address, altered or expired, it does not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter
from pydantic import SecretStr

from connectors.chat.frames import Entry
from connectors.chat.log import ChatLog
from connectors.email.outbound import EmailOutbound
from connectors.email.settings import EmailSettings, SmtpSettings
from schemas.errors import TransientError
from schemas.identity import Identity
from schemas.outbound import OutboundMessage
from schemas.tokens import continuation_key, continuation_token

__all__ = ["Continuation", "recap_text"]

log = logging.getLogger(__name__)
MAILED = Counter("sb_chat_continuations_total", "Continuation mails by outcome", ["outcome"])


def recap_text(team: str, earlier: Sequence[Entry], new: Sequence[Entry]) -> str:
    """The continuation mail's text: the new replies first, then the chat before them."""
    def line(entry: Entry) -> str:
        who = "You" if entry.author == "visitor" else (entry.name or team)
        return f"{who}: {entry.text.strip()}"

    parts = [f"You have {'a new reply' if len(new) == 1 else 'new replies'} in your chat with {team}:", ""]
    parts += [line(e) + "\n" for e in new]
    parts.append("Answer this email to continue the conversation, or go back to the chat.")
    # answering links the chat to this mailbox (decision 0016): whoever did not chat must not
    parts.append("Did not chat with us? Please ignore this email: an answer would join that chat.")
    if earlier:
        parts += ["", "-- Earlier in the chat --", *(line(e) for e in earlier)]
    return "\n".join(parts)


class Continuation:
    """Looks for due sessions every `email_poll_seconds` and mails their unseen replies."""

    def __init__(self, log_: ChatLog, smtp: SmtpSettings, token_key: str, *, recap: int,
                 clock: Callable[[], float], token_days: int = 30) -> None:
        self._log = log_
        self._smtp = smtp
        self._mail = EmailOutbound(EmailSettings(smtp=smtp, token_key=SecretStr(token_key)))
        self._key = continuation_key(token_key.encode())
        self._recap = recap
        self._clock = clock
        self._token_days = token_days

    async def start(self) -> None:
        """Connect to the SMTP server, so a bad one shows at start."""
        await self._mail.start()

    async def stop(self) -> None:
        """Close the SMTP connection."""
        await self._mail.stop()

    async def run(self, every: float) -> None:
        """Mail what falls due, forever; a Redis outage only delays it."""
        while True:
            await asyncio.sleep(every)
            try:
                for session in await self._log.due_for_mail(self._clock()):
                    await self.mail(session)
            except TransientError as e:
                log.warning("chat: continuation mail delayed", extra={"reason": e.reason})

    async def mail(self, session: str) -> str:
        """Mail one session's unseen replies now; says what became of them."""
        meta = await self._log.meta(session)
        address, conversation = meta.get("email"), meta.get("conversation")
        after = max(int(meta.get("seen", "0")), int(meta.get("mailed", "0")))
        last = await self._log.last(session)
        if after >= last:
            return self._count("seen")
        if address is None or conversation is None:
            return self._count("no_address")  # the replies wait in the chat for the visitor's return
        start = max(after - self._recap, 0)
        entries = await self._log.read(session, start, last - start)
        new = [e for seq, e in entries if seq > after and e.author == "agent"]
        if not new:
            return self._count("nothing_new")
        # the recap: what came before the first new reply, visitor's words included
        first = next(seq for seq, e in entries if seq > after and e.author == "agent")
        earlier = [e for seq, e in entries if seq < first][-self._recap:] if self._recap else []
        if not await self._log.raise_mark(session, "mailed", last):
            return self._count("raced")
        now = datetime.fromtimestamp(self._clock(), UTC)
        message = OutboundMessage(
            reply_id=f"chat{session[2:].replace('-', '').replace('_', '')}n{last}",
            conversation_id=conversation, channel="email", recipient=Identity(kind="email", value=address),
            kind="agent_reply", created_at=now, subject=f"Your chat with {self._smtp.from_name}",
            text=recap_text(self._smtp.from_name, earlier, new))
        token = continuation_token(conversation, address, (now + timedelta(days=self._token_days)).date(),
                                   self._key)
        receipt = await self._mail.send(message, reply_token=token)
        log.info("chat: continuation mail %s", receipt.status,
                 extra={"conversation_id": conversation, "reason": receipt.reason})
        return self._count(receipt.status)

    def _count(self, outcome: str) -> str:
        MAILED.labels(outcome).inc()
        return outcome
