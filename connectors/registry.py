"""Every channel and agents' tool Switchboard knows, one line each; nothing is discovered by scanning.

Adding one is a package exporting its spec (connectors/spec.py) and a line here; the
contract suite (tests/contract/) then runs over it.
"""

from __future__ import annotations

from typing import Any

from connectors import api, chat, email, phone, slack, twitter, webhook
from connectors.spec import ConnectorSpec, ToolSpec
from schemas.errors import ConfigError

__all__ = ["CHANNELS", "TOOLS", "channel", "sections"]

CHANNELS: dict[str, ConnectorSpec[Any]] = {
    api.SPEC.name: api.SPEC,
    email.SPEC.name: email.SPEC,
    chat.SPEC.name: chat.SPEC,
    phone.SPEC.name: phone.SPEC,
    twitter.SPEC.name: twitter.SPEC,
}

TOOLS: dict[str, ToolSpec[Any, Any]] = {
    webhook.TOOL.kind: webhook.TOOL,
    slack.TOOL.kind: slack.TOOL,
    email.MAILBOX.kind: email.MAILBOX,
}


def channel(name: str) -> ConnectorSpec[Any]:
    """The channel called `name`, or a ConfigError listing the known ones."""
    try:
        return CHANNELS[name]
    except KeyError:
        known = ", ".join(sorted(CHANNELS))
        raise ConfigError(f"unknown channel {name!r}; known: {known}") from None


def sections() -> dict[str, tuple[type[Any], bool]]:
    """Every settings section a connector reads: its model, and whether it is on by default."""
    found: dict[str, tuple[type[Any], bool]] = {}
    specs: list[ConnectorSpec[Any] | ToolSpec[Any, Any]] = [*CHANNELS.values(), *TOOLS.values()]
    for spec in specs:
        model, default = found.get(spec.section, (spec.settings, False))
        if model is not spec.settings:
            raise ConfigError(f"section {spec.section!r} is read with two models: "
                              f"{model.__name__} and {spec.settings.__name__}")
        found[spec.section] = (model, default or spec.on_by_default)
    return found
