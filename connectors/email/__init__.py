"""The email channel: IMAP (IDLE or polling) in, SMTP replies out, threads kept by tokens.

The same package is the team-mailbox agents' tool (mailbox.py): routed conversations
mailed to a team's address, the agent's answer taken back as their reply.
"""

from __future__ import annotations

from collections.abc import Mapping

from connectors.base import AgentTool
from connectors.email.inbound import EmailInbound
from connectors.email.mailbox import MailboxDestination, MailboxTool
from connectors.email.outbound import EmailOutbound
from connectors.email.parse import parse_email
from connectors.email.probe import probe
from connectors.email.settings import EmailSettings
from connectors.spec import ConnectorSpec, Secrets, ToolSpec
from schemas.inbound import EmailExtras, InboundMessage

__all__ = ["MAILBOX", "SPEC", "EmailInbound", "EmailOutbound", "EmailSettings", "parse"]


def parse(raw: bytes) -> InboundMessage:
    """Parse one raw RFC 822 message with default limits (for `explain`)."""
    return parse_email(raw)


def _mailbox(settings: EmailSettings, destinations: Mapping[str, MailboxDestination],
             secrets: Secrets) -> AgentTool[EmailSettings]:
    return MailboxTool(settings, {name: d.address for name, d in destinations.items()})


def _unready(settings: EmailSettings, destination: MailboxDestination, secrets: Secrets) -> str | None:
    return None if settings.smtp is not None else "the email channel has no SMTP server (SB_EMAIL smtp)"


SPEC = ConnectorSpec(name="email", settings=EmailSettings, extras=EmailExtras, inbound=EmailInbound,
                     outbound=EmailOutbound, parse=parse, addresses=frozenset({"email"}), probe=probe)
MAILBOX = ToolSpec(kind="mailbox", destination=MailboxDestination, section="email",
                   settings=EmailSettings, build=_mailbox, unready=_unready)
