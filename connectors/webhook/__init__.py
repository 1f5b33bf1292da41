"""The webhook agents' tool: routed conversations POSTed as signed JSON to a team's endpoint."""

from __future__ import annotations

from connectors.webhook.errors import SignatureError, WebhookRejected, WebhookUnavailable
from connectors.webhook.settings import WebhookEndpoint, WebhookSettings, endpoints_for
from connectors.webhook.sign import sign, verify
from connectors.webhook.tool import WebhookBody, WebhookTool

__all__ = [
    "SignatureError",
    "WebhookBody",
    "WebhookEndpoint",
    "WebhookRejected",
    "WebhookSettings",
    "WebhookTool",
    "WebhookUnavailable",
    "endpoints_for",
    "sign",
    "verify",
]
