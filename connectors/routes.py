"""What a pushed channel or tool serves on the router's HTTP server, and what it may ask of it.

A connector that is pushed to (an API caller, Slack's Events API, a voice callback, a chat
socket) declares its `Route`s; the router mounts them from the registry, never by hand.
A handler checks the request's signature or token before it parses anything, then acts
only through the `Edge` it was given: the router's side of the seam, so a connector never
imports the router or the processors. A handler refuses a request by raising `Refusal`;
the router answers it as the API's one JSON error, counted. An `Edge` call raises
TransientError while Kafka or Redis is away; the router answers that 503 with Retry-After,
so the caller retries.

A pushed channel whose message is told in parts, by callbacks that may come in any order
or not at all (a voicemail, then its transcript), *holds* it: `hold` keeps the message
so far under a key with a deadline (by the edge's clock), and whatever holds the key
when the deadline passes is accepted by the edge's timer; `settle` accepts the final
message at once. State lives outside the process, so a restart between two callbacks
loses nothing, and a key once settled or released stays so: the same callback twice is
one message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol
from weakref import WeakSet

from aiohttp import web

from schemas.conversation import ConversationCard
from schemas.inbound import InboundMessage
from schemas.outbound import DeliveryReceipt
from schemas.routed import ReplyMode

__all__ = ["OPEN_SOCKETS", "Edge", "Handler", "HoldState", "Outlook", "Refusal", "Route"]

# a held key's state: "new" (never held), "held" (waiting), "settled" (accepted by a
# callback) or "released" (accepted by the timer at its deadline)
HoldState = Literal["new", "held", "settled", "released"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# a route that holds a WebSocket open adds it here, so the server closes it (1001, going
# away) when it stops instead of waiting for the visitor to leave
OPEN_SOCKETS = web.AppKey("open_sockets", WeakSet[web.WebSocketResponse])


@dataclass(frozen=True, slots=True)
class Route:
    """One HTTP route: method, path and the handler that serves it.

    `public` routes serve anyone, with no token: a widget's files, a website visitor's
    socket. Such a handler checks what it can instead (origin, a signed session, rates).
    """

    method: str
    path: str
    handler: Handler
    public: bool = False


@dataclass(frozen=True, slots=True)
class Outlook:
    """What to tell a customer before they have said anything: their tier, our hours, when we answer.

    The times are the acknowledgement's: `expected` is the promise a plain message from
    this customer would get now, `opens` is now while the team is open; the `_text` forms
    are formatted as the acknowledgement shows them, in the team's timezone.
    """

    tier: str
    open_now: bool
    opens: datetime
    expected: datetime
    opens_text: str
    expected_text: str
    # how the team will answer: in writing, or by calling back (the policy's, per tier)
    reply_mode: ReplyMode = "text"


class Refusal(Exception):
    """A request refused with an HTTP status, a stable code and a message for the caller."""

    def __init__(self, status: int, code: str, message: str, **more: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.more = status, code, message, more


class Edge(Protocol):
    """The router's services to a pushed route; every call may raise TransientError."""

    def caller(self, request: web.Request, scope: str) -> str:
        """The integration a request's bearer token names, when it may use `scope`; else Refusal."""
        ...

    async def accept(self, message: InboundMessage) -> None:
        """Put a customer's message on the inbound topic, keyed by its thread."""
        ...

    def destinations(self, kind: str) -> Mapping[str, Any]:
        """The policy's destinations of one tool kind: name → its typed destination."""
        ...

    async def outlook(self, channel: str, identity: str) -> Outlook:
        """The tier, hours and expected answer for a customer known by `identity` on `channel`."""
        ...

    async def conversation_of(self, destination: str, reference: str) -> ConversationCard | None:
        """The card of the conversation a tool's thread belongs to, if it is still known."""
        ...

    async def reply(self, card: ConversationCard, *, text: str, author: str, reply_id: str) -> None:
        """An agent's answer to the conversation's customer, on their channel (sent at most once)."""
        ...

    async def note(self, card: ConversationCard, *, event_id: str, text: str, author: str,
                   at: datetime, source: str) -> None:
        """An internal note: history for agents, never sent to the customer."""
        ...

    async def called_back(self, card: ConversationCard, *, event_id: str, text: str | None, author: str,
                          at: datetime, source: str) -> None:
        """The conversation's call back made: the agent reached the customer (its first response)."""
        ...

    async def transfer(self, card: ConversationCard, *, event_id: str, queue: str, text: str | None,
                       author: str, at: datetime, source: str) -> None:
        """Move the conversation to `queue`, whose team is handed it; Refusal when it cannot move there."""
        ...

    async def receipt(self, receipt: DeliveryReceipt) -> None:
        """A receipt for a reply, shown back in the agent's tool (e.g. refused: closed)."""
        ...

    async def hold(self, key: str, message: InboundMessage, *, after: timedelta,
                   replace: bool = True) -> HoldState:
        """Keep `message` under `key`, accepted `after` from now unless held anew or settled first.

        A key already settled or released is left as it is, and so is one already held
        when `replace` is false. Returns the key's state before.
        """
        ...

    async def holding(self, key: str) -> InboundMessage | None:
        """What `key` holds while it waits, to carry into the final message; None when new or final."""
        ...

    async def settle(self, key: str, message: InboundMessage) -> HoldState:
        """Accept `message` now in place of what `key` holds; returns the key's state before.

        A key already settled or released is left as it is, and nothing is accepted.
        """
        ...
