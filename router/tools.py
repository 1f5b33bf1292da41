"""The agents' tools this process delivers with: one per kind, built from the policy.

Each destination of the policy is served by the registered tool of its kind
(connectors/registry.py TOOLS), when this process has that tool's settings section and
the tool says the destination is ready (a webhook's secret is set, a team mailbox has an
SMTP server). A destination without a tool is not an error: it is reported once, when
the policy takes effect, and its deliveries go to its fallback. A changed policy
rebuilds the tools (new ones started before the old ones stop).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from mode import Service

from connectors.base import AgentTool
from connectors.registry import TOOLS
from processors.policy.model import Policy
from router.policy_watch import PolicyHolder
from router.settings import Settings
from schemas.errors import SwitchboardError

__all__ = ["ToolBox", "build"]

log = logging.getLogger(__name__)
CHECK_SECONDS = 2.0


def build(settings: Settings, policy: Policy) -> tuple[dict[str, AgentTool[Any]], dict[str, str]]:
    """A tool for every destination this process can serve (not started), and why not for the rest."""
    by_kind: dict[str, dict[str, Any]] = {}
    for d in policy.destinations.values():
        by_kind.setdefault(d.kind, {})[d.name] = d.config
    tools: dict[str, AgentTool[Any]] = {}
    unserved: dict[str, str] = {}
    for kind, destinations in by_kind.items():
        spec = TOOLS[kind]
        section = settings.section(spec.section, spec.settings)
        if section is None:
            unserved |= dict.fromkeys(destinations, f"no {kind} settings (SB_{spec.section.upper()})")
            continue
        ready = {}
        for name, destination in destinations.items():
            why = spec.unready(section, destination, settings.secret) if spec.unready else None
            if why:
                unserved[name] = why
            else:
                ready[name] = destination
        if ready:
            tools |= dict.fromkeys(ready, spec.build(section, ready, settings.secret))
    return tools, unserved


class ToolBox(Service):
    """Holds the started tools for the policy in force; `current()` is the dispatch stage's view."""

    def __init__(self, settings: Settings, policy: PolicyHolder, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.policy = policy
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
        fresh, unserved = build(self.settings, policy)
        if unserved:
            # once per policy, never per message: dispatch passes them over quietly
            log.warning("destinations not set up here; their deliveries go to their fallbacks: "
                        + "; ".join(f"{name} ({why}) -> {policy.destinations[name].fallback or 'none'}"
                                    for name, why in sorted(unserved.items())),
                        extra={"destinations": unserved})
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
