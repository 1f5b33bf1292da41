"""The HTTP API's one error answer, for every route: JSON, a stable code, counted by code."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import Counter

from connectors.routes import Refusal
from schemas.errors import TransientError

__all__ = ["REJECTED", "error", "json_errors", "unavailable"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REJECTED = Counter("sb_api_rejected_total", "Requests the HTTP API refused", ["code"])


def error(status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
          **more: Any) -> web.Response:
    """The API's one error answer, `{"error": {"code", "message", ...}}`, counted by code."""
    REJECTED.labels(code).inc()
    body = {"error": {"code": code, "message": message, **more}}
    return web.json_response(body, status=status, headers=headers)


def unavailable(message: str, **more: Any) -> web.Response:
    """503 with Retry-After: Kafka or Redis did not answer, the same request may be retried."""
    return error(503, "unavailable", message, headers={"Retry-After": "1"}, **more)


def json_errors(request_seconds: float) -> Middleware:
    """Every route's refusals, outages and aiohttp's own errors (404, 413, ...) as our one answer.

    Each request also has a deadline: a body trickled in to hold a connection (or any
    handler that overruns) is answered 408 and the connection freed.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        # a WebSocket lives as long as its visitor: its handler bounds its own waits
        socket = request.headers.get("Upgrade", "").lower() == "websocket"
        try:
            async with asyncio.timeout(None if socket else request_seconds) as deadline:
                return await handler(request)
        except TimeoutError:
            if not deadline.expired():
                raise
            return error(408, "request_timeout", f"the request took longer than {request_seconds:g}s")
        except Refusal as e:
            return error(e.status, e.code, e.message, **e.more)
        except TransientError as e:
            # the reasons Edge gives are written for callers: they name no host
            return unavailable(f"{e.reason}; retry")
        except web.HTTPRequestEntityTooLarge:
            limit = request.app._client_max_size
            return error(413, "too_large", f"body is larger than {limit} bytes", limit=limit)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            code = e.reason.lower().replace(" ", "_")
            return error(e.status, code, f"{request.method} {request.path}: {e.reason}")

    return middleware
