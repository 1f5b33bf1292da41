"""`POST /v1/messages`: a customer message from an integration, onto the inbound topic.

The bearer token is checked first (scope `messages:write`), then the content type, then
the body is parsed (parse.py); what Kafka will not take now is a 503 the caller retries.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import msgspec
from aiohttp import web

from connectors.api.errors import ApiInputError
from connectors.api.parse import parse
from connectors.api.settings import ApiSettings
from connectors.routes import Edge, Refusal, Route
from schemas.inbound import InboundMessage

__all__ = ["PATH", "routes"]

log = logging.getLogger(__name__)
PATH = "/v1/messages"
SCOPE = "messages:write"


def routes(settings: ApiSettings, edge: Edge) -> Sequence[Route]:
    """The API channel's one route."""

    async def post_message(request: web.Request) -> web.Response:
        caller = edge.caller(request, SCOPE)
        if request.content_type != "application/json":
            raise Refusal(415, "unsupported_media_type",
                          f"Content-Type must be application/json, not {request.content_type!r}")
        try:
            message = parse(await request.read())
        except ApiInputError as e:
            raise Refusal(400 if e.code == "bad_json" else 422, e.code, e.reason, field=e.field) from e
        await edge.accept(message)
        log.info("accepted", extra={"event_id": message.event_id, "channel": message.channel,
                                    "integration": caller})
        return web.json_response(_accepted(message), status=202)

    return (Route("POST", PATH, post_message),)


def _accepted(message: InboundMessage) -> dict[str, Any]:
    return {"event_id": message.event_id, "channel": message.channel,
            "thread_key": message.thread_key, "sender": msgspec.to_builtins(message.sender)}
