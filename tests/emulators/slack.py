"""A local Slack: the Web API methods Switchboard calls, and Events API requests as Slack sends them.

Web API (what slack-sdk's AsyncWebClient sends): `POST /api/<method>` with the token in
`Authorization: Bearer`, the arguments as a query string, a form or JSON. Every answer
is HTTP 200 with `{"ok": true, ...}` or `{"ok": false, "error": "<code>"}`, except rate
limiting: HTTP 429, `Retry-After: <seconds>`, `{"ok": false, "error": "ratelimited"}`.

Events API: a JSON envelope POSTed to the app's request URL, signed with the app's
signing secret (`X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:<ts>:<body>">`,
`X-Slack-Request-Timestamp`), retries marked with `X-Slack-Retry-Num`/`-Reason`. The
payload builders below follow the shapes of Slack's documented examples.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

TEAM_ID = "T0SWITCHB"
APP_ID = "A0SWITCHB"
BOT_ID = "B0SWITCHB"
BOT_USER = "U0SWITCHB"
AGENT = "U0AGENTMARIA"


@dataclass(frozen=True)
class Post:
    """One chat.postMessage the emulator took."""

    channel: str
    ts: str
    text: str | None
    blocks: list[dict[str, Any]]
    thread_ts: str | None
    args: dict[str, Any] = field(default_factory=dict)


class SlackEmulator:
    """Slack's Web API for one workspace: `channels` maps channel id → name."""

    def __init__(self, token: str = "xoxb-emulated-0001", channels: Mapping[str, str] | None = None) -> None:
        self.token = token
        self.channels = dict(channels or {"C0SUPPORT": "support"})
        self.posts: list[Post] = []
        self.calls: list[str] = []
        self._limited: list[int] = []
        self._failing: list[int] = []
        self._seq = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        """What slack-sdk's `base_url` should be."""
        return f"http://127.0.0.1:{self.port}/api/"

    def rate_limit(self, times: int = 1, retry_after: int = 1) -> None:
        """Answer the next `times` calls with 429 and this Retry-After."""
        self._limited += [retry_after] * times

    def fail(self, times: int = 1, status: int = 503) -> None:
        """Answer the next `times` calls with a bare HTTP error, as a load balancer would."""
        self._failing += [status] * times

    async def start(self) -> SlackEmulator:
        """Listen on a free loopback port."""
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _next_ts(self) -> str:
        # unique and increasing, in Slack's "<seconds>.<6 digits>" form
        return f"{int(time.time())}.{next(self._seq):06d}"

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        self.calls.append(method)
        if self._failing:
            return web.Response(status=self._failing.pop(0), text="upstream unavailable",
                                content_type="text/html")
        if self._limited:
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                     headers={"Retry-After": str(self._limited.pop(0))})
        args = await _arguments(request)
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        token = bearer or args.pop("token", "")
        if not token:
            return _fail("not_authed")
        if token != self.token:
            return _fail("invalid_auth")
        if method == "auth.test":
            return web.json_response({"ok": True, "url": "https://switchboard-test.slack.com/",
                                      "team": "Switchboard Test", "user": "switchboard",
                                      "team_id": TEAM_ID, "user_id": BOT_USER, "bot_id": BOT_ID,
                                      "is_enterprise_install": False})
        if method == "chat.postMessage":
            return self._post_message(args)
        return _fail("unknown_method")

    def _post_message(self, args: dict[str, Any]) -> web.Response:
        channel = self._channel_id(str(args.get("channel", "")))
        if channel is None:
            return _fail("channel_not_found")
        blocks = args.get("blocks") or []
        if isinstance(blocks, str):  # a form post carries them as JSON text
            blocks = json.loads(blocks)
        text = args.get("text")
        if not text and not blocks:
            return _fail("no_text")
        ts = self._next_ts()
        thread_ts = args.get("thread_ts") or None
        self.posts.append(Post(channel=channel, ts=ts, text=text, blocks=blocks, thread_ts=thread_ts,
                               args=args))
        message: dict[str, Any] = {"type": "message", "subtype": "bot_message", "text": text or "",
                                   "ts": ts, "user": BOT_USER, "bot_id": BOT_ID, "app_id": APP_ID,
                                   "team": TEAM_ID, "blocks": blocks}
        if thread_ts:
            message["thread_ts"] = thread_ts
            message["parent_user_id"] = BOT_USER
        return web.json_response({"ok": True, "channel": channel, "ts": ts, "message": message})

    def _channel_id(self, given: str) -> str | None:
        """Slack takes an id or a #name and always answers with the id."""
        if given in self.channels:
            return given
        name = given.removeprefix("#")
        return next((cid for cid, n in self.channels.items() if n == name), None)


def _fail(error: str) -> web.Response:
    return web.json_response({"ok": False, "error": error})


async def _arguments(request: web.Request) -> dict[str, Any]:
    args: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        args |= await request.json()
    elif request.can_read_body:
        args |= dict(await request.post())
    return args


# --- Events API payloads ---------------------------------------------------------------

def new_event_id() -> str:
    """A fresh id in Slack's form."""
    return "Ev" + secrets.token_hex(5).upper()


def envelope(event: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    """The event_callback wrapper Slack puts around every event."""
    return {
        "token": "legacy-verification-token",
        "team_id": TEAM_ID,
        "context_team_id": TEAM_ID,
        "api_app_id": APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or new_event_id(),
        "event_time": int(time.time()),
        "authorizations": [{"enterprise_id": None, "team_id": TEAM_ID, "user_id": BOT_USER,
                            "is_bot": True, "is_enterprise_install": False}],
        "is_ext_shared_channel": False,
        "event_context": "4-" + secrets.token_hex(16),
    }


def _rich_text(text: str) -> list[dict[str, Any]]:
    return [{"type": "rich_text", "block_id": secrets.token_hex(2),
             "elements": [{"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}]}]


def message(channel: str, text: str, *, ts: str | None = None, thread_ts: str | None = None,
            user: str = AGENT, **more: Any) -> dict[str, Any]:
    """A person's `message` event as the Events API delivers it; `more` adds or overrides fields."""
    ts = ts or f"{time.time():.6f}"
    event: dict[str, Any] = {
        "user": user, "type": "message", "ts": ts, "client_msg_id": secrets.token_hex(16),
        "text": text, "team": TEAM_ID, "blocks": _rich_text(text), "channel": channel,
        "event_ts": ts, "channel_type": "channel",
    }
    if thread_ts:
        event |= {"thread_ts": thread_ts, "parent_user_id": BOT_USER}
    return event | more


def thread_reply(channel: str, thread_ts: str, text: str, *, user: str = AGENT, ts: str | None = None,
                 event_id: str | None = None) -> dict[str, Any]:
    """An agent's answer in a thread, wrapped as Slack sends it."""
    return envelope(message(channel, text, ts=ts, thread_ts=thread_ts, user=user), event_id=event_id)


def bot_message(channel: str, text: str, thread_ts: str | None = None) -> dict[str, Any]:
    """Our own post coming back as an event: it carries bot_id (and sometimes a subtype)."""
    event = message(channel, text, thread_ts=thread_ts, user=BOT_USER, bot_id=BOT_ID, app_id=APP_ID,
                    bot_profile={"id": BOT_ID, "app_id": APP_ID, "name": "Switchboard"})
    event.pop("client_msg_id")
    return envelope(event)


def edited(channel: str, thread_ts: str, ts: str, text: str) -> dict[str, Any]:
    """A message_changed event: the new message nested, the outer event has no user."""
    now = f"{time.time():.6f}"
    inner = message(channel, text, ts=ts, thread_ts=thread_ts) | {"edited": {"user": AGENT, "ts": now}}
    inner.pop("channel")
    return envelope({"type": "message", "subtype": "message_changed", "message": inner,
                     "previous_message": inner | {"text": "before"}, "channel": channel, "hidden": True,
                     "ts": now, "event_ts": now, "channel_type": "channel"})


def url_verification(challenge: str) -> dict[str, Any]:
    """Slack checking the request URL."""
    return {"token": "legacy-verification-token", "challenge": challenge, "type": "url_verification"}


def signed_headers(secret: str, body: bytes, *, timestamp: int | None = None,
                   retry_num: int | None = None, retry_reason: str = "http_timeout") -> dict[str, str]:
    """The headers Slack sends with a body: its signature, and the retry marks on a retry."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
               "X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}
    if retry_num is not None:
        headers |= {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": retry_reason}
    return headers


async def send_event(session: aiohttp.ClientSession, url: str, secret: str, payload: dict[str, Any], *,
                     retry_num: int | None = None, timestamp: int | None = None,
                     tamper: bool = False) -> tuple[int, Any]:
    """POST a payload the way Slack does; returns the status and the JSON answer."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = signed_headers(secret, body, timestamp=timestamp, retry_num=retry_num)
    if tamper:  # signed, then changed on the way
        body = body.replace(b'"text":"', b'"text":"(changed) ', 1)
    async with session.post(url, data=body, headers=headers) as response:
        return response.status, await response.json()
