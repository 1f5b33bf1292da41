"""The email channel: IMAP (IDLE or polling) in, SMTP replies out, threads kept by tokens."""

from __future__ import annotations

from connectors.base import ConnectorSpec
from connectors.email.inbound import EmailInbound
from connectors.email.outbound import EmailOutbound
from connectors.email.parse import parse_email
from connectors.email.settings import EmailSettings
from schemas.inbound import InboundMessage

__all__ = ["SPEC", "EmailInbound", "EmailOutbound", "EmailSettings", "parse"]


def parse(raw: bytes) -> InboundMessage:
    """Parse one raw RFC 822 message with default limits (for `explain`)."""
    return parse_email(raw)


SPEC = ConnectorSpec(name="email", settings=EmailSettings, inbound=EmailInbound,
                     outbound=EmailOutbound, parse=parse)
