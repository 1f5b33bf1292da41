"""Benchmark of the web chat: message → routed, reply → visible in the socket, idle sockets' memory.

One `switchboard run` (edge and every stage) on its own topics. Visitors' sockets send
messages stamped with their send time; latency is to the routed event on Kafka. Replies
go through the chat sender exactly as a worker's send stage calls it (append to the log
in Redis, notice on pub/sub); latency is to the frame arriving in the visitor's socket.
Then 1,000 sockets are opened and left idle; the edge process's resident memory is read
before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from bench.pipeline import Collector, percentile, process
from bench.topics import delete_run
from bench.x import _ready
from connectors.chat import ChatOutbound, ChatSettings
from router.settings import load
from schemas.identity import Identity
from schemas.outbound import OutboundMessage
from schemas.topics import ROUTED
from tests.processes import free_port

__all__ = ["main"]

_STAMP = re.compile(rb"bench-t0=([0-9.]+)")
KEY = "bench-reply-token-key-not-secret"


def _stamp(value: bytes) -> float:
    found = _STAMP.search(value)
    return float(found.group(1)) if found else float("nan")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _visit(http: aiohttp.ClientSession, url: str) -> tuple[aiohttp.ClientWebSocketResponse, str]:
    ws = await http.ws_connect(url, max_msg_size=0)
    await ws.send_str(json.dumps({"type": "hello"}))
    while True:
        frame = json.loads((await ws.receive()).data)
        if frame["type"] == "welcome":
            return ws, str(frame["session"])


async def _until_frame(ws: aiohttp.ClientWebSocketResponse, text: str) -> float:
    while True:
        frame = json.loads((await ws.receive()).data)
        if frame.get("type") == "message" and frame.get("text") == text:
            return time.time()


async def run(args: argparse.Namespace) -> dict[str, object]:
    """Messages, replies and idle sockets against one edge; the numbers."""
    settings = load()
    prefix, port = f"bench-chat-{uuid.uuid4().hex[:6]}-", free_port()
    section = {"messages_per_minute": 100_000, "sessions_per_ip_per_hour": 100_000}
    env = {"SB_REPLY_TOKEN_KEY": KEY, **os.environ, "SB_TOPIC_PREFIX": prefix, "SB_APP_ID": f"{prefix}sb",
           "SB_HTTP_PORT": str(port), "SB_LOG_LEVEL": "WARNING", "SB_CHAT": json.dumps(section)}
    url = f"http://127.0.0.1:{port}/v1/chat/socket"
    chat = ChatSettings.model_validate({**section, "token_key": KEY, "namespace": f"{prefix}sb",
                                        "redis_url": settings.redis_dsn, "log_ttl_seconds": 3600})
    sender = ChatOutbound(chat)
    result: dict[str, object] = {}
    try:
        with process([sys.executable, "-m", "router.cli", "run"], env) as proc:
            await _ready(port)
            routed = Collector(settings, f"{prefix}{ROUTED.name}", _stamp)
            await routed.start()
            await sender.start()
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
                visitors = [await _visit(http, url) for _ in range(args.visitors)]
                # routed: one message per visitor per round (a new conversation each, then follow-ups)
                sent = 0
                for round_ in range(args.rounds):
                    for i, (ws, _) in enumerate(visitors):
                        await ws.send_str(json.dumps({"type": "message", "id": f"r{round_}v{i}",
                                                      "text": f"bench-t0={time.time():.6f} parcel {i}"}))
                        sent += 1
                    await asyncio.sleep(args.pause)
                if not await routed.wait_for(sent, 120):
                    raise SystemExit(f"only {len(routed.latencies)} of {sent} routed")
                # reply → visible: the sender appends, the edge pushes
                visible: list[float] = []
                for n in range(args.replies):
                    ws, session = visitors[n % len(visitors)]
                    text = f"reply {n}"
                    arrived = asyncio.create_task(_until_frame(ws, text))
                    t0 = time.time()
                    receipt = await sender.send(OutboundMessage(
                        reply_id=f"rep_bench{n}", conversation_id="con_0123456789abcdef0123", channel="chat",
                        recipient=Identity(kind="chat", value=session), kind="agent_reply", text=text,
                        created_at=datetime.now(UTC), in_reply_to=f"{session}:r0v0"))
                    assert receipt.status == "sent", receipt.reason
                    visible.append(await asyncio.wait_for(arrived, 30) - t0)
                # idle sockets: memory of the edge process
                before = _rss_kib(proc.pid)
                idle = [await _visit(http, url) for _ in range(args.idle)]
                await asyncio.sleep(2)  # let the process settle before reading its memory
                after = _rss_kib(proc.pid)
                for ws, _ in idle + visitors:
                    await ws.close()
            await routed.stop()
            result = {
                "routed": len(routed.latencies),
                "routed_p50_ms": round(percentile(routed.latencies, .5) * 1e3, 1),
                "routed_p95_ms": round(percentile(routed.latencies, .95) * 1e3, 1),
                "replies": len(visible), "visible_p50_ms": round(percentile(visible, .5) * 1e3, 1),
                "visible_p95_ms": round(percentile(visible, .95) * 1e3, 1),
                "idle_sockets": args.idle, "rss_before_mib": round(before / 1024, 1),
                "rss_after_mib": round(after / 1024, 1),
                "kib_per_socket": round((after - before) / max(args.idle, 1), 1)}
    finally:
        await sender.stop()
        await delete_run(settings, prefix)
    print(json.dumps(result, indent=2), flush=True)
    return result


def main() -> None:
    """Parse arguments and run the benchmark once."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--visitors", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between rounds")
    parser.add_argument("--replies", type=int, default=200)
    parser.add_argument("--idle", type=int, default=1000)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
