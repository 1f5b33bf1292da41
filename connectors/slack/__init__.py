"""The Slack agents' tool: routed conversations as threads in a team's channel, replies taken back."""

from __future__ import annotations

from connectors.slack.blocks import SlackMessage, render
from connectors.slack.errors import SignatureError, SlackRejected, SlackUnavailable
from connectors.slack.events import Ignored, SlackEvent, SlackReply, UrlVerification, parse, verify
from connectors.slack.settings import SlackSettings
from connectors.slack.tool import SlackTool

__all__ = [
    "Ignored",
    "SignatureError",
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
