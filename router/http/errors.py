"""The HTTP API's one error answer, for every route: JSON, a stable code, counted by code."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import Counter

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


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer aiohttp's own errors (404, 405, ...) in the same JSON shape as ours."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = e.reason.lower().replace(" ", "_")
        return error(e.status, code, f"{request.method} {request.path}: {e.reason}")
