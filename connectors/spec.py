"""What a connector package exports: one spec that the registry lists, one line each.

A **channel** (`ConnectorSpec`) is a way customers reach us. It may have a pulled source
(`inbound`: IMAP, a polled API), pushed HTTP routes (`routes`: webhooks, sockets), a
sender for replies (`outbound`) and a pure parser of its native form (`parse`, for
`explain` and the contract suite). Its `extras` type is what it puts in
`InboundMessage.extras` for agents' tools to show; decisions never read it.

An **agents' tool** (`ToolSpec`) is where a team works. The policy's destinations of its
`kind` are written in its `destination` shape; `build` makes the one tool that serves
them, and `routes` take the agents' answers back. A destination this process cannot
serve (`unready` says why) is reported once at start; its deliveries go to its fallback.

A channel without a sender of its own may answer through others (`reply_via`): the
first of them that runs here and can address the customer's identity (its `addresses`,
identity kinds such as "email") sends the reply. The API channel answers by email that
way, so a customer who wrote through an integration reads the answer in their mailbox.

A channel says how a team can answer its customers (`reply_modes`, the first its default):
every channel takes a written reply ("text"); one whose customers can also be called
back (the phone) adds "callback". The policy picks one per tier among what the channel
declares (`tiers.<tier>.reply_mode`), checked at load; the processors never ask which
channel it is.

A channel may offer a synthetic probe (`probe`): it builds a `Probe` that sends a marked
message the way a customer would (a mail over SMTP to the mailbox we read, a POST to our
API), so the router can time the whole path to routed. Without it, the channel is simply
not probed.

Both name a settings section: `SB_<SECTION>` as JSON, or `SB_<SECTION>__<KEY>` per key,
validated by the `settings` model. A connector that is `on_by_default` runs with the
model's defaults when its section is absent; any other runs only when configured.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, SecretStr

from connectors.base import AgentTool, CursorStore, Inbound, Outbound, Probe, ProbeTarget
from connectors.routes import Edge, Route
from schemas.inbound import InboundMessage
from schemas.routed import ReplyMode

__all__ = ["ConnectorSpec", "Secrets", "ToolSpec"]

S = TypeVar("S", bound=BaseModel)
D = TypeVar("D")
# the value of a secret the policy names by its environment variable, or None when unset
Secrets = Callable[[str], SecretStr | None]


@dataclass(frozen=True, slots=True)
class ConnectorSpec(Generic[S]):
    """A customer channel: its name, settings section, extras type and its parts."""

    name: str
    settings: type[S]
    extras: type[Any] | None = None
    on_by_default: bool = False
    inbound: Callable[[S, CursorStore], Inbound[Any]] | None = None
    outbound: Callable[[S], Outbound[Any]] | None = None
    routes: Callable[[S, Edge], Sequence[Route]] | None = None
    parse: Callable[[bytes], InboundMessage] | None = None
    # identity kinds its sender can reach ("email", "phone", "handle")
    addresses: frozenset[str] = frozenset()
    # without a sender of its own: channels that answer for it, in order of preference
    reply_via: tuple[str, ...] = ()
    # keeps a record of the conversation the customer reads back (a chat log): takes `transcript`s,
    # the customer's words that joined from another channel; any other sender never sees one
    transcripts: bool = False
    # a synthetic probe through the channel's real path; None when these settings cannot probe
    probe: Callable[[S, ProbeTarget], Probe | None] | None = None
    # how a team may answer this channel's customers, the default first
    reply_modes: tuple[ReplyMode, ...] = ("text",)

    @property
    def section(self) -> str:
        """The settings section: a channel's own name."""
        return self.name


@dataclass(frozen=True, slots=True)
class ToolSpec(Generic[S, D]):
    """An agents' tool: its destination kind and shape, settings section, and how to build it."""

    kind: str
    destination: type[D]
    section: str
    settings: type[S]
    build: Callable[[S, Mapping[str, D], Secrets], AgentTool[Any]]
    # why this process cannot serve one destination (a secret not set, ...), or None
    unready: Callable[[S, D, Secrets], str | None] | None = None
    on_by_default: bool = False
    routes: Callable[[S, Edge], Sequence[Route]] | None = None
