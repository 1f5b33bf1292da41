"""Bounces: a channel's delivery report becomes a failed DeliveryReceipt for the reply it concerns."""

from __future__ import annotations

from schemas.inbound import InboundMessage
from schemas.outbound import DeliveryReceipt
from schemas.tokens import TOKEN_PATTERN, verify_token

__all__ = ["receipt_for_bounce", "reply_of"]


def reply_of(message_id: str, key: bytes) -> tuple[str, str] | None:
    """(conversation id, reply id) of one of our Message-IDs: `sb.<token>.<reply id>@domain`."""
    local = message_id.strip("<>").partition("@")[0]
    if not local.startswith("sb."):
        return None
    match = TOKEN_PATTERN.match(local[3:])
    if match is None:
        return None
    conversation = verify_token(match.group(0), key)
    reply_id = local[3 + match.end() + 1:]
    if conversation is None or not reply_id:
        return None
    return conversation, reply_id


def receipt_for_bounce(message: InboundMessage, key: bytes) -> DeliveryReceipt | None:
    """The failed receipt a bounce means, or None when it concerns no message of ours."""
    report = message.delivery_report
    if report is None:
        return None
    for message_id in report.message_ids:
        if found := reply_of(message_id, key):
            conversation, reply_id = found
            reason = "; ".join(x for x in (report.status, report.reason) if x)
            return DeliveryReceipt(
                reply_id=reply_id, conversation_id=conversation, channel=message.channel,
                status="failed", at=message.received_at,
                reason=f"bounced: {reason or 'the mail server returned it'}",
                provider_id=message_id)
    return None
