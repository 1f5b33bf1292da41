"""The live dashboard: a static page, its snapshot as JSON and as server-sent events.

    GET /dashboard                  the page (HTML, JS, CSS from router/dashboard/static; no data)
    GET /dashboard/{file}           its script and style sheet
    GET /v1/dashboard               dashboard:read   the snapshot (router/dashboard/view.py)
    GET /v1/dashboard/events        dashboard:read   `event: snapshot` on every change, and every second
The page carries no data, so it is served to anyone; the data needs a token with the
`dashboard:read` scope, sent by the page as a bearer header (fetch, not EventSource,
which cannot send one). A stream ends before the request deadline (SB_HTTP_REQUEST_SECONDS)
and the page reconnects at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisClusterException, RedisError

from connectors.registry import CHANNELS
from processors.policy.model import Policy
from router.dashboard.board import Board
from router.dashboard.connectors import MetricReader
from router.dashboard.feed import Feed
from router.dashboard.view import snapshot
from router.http.errors import error
from router.http.integrations import Denied, Integrations
from router.settings import Settings

__all__ = ["STATIC", "Dashboard", "account_names", "add_routes", "policy_zone"]

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent.parent / "dashboard" / "static"
_FILES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
Clock = Callable[[], datetime]
# viewers within this long of each other share one snapshot
_SHARED_SECONDS = 0.2


def account_names(sections: Mapping[str, object]) -> dict[str, str]:
    """`channel:@handle` for `channel:<account id>` of every configured channel whose settings name both.

    Read by name, like the extras' `account`: a channel that has a numeric account and a
    handle (X) is shown by its handle, with no code per channel.
    """
    names = {}
    for channel, section in sections.items():
        account, handle = getattr(section, "account_id", None), getattr(section, "handle", None)
        if isinstance(account, str) and account and isinstance(handle, str) and handle:
            names[f"{channel}:{account}"] = f"{channel}:@{handle}"
    return names


def policy_zone(policy: Policy) -> Any:
    """The policy's timezone: that of its default queue's calendar."""
    calendar = policy.calendars.get(policy.queues[policy.default_queue].calendar)
    return calendar.timezone if calendar is not None else UTC


class Dashboard:
    """The board, the feed that fills it and the HTTP handlers that read it; no I/O until started."""

    def __init__(self, settings: Settings, redis: Callable[[], Redis], policy: Callable[[], Policy],
                 access: Integrations, clock: Clock = lambda: datetime.now(UTC)) -> None:
        self._settings = settings
        self._redis = redis
        self._policy = policy
        self._access = access
        self._clock = clock
        self.board = Board(zone=policy_zone(policy()))
        self.feed = Feed(settings, self.board, clock, timedelta(seconds=settings.dashboard_lookback_seconds))
        self._metrics = MetricReader()
        self._backlog_key = f"{settings.topic_prefix}sb:backlog"
        sections = {name: settings.section(spec.section, spec.settings) for name, spec in CHANNELS.items()}
        self._channels = [name for name, section in sections.items() if section is not None]
        self._account_names = account_names(sections)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._cached: tuple[float, dict[str, Any]] | None = None
        # a stream ends before the request deadline cuts it; the page reconnects
        self.stream_seconds = max(1.0, settings.http_request_seconds - 2.0)

    async def start(self, _: web.Application) -> None:
        """Start following the topics."""
        self._task = asyncio.create_task(self.feed.run(), name="dashboard-feed")

    async def shutdown(self, _: web.Application) -> None:
        """End the open streams within a second: stopping never waits for a viewer to leave."""
        self._stopping = True

    async def stop(self, _: web.Application) -> None:
        """Stop following."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # a feed stuck in a Kafka call must not hold up the edge's stop: it reads, never writes
            await asyncio.wait({task}, timeout=5.0)

    async def current(self) -> dict[str, Any]:
        """The snapshot now, shared by every viewer for a moment: a big board takes a while to read."""
        at = asyncio.get_running_loop().time()
        if self._cached is not None and at - self._cached[0] < _SHARED_SECONDS:
            return self._cached[1]
        view = await self._build()
        self._cached = (at, view)
        return view

    async def _build(self) -> dict[str, Any]:
        """The board, the queues' backlogs from Redis, the connectors' metrics."""
        now = self._clock()
        self.board.zone = policy_zone(self._policy())  # a reloaded policy may move the day
        problems = []
        backlog: dict[str, int] = {}
        try:
            async with asyncio.timeout(2):
                raw = await self._redis().hgetall(self._backlog_key)
            backlog = {k.decode() if isinstance(k, bytes) else k: int(v) for k, v in raw.items()}
        except (RedisError, RedisClusterException, TimeoutError, OSError, ValueError) as e:
            log.warning("dashboard: backlog unavailable", extra={"error": repr(e)})
            problems.append("queue backlogs unavailable: Redis did not answer")
        if not self.feed.caught_up.is_set():
            problems.append("still reading the topics: counts are rising to their values")
        facts = self._metrics.read(self._channels, now)
        view = snapshot(self.board, now, backlog, facts, self._account_names)
        return {**view, "problems": problems}

    def _authorize(self, request: web.Request) -> web.Response | None:
        try:
            self._access.authorize(request.headers, "dashboard:read")
        except Denied as e:
            more: dict[str, Any] = {"scope": e.scope} if e.scope else {}
            return error(e.status, e.code, e.message, **more)
        return None

    async def page(self, _: web.Request) -> web.FileResponse:
        """The dashboard page."""
        return web.FileResponse(STATIC / "index.html", headers=_PAGE_HEADERS)

    async def asset(self, request: web.Request) -> web.FileResponse:
        """The page's script or style sheet; nothing else is served from the directory."""
        name = request.match_info["file"]
        if name not in _FILES:
            raise web.HTTPNotFound()
        return web.FileResponse(STATIC / name, headers={**_PAGE_HEADERS, "Content-Type": _FILES[name]})

    async def data(self, request: web.Request) -> web.Response:
        """The snapshot as JSON."""
        return self._authorize(request) or web.json_response(await self.current())

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Snapshots as server-sent events, until the stream's time is up."""
        refused = self._authorize(request)
        if refused is not None:
            return refused
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        await response.prepare(request)
        await response.write(b"retry: 1000\n\n")
        async for view in self._views(asyncio.get_running_loop().time() + self.stream_seconds):
            data = json.dumps(view, separators=(",", ":"))
            await response.write(f"event: snapshot\ndata: {data}\n\n".encode())
        return response

    async def _views(self, until: float) -> AsyncIterator[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        while (left := until - loop.time()) > 0 and not self._stopping:
            self.feed.changed.clear()
            yield await self.current()
            # at once when the feed applied something; at least every second, for the ages
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.feed.changed.wait(), min(1.0, left))
            # a busy feed changes the board many times a second: a page needs at most five
            await asyncio.sleep(min(0.2, max(0.0, until - loop.time())))


# the page runs only our own script and style, talks only to this server
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def add_routes(app: web.Application, dashboard: Dashboard) -> None:
    """Mount the page, its assets and the data routes; the feed runs while the app does."""
    app.router.add_get("/dashboard", dashboard.page)
    app.router.add_get("/dashboard/{file}", dashboard.asset)
    app.router.add_get("/v1/dashboard", dashboard.data)
    app.router.add_get("/v1/dashboard/events", dashboard.events)
    app.on_startup.append(dashboard.start)
    app.on_shutdown.append(dashboard.shutdown)
    app.on_cleanup.append(dashboard.stop)
