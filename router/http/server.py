"""The router's HTTP server: message intake, health, readiness and metrics."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from connectors.api.errors import ApiInputError
from connectors.api.parse import parse as parse_api
from processors.metrics import MESSAGES_IN
from router.http.errors import error, json_errors, unavailable
from router.http.integrations import Denied, Integrations
from router.settings import Settings
from schemas.codec import encode
from schemas.errors import TransientError
from schemas.inbound import InboundMessage
from schemas.topics import INBOUND

__all__ = ["Check", "Publisher", "build_app", "serve"]

log = logging.getLogger(__name__)
Publisher = Callable[[str, bytes, bytes], Awaitable[None]]
Check = Callable[[], Awaitable[tuple[bool, str]]]

def _scope_of(denied: Denied) -> dict[str, Any]:
    """The missing scope, for a 403's body; nothing for a 401."""
    return {"scope": denied.scope} if denied.scope else {}


class Handlers:
    """The request handlers, bound to a publisher and the readiness checks."""

    def __init__(self, settings: Settings, publish: Publisher, checks: dict[str, Check]) -> None:
        self._settings = settings
        self._publish = publish
        self._checks = checks
        self._tokens = Integrations.from_settings(settings)
        self._inbound = settings.topic(INBOUND)

    async def post_message(self, request: web.Request) -> web.Response:
        """Accept one customer message from the API channel and put it on Kafka."""
        try:
            caller = self._tokens.authorize(request.headers, "messages:write")
        except Denied as e:
            return error(e.status, e.code, e.message, **_scope_of(e))
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            limit = self._settings.max_body_bytes
            return error(413, "too_large", f"body is larger than {limit} bytes", limit=limit)
        try:
            message = parse_api(raw)
        except ApiInputError as e:
            status = 400 if e.code == "bad_json" else 422
            return error(status, e.code, e.reason, field=e.field)
        try:
            await self._publish(self._inbound, message.thread_key.encode(), encode(message))
        except TransientError as e:
            log.warning("publish failed", extra={"event_id": message.event_id, "reason": e.reason})
            return unavailable("could not hand the message to Kafka; retry")
        MESSAGES_IN.labels("api", "api").inc()
        log.info("accepted", extra={"event_id": message.event_id, "channel": "api",
                                    "integration": caller.name})
        return web.json_response(_accepted(message), status=202)

    async def healthz(self, _: web.Request) -> web.Response:
        """The process is up and serving."""
        return web.json_response({"status": "ok"})

    async def readyz(self, _: web.Request) -> web.Response:
        """Every dependency answers: 200 when all do, 503 naming those that don't."""
        results = {}
        for name, check in self._checks.items():
            try:
                ok, detail = await check()
            except Exception as e:  # noqa: BLE001 - a failing check is the answer, not a crash
                ok, detail = False, repr(e)
            results[name] = {"ok": ok, "detail": detail}
        ready = all(r["ok"] for r in results.values())
        return web.json_response({"ready": ready, "checks": results}, status=200 if ready else 503)

    async def metrics(self, _: web.Request) -> web.Response:
        """Prometheus exposition of every metric in this process."""
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _accepted(message: InboundMessage) -> dict[str, Any]:
    return {"event_id": message.event_id, "channel": message.channel,
            "thread_key": message.thread_key,
            "sender": msgspec.to_builtins(message.sender)}


def build_app(settings: Settings, publish: Publisher | None,
              checks: dict[str, Check]) -> web.Application:
    """The aiohttp application; without a publisher it serves only health and metrics."""
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[json_errors])
    handlers = Handlers(settings, publish or _no_publisher, checks)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    app.router.add_get("/metrics", handlers.metrics)
    if publish is not None:
        app.router.add_post("/v1/messages", handlers.post_message)
    return app


async def _no_publisher(topic: str, key: bytes, value: bytes) -> None:
    raise TransientError("this process takes no messages")


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start serving `app` on host:port and return the runner that stops it."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    return runner
