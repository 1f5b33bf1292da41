"""A request's deadline: a body trickled in to hold a connection is answered 408, promptly."""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web
from aiohttp.test_utils import TestServer

from connectors.routes import Route
from router.http.server import build_app
from router.settings import Settings

DEADLINE = 0.5


async def echo(request: web.Request) -> web.Response:
    return web.json_response({"bytes": len(await request.read())})


async def test_a_trickled_body_is_cut_off_at_the_deadline() -> None:
    app = build_app(Settings(http_request_seconds=DEADLINE), {}, [Route("POST", "/echo", echo)])
    async with TestServer(app) as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"a\":")
        await writer.drain()
        started = time.monotonic()
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            body = json.loads(await reader.readexactly(length))
        writer.close()
        assert head.startswith(b"HTTP/1.1 408")
        assert body["error"]["code"] == "request_timeout"
        assert time.monotonic() - started < DEADLINE + 5


async def test_a_prompt_request_is_untouched() -> None:
    app = build_app(Settings(http_request_seconds=DEADLINE), {}, [Route("POST", "/echo", echo)])
    async with TestServer(app) as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.read()
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"bytes": 2}')
