"""The Slack agents' tool: routed conversations as threads in a team's channel, replies taken back."""

from __future__ import annotations

from collections.abc import Mapping

from connectors.slack.blocks import SlackMessage, render
from connectors.slack.errors import SignatureError, SlackRejected, SlackUnavailable
from connectors.slack.events import Ignored, SlackEvent, SlackReply, UrlVerification, parse, verify
from connectors.slack.routes import routes
from connectors.slack.settings import SlackDestination, SlackSettings
from connectors.slack.tool import SlackTool
from connectors.spec import Secrets, ToolSpec

__all__ = [
    "TOOL",
    "Ignored",
    "SignatureError",
    "SlackDestination",
    "SlackEvent",
    "SlackMessage",
    "SlackRejected",
    "SlackReply",
    "SlackSettings",
    "SlackTool",
    "SlackUnavailable",
    "UrlVerification",
    "parse",
    "render",
    "verify",
]


def _build(settings: SlackSettings, destinations: Mapping[str, SlackDestination],
           secrets: Secrets) -> SlackTool:
    return SlackTool(settings, {name: d.channel for name, d in destinations.items()})


TOOL = ToolSpec(kind="slack", destination=SlackDestination, section="slack", settings=SlackSettings,
                build=_build, routes=routes)
