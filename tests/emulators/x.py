"""A local X API v2 and X Activity API: what tweepy's AsyncClient calls, and webhooks as X sends them.

API v2 (shapes of tweepy's recorded cassettes and X's OpenAPI, tests/fixtures/x/): JSON
`{"data": ..., "includes": ..., "meta": ..., "errors": [...]}`, ids as strings, times as
`2026-03-02T10:00:00.000Z`, every answer with `x-rate-limit-limit/-remaining/-reset`, post
and DM creation also with `x-user-limit-24hour-*` and `x-app-limit-24hour-*`. Errors are
problem objects (`title`, `detail`, `type`, `status`): 429 `Too Many Requests`, 429
`UsageCapExceeded` (`type` `…/problems/usage-capped`), 403 duplicate content, 403 reply not
allowed (the author did not mention us), 403 DM refused (code 349). Requests must carry
OAuth 1.0a (HMAC-SHA1, RFC 5849) signed for `https://api.twitter.com` with our keys, as X
checks them; a bearer token may read mentions.

The Activity API side: `envelope()` builds a delivery (`data.event_uuid`, `event_type`,
`filter`, `payload`, `includes`), `deliver()` POSTs it signed with
`x-twitter-webhooks-signature`, `crc()` runs X's CRC check against a webhook URL.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from oauthlib.oauth1 import Client as OAuthClient
from oauthlib.oauth1.rfc5849 import signature as oauth_signature
from oauthlib.oauth1.rfc5849 import utils as oauth_utils

ACCOUNT = "1072250532645998596"  # TweepyDev, as tests/fixtures/x/cassettes/test_client_get_me.yaml has it
HANDLE = "TweepyDev"
ADA = "750362064426721281"  # the other side of the recorded DM conversation
_TWEPOCH_MS = 1288834974657
# the REST answers keep the recorded (2022) names; the Activity API sends today's Post
_POST_NAMES = {"referenced_tweets": "referenced_posts", "edit_history_tweet_ids": "edit_history_post_ids"}
DUPLICATE = "You are not allowed to create a Tweet with duplicate content."
NOT_SUMMONED = ("Reply to this conversation is not allowed because you have not been mentioned or "
                "otherwise engaged by the author of the post you are replying to.")
DM_CLOSED = "You cannot send messages to this user."


def x_time(at: float) -> str:
    """X's timestamp form: milliseconds always `.000`-style, `Z` for UTC."""
    moment = datetime.fromtimestamp(at, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class Sent:
    """One post or DM our account made through the API."""

    kind: str  # "post" or "dm"
    id: str
    text: str
    in_reply_to: str | None = None
    recipient: str | None = None
    deep_link: str | None = None


@dataclass
class Window:
    """One endpoint's limit as the emulator enforces it: calls left in the window, and the day's."""

    limit: int
    remaining: int
    reset: int
    day_limit: int | None = None
    day_remaining: int | None = None
    day_reset: int = 0
    seconds: int = 900


@dataclass
class XEmulator:
    """X for one account: customers post and DM (`mention`, `dm`), our client answers."""

    consumer_key: str = "emulated-consumer-key"
    consumer_secret: str = "emulated-consumer-secret"
    access_token: str = f"{ACCOUNT}-emulatedaccesstoken"
    access_token_secret: str = "emulated-access-secret"
    account: str = ACCOUNT
    handle: str = HANDLE
    clock: Callable[[], float] = time.time
    users: dict[str, dict[str, str]] = field(default_factory=lambda: {
        ACCOUNT: {"id": ACCOUNT, "name": "Tweepy Testing", "username": HANDLE},
        ADA: {"id": ADA, "name": "Ada Lovelace", "username": "ada_x"}})
    posts: dict[str, dict[str, Any]] = field(default_factory=dict)
    dm_events: list[dict[str, Any]] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    dm_closed: set[str] = field(default_factory=set)
    # partial errors to add to the next mentions answer
    partial_errors: list[dict[str, Any]] = field(default_factory=list)
    # other accounts authorised in our app: access token → (its secret, user id)
    tokens: dict[str, tuple[str, str]] = field(default_factory=dict)
    # posts deleted by their authors
    deleted: list[str] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._seq = itertools.count(1)
        self._windows: dict[str, Window] = {}
        self._limited: dict[str, list[str]] = {}
        self._runner: web.AppRunner | None = None
        self._stalled: set[str] = set()
        self._release = asyncio.Event()

    def stall(self, endpoint: str) -> None:
        """Take calls to `endpoint` and never answer them (until `unstall` or stop): a lost answer."""
        self._stalled.add(endpoint)

    def unstall(self) -> None:
        """Answer normally again; calls still held are let go."""
        self._stalled.clear()
        self._release.set()
        self._release = asyncio.Event()

    # --- the customer's side ----------------------------------------------------------

    def new_id(self) -> str:
        """A snowflake id: milliseconds since X's epoch and a sequence, increasing."""
        return str((int(self.clock() * 1000) - _TWEPOCH_MS) << 22 | next(self._seq) % 4096)

    def mention(self, text: str, *, author: str = ADA, reply_to: str | None = None,
                mentions_us: bool = True, quotes: str | None = None) -> dict[str, Any]:
        """A customer's post (a mention when `mentions_us`), visible to polling; returns it."""
        post_id = self.new_id()
        parent = self.posts.get(reply_to or "")
        body = f"@{self.handle} {text}" if mentions_us else text
        post: dict[str, Any] = {
            "id": post_id, "edit_history_tweet_ids": [post_id], "text": body, "author_id": author,
            "conversation_id": parent["conversation_id"] if parent else post_id,
            "created_at": x_time(self.clock()), "lang": "en"}
        if mentions_us:
            post["entities"] = {"mentions": [{"start": 0, "end": len(self.handle) + 1,
                                              "username": self.handle, "id": self.account}]}
        if parent:
            post["in_reply_to_user_id"] = parent["author_id"]
            post["referenced_tweets"] = [{"type": "replied_to", "id": parent["id"]}]
        if quotes:
            post["referenced_tweets"] = [*post.get("referenced_tweets", []), {"type": "quoted", "id": quotes}]
        self.posts[post_id] = post
        return post

    def user(self, user_id: str, username: str) -> tuple[str, str]:
        """Another account that may post through the API; returns its access token and secret."""
        self.users[user_id] = {"id": user_id, "name": username, "username": username}
        token, secret = f"{user_id}-{secrets.token_hex(8)}", secrets.token_hex(16)
        self.tokens[token] = (secret, user_id)
        return token, secret

    def dm(self, text: str, *, sender: str = ADA) -> dict[str, Any]:
        """A customer's DM to our account, visible to polling; returns the DM event."""
        event = {"id": self.new_id(), "event_type": "MessageCreate", "text": text, "sender_id": sender,
                 "dm_conversation_id": self._conversation(sender), "created_at": x_time(self.clock()),
                 "participant_ids": [sender, self.account]}
        self.dm_events.append(event)
        return event

    def envelope(self, event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
        """An X Activity API delivery of `payload` for our account, in the 2026 `Post` names."""
        author = payload.get("author_id") or payload.get("sender_id")
        payload = {_POST_NAMES.get(k, k): v for k, v in payload.items()}
        users = [self.users[u] for u in (author, self.account) if u in self.users]
        return {"data": {"event_type": event_type, "event_uuid": self.new_id(),
                         "filter": {"user_id": self.account}, "tag": "switchboard",
                         "payload": payload, "includes": {"users": users}}}

    def signature(self, body: bytes) -> str:
        """`sha256=` + base64 HMAC-SHA256 of `body` under the consumer secret, as X signs."""
        digest = hmac.new(self.consumer_secret.encode(), body, hashlib.sha256).digest()
        return "sha256=" + base64.b64encode(digest).decode()

    async def deliver(self, url: str, envelope: dict[str, Any], *,
                      signature: str | None = None) -> tuple[int, dict[str, Any]]:
        """POST a delivery to a webhook as X does; returns the status and JSON answer."""
        body = json.dumps(envelope, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json",
                   "x-twitter-webhooks-signature": signature or self.signature(body)}
        async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as r:
            return r.status, await r.json()

    async def crc(self, url: str) -> bool:
        """X's CRC check: GET with a fresh crc_token, true when the answer is right."""
        token = secrets.token_urlsafe(24)
        async with aiohttp.ClientSession() as session, session.get(url, params={"crc_token": token}) as r:
            if r.status != 200:
                return False
            answer = await r.json()
        return bool(answer.get("response_token") == self.signature(token.encode()))

    # --- limits -----------------------------------------------------------------------

    def limit(self, endpoint: str, calls: int, *, per_day: int | None = None, reset_in: int = 900,
              day_reset_in: int = 86_400) -> None:
        """Give `endpoint` ("mentions", "dm_events", "post", "dm_send") `calls` per `reset_in` seconds,
        and `per_day` calls until the day resets in `day_reset_in` seconds (X's is a rolling day)."""
        now = int(self.clock())
        self._windows[endpoint] = Window(calls, calls, now + reset_in, per_day, per_day, now + day_reset_in,
                                         seconds=reset_in)

    def usage_cap(self, endpoint: str) -> None:
        """The next call to `endpoint` answers 429 UsageCapExceeded."""
        self._limited.setdefault(endpoint, []).append("usage-capped")

    def _take(self, endpoint: str) -> tuple[web.Response | None, dict[str, str]]:
        """Count one call: its rate headers, and the 429 answer when it is over a limit."""
        now = int(self.clock())
        window = self._windows.setdefault(endpoint, Window(450, 450, now + 900))
        if now >= window.reset:
            window.remaining, window.reset = window.limit, now + window.seconds
        if window.day_limit is not None and now >= window.day_reset:
            window.day_remaining, window.day_reset = window.day_limit, now + 86_400
        headers = {"x-rate-limit-limit": str(window.limit), "x-rate-limit-reset": str(window.reset)}
        if window.day_limit is not None:
            headers |= {"x-user-limit-24hour-limit": str(window.day_limit),
                        "x-user-limit-24hour-reset": str(window.day_reset),
                        "x-app-limit-24hour-limit": str(window.day_limit * 100),
                        "x-app-limit-24hour-reset": str(window.day_reset)}
        if self._limited.get(endpoint):
            self._limited[endpoint].pop(0)
            headers["x-rate-limit-remaining"] = str(window.remaining)
            return _problem(429, "UsageCapExceeded", "Usage cap exceeded: Monthly product cap",
                            "https://api.twitter.com/2/problems/usage-capped", headers,
                            period="Monthly", scope="Product"), headers
        day_out = window.day_remaining is not None and window.day_remaining <= 0
        if window.remaining <= 0 or day_out:
            headers["x-rate-limit-remaining"] = str(max(window.remaining, 0))
            if window.day_limit is not None:
                headers["x-user-limit-24hour-remaining"] = "0" if day_out else str(window.day_remaining)
                headers["x-app-limit-24hour-remaining"] = str(window.day_limit * 100 - 1)
            return _problem(429, "Too Many Requests", "Too Many Requests", "about:blank", headers), headers
        window.remaining -= 1
        headers["x-rate-limit-remaining"] = str(window.remaining)
        if window.day_remaining is not None:
            window.day_remaining -= 1
            headers["x-user-limit-24hour-remaining"] = str(window.day_remaining)
            app_left = window.day_limit * 100 - 1 if window.day_limit else 0
            headers["x-app-limit-24hour-remaining"] = str(app_left)
        return None, headers

    # --- serving ----------------------------------------------------------------------

    async def start(self) -> XEmulator:
        """Listen on a free loopback port."""
        app = web.Application()
        app.router.add_get("/2/users/me", self._me)
        app.router.add_get("/2/users/{id}/mentions", self._mentions)
        app.router.add_get("/2/dm_events", self._dm_events)
        app.router.add_post("/2/tweets", self._create_post)
        app.router.add_delete("/2/tweets/{id}", self._delete_post)
        app.router.add_post("/2/dm_conversations/with/{participant}/messages", self._send_dm)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        """Stop listening."""
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        """Where a client reaches this emulator instead of https://api.twitter.com."""
        return f"http://127.0.0.1:{self.port}"

    def _authorised(self, request: web.Request, *, user: bool) -> web.Response | None:
        """OAuth 1.0a user context for writes and DMs, its HMAC-SHA1 signature checked; else a 401."""
        auth = request.headers.get("Authorization", "")
        ok = auth.startswith("Bearer ") and not user
        if auth.startswith("OAuth "):
            ok = self._signed(request, auth) is not None
        if ok:
            return None
        return _problem(401, "Unauthorized", "Unauthorized", "about:blank", {})

    def _author(self, request: web.Request) -> str:
        """The user an authorised request acts as: ours, or another account's by its token."""
        auth = request.headers.get("Authorization", "")
        return (self._signed(request, auth) if auth.startswith("OAuth ") else None) or self.account

    def _signed(self, request: web.Request, auth: str) -> str | None:
        """The user whose OAuth 1.0a header signs this request as X checks it (RFC 5849), or None."""
        given = dict(oauth_utils.parse_authorization_header(auth))
        token = given.get("oauth_token") or ""
        secret, user = ((self.access_token_secret, self.account) if token == self.access_token
                        else self.tokens.get(token, ("", "")))
        if given.get("oauth_consumer_key") != self.consumer_key or not user:
            return None
        # the client signed the URL as it is on X, whatever host it was sent to
        params = oauth_signature.collect_parameters(uri_query=request.query_string,
                                                    headers={"Authorization": auth})
        base = oauth_signature.signature_base_string(
            request.method, oauth_signature.base_string_uri(f"https://api.twitter.com{request.path}"),
            oauth_signature.normalize_parameters(params))
        ours = OAuthClient(self.consumer_key, client_secret=self.consumer_secret,
                           resource_owner_key=token, resource_owner_secret=secret)
        expected = oauth_signature.sign_hmac_sha1_with_client(base, ours)
        good = hmac.compare_digest(expected, oauth_utils.unescape(given.get("oauth_signature", "")))
        return user if good else None

    async def _me(self, request: web.Request) -> web.Response:
        self.calls.append("me")
        refused = self._authorised(request, user=True)
        if refused is not None:
            return refused
        return _json({"data": self.users[self.account]}, 200, self._take("me")[1])

    async def _mentions(self, request: web.Request) -> web.Response:
        self.calls.append("mentions")
        refused = self._authorised(request, user=False)
        if refused is not None:
            return refused
        limited, headers = self._take("mentions")
        if limited is not None:
            return limited
        if "mentions" in self._stalled:
            await self._release.wait()
        since = int(request.query.get("since_id", "0"))
        start = _parse_time(request.query.get("start_time", "1970-01-01T00:00:00Z"))
        found = [p for p in self.posts.values()
                 if p["author_id"] != self.account and int(p["id"]) > since
                 and _parse_time(p["created_at"]) >= start
                 and any(m.get("id") == request.match_info["id"]
                         for m in p.get("entities", {}).get("mentions", []))]
        found.sort(key=lambda p: int(p["id"]), reverse=True)
        found = found[: int(request.query.get("max_results", "10"))]
        answer: dict[str, Any] = {"meta": {"result_count": len(found)}}
        if found:
            answer["data"] = found
            answer["includes"] = {"users": self._users_of(p["author_id"] for p in found)}
            answer["meta"] |= {"newest_id": found[0]["id"], "oldest_id": found[-1]["id"]}
        if self.partial_errors:
            answer["errors"], self.partial_errors = self.partial_errors, []
        return _json(answer, 200, headers)

    async def _dm_events(self, request: web.Request) -> web.Response:
        self.calls.append("dm_events")
        refused = self._authorised(request, user=True)
        if refused is not None:
            return refused
        limited, headers = self._take("dm_events")
        if limited is not None:
            return limited
        events = sorted(self.dm_events, key=lambda e: int(e["id"]), reverse=True)
        events = events[: int(request.query.get("max_results", "100"))]
        answer: dict[str, Any] = {"meta": {"result_count": len(events)}}
        if events:
            answer["data"] = events
            answer["includes"] = {"users": self._users_of(e["sender_id"] for e in events)}
        return _json(answer, 200, headers)

    async def _create_post(self, request: web.Request) -> web.Response:
        self.calls.append("post")
        refused = self._authorised(request, user=True)
        if refused is not None:
            return refused
        limited, headers = self._take("post")
        if limited is not None:
            return limited
        body = await request.json()
        if "post" in self._stalled:
            self.sent.append(Sent("post", self.new_id(), str(body.get("text", ""))))
            await self._release.wait()
        text = str(body.get("text", ""))
        author = self._author(request)
        if author != self.account:  # another account posts: to us, a customer's post
            post = self._by_other(author, text)
            return _json({"data": {"edit_history_tweet_ids": [post["id"]], "id": post["id"], "text": text}},
                         201, headers)
        reply_to = (body.get("reply") or {}).get("in_reply_to_tweet_id")
        if any(s.kind == "post" and s.text == text for s in self.sent):
            return _problem(403, "Forbidden", DUPLICATE, "about:blank", headers)
        if reply_to is not None:
            parent = self.posts.get(reply_to)
            if parent is None:
                return _problem(400, "Invalid Request", "One or more parameters to your request was invalid.",
                                "https://api.twitter.com/2/problems/invalid-request", headers)
            summoned = parent["author_id"] == self.account or any(
                m.get("id") == self.account for m in parent.get("entities", {}).get("mentions", []))
            if not summoned:
                return _problem(403, "Forbidden", NOT_SUMMONED, "about:blank", headers)
        post_id = self.new_id()
        self.sent.append(Sent("post", post_id, text, in_reply_to=reply_to,
                              deep_link=body.get("direct_message_deep_link")))
        parent = self.posts.get(reply_to or "")
        self.posts[post_id] = {"id": post_id, "edit_history_tweet_ids": [post_id], "text": text,
                               "author_id": self.account, "created_at": x_time(self.clock()),
                               "conversation_id": parent["conversation_id"] if parent else post_id}
        created = {"edit_history_tweet_ids": [post_id], "id": post_id, "text": text}
        return _json({"data": created}, 201, headers)

    def _by_other(self, author: str, text: str) -> dict[str, Any]:
        """Another account's post, with the mention entities X finds in its text."""
        post_id = self.new_id()
        post: dict[str, Any] = {"id": post_id, "edit_history_tweet_ids": [post_id], "text": text,
                                "author_id": author, "conversation_id": post_id,
                                "created_at": x_time(self.clock()), "lang": "en"}
        tag = f"@{self.handle}"
        mentions = [{"start": at, "end": at + len(tag), "username": self.handle, "id": self.account}
                    for at in range(len(text)) if text.startswith(tag, at)]
        if mentions:
            post["entities"] = {"mentions": mentions}
        self.posts[post_id] = post
        return post

    async def _delete_post(self, request: web.Request) -> web.Response:
        self.calls.append("delete")
        refused = self._authorised(request, user=True)
        if refused is not None:
            return refused
        post = self.posts.get(request.match_info["id"])
        if post is None or post["author_id"] != self._author(request):
            return _problem(403, "Forbidden", "You are not allowed to delete this Tweet.", "about:blank", {})
        del self.posts[post["id"]]
        self.deleted.append(post["id"])
        return _json({"data": {"deleted": True}}, 200, self._take("delete")[1])

    async def _send_dm(self, request: web.Request) -> web.Response:
        self.calls.append("dm_send")
        refused = self._authorised(request, user=True)
        if refused is not None:
            return refused
        limited, headers = self._take("dm_send")
        if limited is not None:
            return limited
        participant = request.match_info["participant"]
        body = await request.json()
        if participant in self.dm_closed:
            return _problem(403, "Forbidden", DM_CLOSED, "about:blank", headers,
                            errors=[{"code": 349, "message": DM_CLOSED}])
        event_id = self.new_id()
        self.sent.append(Sent("dm", event_id, str(body.get("text", "")), recipient=participant))
        return _json({"data": {"dm_conversation_id": self._conversation(participant),
                               "dm_event_id": event_id}}, 201, headers)

    def _conversation(self, other: str) -> str:
        low, high = sorted((other, self.account), key=int)
        return f"{low}-{high}"

    def _users_of(self, ids: Any) -> list[dict[str, str]]:
        return [self.users[u] for u in dict.fromkeys(ids) if u in self.users]


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _json(body: dict[str, Any], status: int, headers: dict[str, str]) -> web.Response:
    return web.Response(body=json.dumps(body, separators=(",", ":")).encode(), status=status,
                        headers=headers, content_type="application/json", charset="utf-8")


def _problem(status: int, title: str, detail: str, kind: str, headers: dict[str, str],
             **more: Any) -> web.Response:
    return _json({"title": title, "detail": detail, "type": kind, "status": status, **more}, status, headers)
