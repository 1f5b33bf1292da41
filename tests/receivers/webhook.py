"""A local webhook receiver: checks signatures, records deliveries, fails when told to.

It is a real aiohttp server on 127.0.0.1 (a free port), so the code under test makes real
HTTP requests. A request with a bad signature is refused with 401 and not recorded.
Tests steer it: `fail(n)` answers the next n requests with an error, `go_down()` answers
every request with one until `come_up()`, `hold()` keeps requests waiting until
`release()`, and `meet(n)` keeps them waiting until n are in flight at once.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

from connectors.webhook.errors import SignatureError
from connectors.webhook.sign import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, verify

# a held request gives up after this long, so a test that forgot to release cannot hang
HOLD_LIMIT_SECONDS = 30.0


@dataclass(frozen=True)
class Received:
    """One accepted delivery."""

    delivery_id: str
    event: str
    body: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


class WebhookReceiver:
    """Accepts signed POSTs on `url`; see the module docstring for how to steer it."""

    def __init__(self, secret: bytes, *, tolerance: float = 300.0) -> None:
        self.secret = secret
        self.tolerance = tolerance
        self.deliveries: list[Received] = []
        self.requests: list[float] = []  # when each request arrived, whatever its answer
        self.rejected: list[str] = []  # why each bad signature was refused
        self.in_flight = 0
        self.max_in_flight = 0
        self.url = ""
        self._failures = 0
        self._status = 500
        self._retry_after: str | None = None
        self._down = False
        self._open = asyncio.Event()
        self._open.set()
        self._quorum = 0
        self._runner: web.AppRunner | None = None

    def fail(self, times: int, status: int = 500, retry_after: str | None = None) -> None:
        """Answer the next `times` requests with `status` (and a Retry-After, if given)."""
        self._failures, self._status, self._retry_after = times, status, retry_after

    def go_down(self, status: int = 500) -> None:
        """Answer every request with `status` until `come_up()`."""
        self._down, self._status = True, status

    def come_up(self) -> None:
        """Accept requests again."""
        self._down, self._failures = False, 0

    def hold(self) -> None:
        """Keep requests waiting (after their signature is checked) until `release()`."""
        self._open.clear()

    def release(self) -> None:
        """Let held requests go on."""
        self._open.set()

    def meet(self, n: int) -> None:
        """Hold requests until `n` of them are in flight at once."""
        self._quorum = n
        self._open.clear()

    @property
    def delivery_ids(self) -> list[str]:
        """The delivery id of every accepted delivery, in order."""
        return [d.delivery_id for d in self.deliveries]

    async def start(self) -> None:
        """Listen on a free local port."""
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/hook"

    async def stop(self) -> None:
        """Stop listening."""
        self.release()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> WebhookReceiver:
        await self.start()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        await self.stop()

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append(time.monotonic())
        body = await request.read()
        if self._down or self._failures > 0:
            self._failures = max(0, self._failures - 1)
            headers = {"Retry-After": self._retry_after} if self._retry_after else None
            return web.Response(status=self._status, text="unavailable", headers=headers)
        try:
            verify(self.secret, request.headers.get(SIGNATURE_HEADER, ""), body, time.time(),
                   self.tolerance)
        except SignatureError as e:
            self.rejected.append(e.reason)
            return web.json_response({"error": e.reason}, status=401)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self._quorum and self.in_flight >= self._quorum:
                self._open.set()
            await asyncio.wait_for(self._open.wait(), HOLD_LIMIT_SECONDS)
        finally:
            self.in_flight -= 1
        self.deliveries.append(Received(request.headers[DELIVERY_HEADER], request.headers[EVENT_HEADER],
                                        json.loads(body)))
        return web.json_response({"ok": True})
