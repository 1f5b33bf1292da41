"""Team mailbox: routed conversations forwarded to a team's address, answers taken back.

Each mail carries an agent token (schemas.tokens.agent_key) in its Reply-To plus-address
and in a `[ref:…]` in its subject, so a team member just answers the mail: the answer
lands in our support mailbox, and intake recognises it as the agent's reply to the
customer rather than a customer's message. Mails about one conversation thread under its
first one (In-Reply-To/References), which is the thread reference this tool returns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

import aiosmtplib
import msgspec

from connectors.base import AgentTool, Handoff
from connectors.email.errors import SmtpTransient
from connectors.email.mime import MAIL_POLICY
from connectors.email.settings import EmailSettings, SmtpSettings
from connectors.email.smtp import NETWORK, classified, connect, where
from schemas.conversation import ConversationCard
from schemas.errors import ConfigError, PermanentError
from schemas.ids import mail_nonce
from schemas.routed import RoutedConversation
from schemas.tokens import agent_key, make_token

__all__ = ["MailboxDestination", "MailboxTool", "render"]


class MailboxDestination(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A team mailbox in the policy: the address routed conversations are mailed to."""

    address: str

    def __post_init__(self) -> None:
        """An address we can mail; the policy loader points a refusal at its line."""
        if len(self.address) > 254 or not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s.]+", self.address):
            raise ValueError("address: must be an email address like support@example.com")

HISTORY_LINES = 10


class MailboxTool(AgentTool[EmailSettings]):
    """Delivers to the mailbox address of each destination it knows (name → address)."""

    def __init__(self, settings: EmailSettings, addresses: Mapping[str, str]) -> None:
        super().__init__(settings)
        self.addresses = dict(addresses)

    @property
    def _smtp(self) -> SmtpSettings:
        if self.settings.smtp is None:
            raise ConfigError("team mailboxes need an SMTP server", where="email.smtp")
        return self.settings.smtp

    async def start(self) -> None:
        """Nothing to open: a forward is rare enough for a connection of its own."""
        _ = self._smtp

    async def stop(self) -> None:
        """Nothing to close."""

    async def deliver(self, handoff: Handoff) -> str:
        """Send one mail to the destination's address; returns the thread's first Message-ID."""
        address = self.addresses.get(handoff.destination)
        if address is None:
            raise PermanentError(f"no mailbox address for destination {handoff.destination!r}")
        smtp = self._smtp
        token = make_token(handoff.card.conversation_id, agent_key(self.settings.token_key
                                                                   .get_secret_value().encode()))
        mail, own_id = render(handoff, smtp, address, token, now=datetime.now(UTC))
        client = await connect(smtp)
        try:
            # our bytes, not aiosmtplib's flattening: it would fold the long Message-ID
            await client.sendmail(smtp.from_address, [address], mail.as_bytes())
            await client.quit()
        except aiosmtplib.SMTPRecipientsRefused as e:
            raise classified(e.recipients[0], f"{where(smtp)} for {address}") from e
        except aiosmtplib.SMTPResponseException as e:
            raise classified(e, f"{where(smtp)} for {address}") from e
        except (aiosmtplib.SMTPException, *NETWORK) as e:
            raise SmtpTransient(f"{where(smtp)}: {e!r}") from e
        finally:
            client.close()
        return handoff.thread or own_id


def render(handoff: Handoff, smtp: SmtpSettings, address: str, token: str, *,
           now: datetime) -> tuple[EmailMessage, str]:
    """The mail for one handoff and its Message-ID (without angle brackets)."""
    card = handoff.card
    nonce = mail_nonce(handoff.delivery_id)
    own_id = f"sb.{token}.{nonce}@{smtp.message_id_domain}"
    local, _, domain = smtp.from_address.rpartition("@")
    mail = EmailMessage(policy=MAIL_POLICY)
    mail["From"] = Address(display_name=f"{smtp.from_name} (Switchboard)", addr_spec=smtp.from_address)
    mail["To"] = address
    mail["Reply-To"] = Address(display_name=smtp.from_name, addr_spec=f"{local}+{token}@{domain}")
    who = card.customer_name or card.recipient.value
    subject = card.subject or "(no subject)"
    mail["Subject"] = f"[{card.queue}] {subject} - {who} [ref:{token}]"
    mail["Date"] = format_datetime(now)
    mail["Message-ID"] = f"<{own_id}>"
    # answers to this mail are ours to read; no vacation replies to a robot, please
    mail["Auto-Submitted"] = "auto-generated"
    if handoff.thread:
        mail["In-Reply-To"] = f"<{handoff.thread}>"
        mail["References"] = f"<{handoff.thread}>"
    mail["X-Switchboard-Delivery"] = handoff.delivery_id
    mail["X-Switchboard-Event"] = handoff.event
    mail.set_content(_body(handoff), charset="utf-8")
    return mail, own_id


def _body(handoff: Handoff) -> str:
    """Plain text an agent can act on without opening anything else."""
    card = handoff.card
    lines = []
    if handoff.routed is not None:
        lines += _routed(handoff.routed, card)
    elif handoff.receipt is not None:
        r = handoff.receipt
        lines.append(f"Your reply {r.reply_id} was {r.status}" + (f": {r.reason}" if r.reason else "."))
        lines += [f"  guard {f.action}: {f.rule} matched {', '.join(f.matched)} - {f.reason}"
                  for f in r.flags]
    else:
        lines.append(handoff.text or "")
    lines += ["", f"Conversation {card.conversation_id} · {card.channel} · status {card.status}",
              f"Answer by replying to this mail: your reply goes to {card.recipient.value} "
              f"on {card.channel}. Text above your reply line only; quoted text is dropped."]
    return "\n".join(lines) + "\n"


def _callback(routed: RoutedConversation) -> list[str]:
    """The call the team owes, when the policy answers this customer by calling back."""
    task = routed.callback
    if task is None:
        return []
    due = task.due.isoformat(timespec="minutes") if task.due else "no due time"
    return [f"CALL BACK {task.number or '(no number: withheld)'} by {due}; mark it done with "
            f"POST /v1/conversations/{routed.conversation_id}/callback"]


def _routed(routed: RoutedConversation, card: ConversationCard) -> list[str]:
    due = routed.first_response_due.isoformat(timespec="minutes") if routed.first_response_due else "none"
    sentiment = f"{routed.sentiment:+.2f}" if routed.sentiment is not None else "n/a"
    message = routed.message
    # a transfer brings no message: the conversation's own customer and channel, and the note
    sender, channel = (message.sender, message.channel) if message else (card.recipient, card.channel)
    said = routed.said.strip()
    lines = [
        f"Customer: {routed.customer_name or sender.value} ({routed.tier}), via {channel}",
        f"Urgency: {routed.urgency} · priority {routed.priority} · first response due {due}",
        f"Sentiment: {sentiment} · transfers: {routed.transfers}"
        + (f" · agent: {routed.agent}" if routed.agent else ""),
        *_callback(routed),
        "", said, "",
    ]
    if routed.history:
        lines.append("History (newest last):")
        lines += [f"  {h.at:%Y-%m-%d %H:%M} {h.channel} {h.direction}: {h.summary}"
                  + (f" [{h.outcome}]" if h.outcome else "") for h in routed.history[-HISTORY_LINES:]]
        lines.append("")
    lines.append("Why it is here:")
    lines += [f"  - {reason}" for reason in routed.reasons]
    return lines
