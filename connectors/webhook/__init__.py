"""The webhook agents' tool: routed conversations POSTed as signed JSON to a team's endpoint."""

from __future__ import annotations

from collections.abc import Mapping

from connectors.spec import Secrets, ToolSpec
from connectors.webhook.errors import SignatureError, WebhookRejected, WebhookUnavailable
from connectors.webhook.settings import WebhookDestination, WebhookEndpoint, WebhookSettings, endpoint_for
from connectors.webhook.sign import sign, verify
from connectors.webhook.tool import WebhookBody, WebhookTool
from schemas.errors import ConfigError

__all__ = [
    "TOOL",
    "SignatureError",
    "WebhookBody",
    "WebhookDestination",
    "WebhookEndpoint",
    "WebhookRejected",
    "WebhookSettings",
    "WebhookTool",
    "WebhookUnavailable",
    "endpoint_for",
    "sign",
    "verify",
]


def _build(settings: WebhookSettings, destinations: Mapping[str, WebhookDestination],
           secrets: Secrets) -> WebhookTool:
    return WebhookTool(settings, {name: endpoint_for(d, secrets) for name, d in destinations.items()})


def _unready(settings: WebhookSettings, destination: WebhookDestination, secrets: Secrets) -> str | None:
    try:
        endpoint_for(destination, secrets)
    except ConfigError as e:
        return e.reason
    return None


TOOL = ToolSpec(kind="webhook", destination=WebhookDestination, section="webhook", settings=WebhookSettings,
                build=_build, unready=_unready, on_by_default=True)
