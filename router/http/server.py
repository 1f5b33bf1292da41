"""The router's HTTP server: health, readiness, metrics, and every connector's routes.

Pushed channels and agents' tools declare their routes (connectors/routes.py); this
mounts those of every configured connector from the registry, never one by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from weakref import WeakSet

from aiohttp import WSCloseCode, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from connectors.registry import CHANNELS, TOOLS
from connectors.routes import OPEN_SOCKETS, Edge, Route
from connectors.spec import ConnectorSpec, ToolSpec
from router.http.errors import json_errors
from router.settings import Settings

__all__ = ["Check", "build_app", "connector_routes", "serve"]

log = logging.getLogger(__name__)
Check = Callable[[], Awaitable[tuple[bool, str]]]


class Health:
    """Liveness, readiness and metrics, bound to the readiness checks."""

    def __init__(self, checks: dict[str, Check]) -> None:
        self._checks = checks

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


def connector_routes(settings: Settings, edge: Edge) -> list[Route]:
    """The routes of every configured channel and agents' tool, from the registries."""
    specs: list[ConnectorSpec[Any] | ToolSpec[Any, Any]] = [*CHANNELS.values(), *TOOLS.values()]
    found: list[Route] = []
    for spec in specs:
        section = settings.section(spec.section, spec.settings)
        if spec.routes is not None and section is not None:
            found += spec.routes(section, edge)
    return found


def build_app(settings: Settings, checks: dict[str, Check], routes: Iterable[Route] = ()) -> web.Application:
    """The aiohttp application: health and metrics, plus `routes`."""
    app = web.Application(client_max_size=settings.max_body_bytes,
                          middlewares=[json_errors(settings.http_request_seconds)])
    health = Health(checks)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", health.metrics)
    for route in routes:
        app.router.add_route(route.method, route.path, route.handler)
    app[OPEN_SOCKETS] = WeakSet()
    app.on_shutdown.append(_close_sockets)
    return app


async def _close_sockets(app: web.Application) -> None:
    """Close every WebSocket still open, so stopping does not wait for visitors to leave."""
    sockets: WeakSet[web.WebSocketResponse] = app[OPEN_SOCKETS]
    for ws in list(sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server stopping")


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start serving `app` on host:port and return the runner that stops it."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    return runner
