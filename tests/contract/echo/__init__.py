"""A do-nothing channel: the smallest package the connector contract accepts.

It exists to prove the seam: registering it (one line) is all it takes for the settings,
the policy, the HTTP server and the contract suite to know it. Its native form is a line
of text, `sender: text`; it is pushed to over HTTP and sends nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from connectors.routes import Edge, Refusal, Route
from connectors.spec import ConnectorSpec
from schemas.errors import ParseError
from schemas.identity import parse_sender
from schemas.ids import inbound_event_id
from schemas.inbound import InboundMessage

__all__ = ["SPEC"]


class EchoSettings(BaseModel):
    """Where the echo channel listens; nothing else."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    path: str = "/v1/echo"


def parse(raw: bytes) -> InboundMessage:
    """`sender: text` → a message; anything else is a ParseError."""
    try:
        line = raw.decode("utf-8").strip()
    except UnicodeDecodeError as e:
        raise ParseError("not UTF-8") from e
    sender, sep, text = line.partition(":")
    if not sep or not text.strip() or len(line) > 1000:
        raise ParseError("expected one line 'sender: text' of at most 1000 characters")
    return InboundMessage(event_id=inbound_event_id("echo", line), channel="echo", native_id=line,
                          thread_key=sender.strip(), sender=parse_sender(sender.strip()),
                          received_at=datetime.now(UTC), text=text.strip())


def routes(settings: EchoSettings, edge: Edge) -> Sequence[Route]:
    """One POST route taking a line, behind an API token."""

    async def post(request: web.Request) -> web.Response:
        edge.caller(request, "messages:write")
        try:
            message = parse(await request.read())
        except ParseError as e:
            raise Refusal(422, "invalid", e.reason) from e
        await edge.accept(message)
        return web.json_response({"event_id": message.event_id}, status=202)

    return (Route("POST", settings.path, post),)


SPEC = ConnectorSpec(name="echo", settings=EchoSettings, on_by_default=True,
                     routes=routes, parse=parse)
