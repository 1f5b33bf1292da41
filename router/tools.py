"""The agents' tools this process delivers with: one per kind, built from the policy.

Each destination of the policy is served by the tool of its kind, when this process is
configured for that kind: webhooks need their secret in the environment, Slack needs
`SB_SLACK`, team mailboxes need the email channel's SMTP server. A destination without
a tool is not an error at start: its deliveries fail with that reason and its fallback
takes over, which is what an operator sees in the handoff receipts and the alert.
A changed policy rebuilds the tools (new ones started before the old ones stop).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from mode import Service
from pydantic import SecretStr

from connectors.base import AgentTool
from connectors.email.mailbox import MailboxTool
from connectors.slack.tool import SlackTool
from connectors.webhook import WebhookSettings, WebhookTool
from connectors.webhook.settings import WebhookEndpoint
from processors.policy.model import Policy
from router.policy_watch import PolicyHolder
from router.settings import Settings
from schemas.errors import SwitchboardError

__all__ = ["ToolBox", "build"]

log = logging.getLogger(__name__)
CHECK_SECONDS = 2.0


def _webhooks(policy: Policy, environ: Mapping[str, str]) -> dict[str, WebhookEndpoint]:
    endpoints = {}
    for d in policy.destinations.values():
        if d.kind != "webhook" or d.url is None:
            continue
        secret = environ.get(d.secret_env or "", "")
        if not secret:
            log.error("webhook destination has no signing secret; its deliveries go to its fallback",
                      extra={"destination": d.name, "reason": f"environment variable {d.secret_env} "
                                                              "is not set"})
            continue
        endpoints[d.name] = WebhookEndpoint(url=d.url, secret=SecretStr(secret))
    return endpoints


def build(settings: Settings, policy: Policy, environ: Mapping[str, str]) -> dict[str, AgentTool[Any]]:
    """A tool for every destination this process can serve (not started)."""
    tools: dict[str, AgentTool[Any]] = {}
    endpoints = _webhooks(policy, environ)
    if endpoints:
        webhook = WebhookTool(WebhookSettings(), endpoints)
        tools |= dict.fromkeys(endpoints, webhook)
    by_kind: dict[str, dict[str, str]] = {"slack": {}, "mailbox": {}}
    for d in policy.destinations.values():
        if d.kind == "slack" and d.channel:
            by_kind["slack"][d.name] = d.channel
        elif d.kind == "mailbox" and d.address:
            by_kind["mailbox"][d.name] = d.address
    email = settings.channel_settings("email")
    if by_kind["slack"] and settings.slack is not None:
        tools |= dict.fromkeys(by_kind["slack"], SlackTool(settings.slack, by_kind["slack"]))
    if by_kind["mailbox"] and email is not None and email.smtp is not None:
        tools |= dict.fromkeys(by_kind["mailbox"], MailboxTool(email, by_kind["mailbox"]))
    missing = sorted(n for names in by_kind.values() for n in names if n not in tools)
    if missing:
        log.warning("destinations without a tool in this process (no SB_SLACK / SB_EMAIL smtp); "
                    "their deliveries go to their fallbacks", extra={"destinations": missing})
    return tools


class ToolBox(Service):
    """Holds the started tools for the policy in force; `current()` is the dispatch stage's view."""

    def __init__(self, settings: Settings, policy: PolicyHolder,
                 environ: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.policy = policy
        self.environ = dict(os.environ if environ is None else environ)
        self._tools: dict[str, AgentTool[Any]] = {}
        self._built_for: Policy | None = None

    def current(self) -> Mapping[str, AgentTool[Any]]:
        """Destination name → its started tool."""
        return self._tools

    async def on_start(self) -> None:
        """Build and start the tools of the policy in force."""
        await self.refresh()

    async def on_stop(self) -> None:
        """Stop every tool."""
        await _stop(self._tools)
        self._tools = {}

    @Service.task
    async def _follow_policy(self) -> None:
        while not self.should_stop:
            await self.sleep(CHECK_SECONDS)
            await self.refresh()

    async def refresh(self) -> None:
        """Rebuild the tools when the policy changed: start the new, then stop the old."""
        policy = self.policy.current
        if policy is self._built_for:
            return
        fresh = build(self.settings, policy, self.environ)
        refused: set[int] = set()
        for tool in _unique(fresh):
            try:
                await tool.start()
            except SwitchboardError as e:
                refused.add(id(tool))
                log.error("agents' tool refused to start; its destinations go to their fallbacks",
                          extra={"destinations": sorted(n for n, t in fresh.items() if t is tool),
                                 "reason": e.reason})
        started = {name: tool for name, tool in fresh.items() if id(tool) not in refused}
        old, self._tools, self._built_for = self._tools, started, policy
        await _stop(old)
        log.info("agents' tools ready", extra={"destinations": sorted(started)})


def _unique(tools: Mapping[str, AgentTool[Any]]) -> list[AgentTool[Any]]:
    """Each tool once: one tool serves every destination of its kind."""
    return list({id(t): t for t in tools.values()}.values())


async def _stop(tools: Mapping[str, AgentTool[Any]]) -> None:
    for tool in _unique(tools):
        await tool.stop()
