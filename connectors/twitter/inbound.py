"""Polling of mentions and DM events, for accounts without the X Activity API's webhook.

Each endpoint is read on its own interval, derived from the limit table (settings
`poll_interval`: 15 minutes over the window's calls, 3 s for mentions and 60 s for DM
events on the 2026 plan). A bare `since_id` loses mentions X indexes late, so every read
goes back `poll_overlap_seconds` before the newest item already taken and drops the ids
it has seen (the cursor keeps the ids of that overlap window). What it yields is parsed
by the same functions as the webhook (parse.py), so a post read both ways is one event.

The cursor (`x:<account>:<endpoint>` in the cursor store) is committed by the runner only
after Kafka has the item, strictly in order; a restart re-reads from the last committed
one and the overlap's ids are skipped again. When the day's budget is spent, polling (an
optional call) pauses until the next UTC day; a rate limit or an outage backs off.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from connectors.base import Arrival, CursorStore, Inbound
from connectors.twitter.client import XApi
from connectors.twitter.errors import XInputError, XRefused
from connectors.twitter.limits import Account, account_for
from connectors.twitter.parse import Dm, Ignored, Includes, Post, Problem, dm_message, post_message, timestamp
from connectors.twitter.settings import XSettings
from schemas.deadletter import DeadLetter
from schemas.errors import AuthError, ConfigError, TransientError
from schemas.inbound import InboundMessage

__all__ = ["PollCursor", "XPolling"]

log = logging.getLogger(__name__)
ENDPOINTS = ("mentions", "dm_events")
_POST_FIELDS = "created_at,author_id,conversation_id,lang,in_reply_to_user_id,referenced_tweets,entities"
_DM_FIELDS = "id,text,event_type,created_at,sender_id,dm_conversation_id"
Found = tuple[str, float, InboundMessage | DeadLetter | Ignored]
A = TypeVar("A", bound=msgspec.Struct)
Item = TypeVar("Item", Post, Dm)
_MAX_SEEN = 5_000
_DAY = 86_400.0
_DEADLETTER_BYTES = 64_000


class _Posts(msgspec.Struct, frozen=True):
    data: list[Post] = []
    includes: Includes | None = None
    errors: list[Problem] = []


class _Dms(msgspec.Struct, frozen=True):
    data: list[Dm] = []
    includes: Includes | None = None


@dataclass(frozen=True, slots=True)
class PollCursor:
    """Where one endpoint's reading stands: the ids taken in the overlap window, with their times."""

    key: str
    seen: tuple[tuple[str, float], ...]

    @property
    def newest(self) -> float | None:
        """The time of the newest item taken."""
        return max((at for _, at in self.seen), default=None)

    def taking(self, native_id: str, at: float, overlap: float) -> PollCursor:
        """The cursor once `native_id` is taken, forgetting ids older than the overlap window."""
        seen = (*self.seen, (native_id, at))
        floor = max(t for _, t in seen) - overlap
        return PollCursor(self.key, tuple((i, t) for i, t in seen if t >= floor)[-_MAX_SEEN:])

    def encode(self) -> str:
        """The cursor store's value."""
        return json.dumps({"seen": [list(p) for p in self.seen]}, separators=(",", ":"))

    @classmethod
    def decode(cls, key: str, value: str | None) -> PollCursor:
        """A stored cursor; a missing or unreadable one starts empty."""
        try:
            pairs = json.loads(value)["seen"] if value else []
            return cls(key, tuple((str(i), float(t)) for i, t in pairs))
        except (ValueError, KeyError, TypeError):
            log.warning("x poll cursor unreadable; starting from now", extra={"key": key})
            return cls(key, ())


class XPolling(Inbound[XSettings]):
    """Reads our mentions and DM events on their intervals; the constructor does no I/O."""

    def __init__(self, settings: XSettings, cursors: CursorStore, *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 account: Account | None = None) -> None:
        super().__init__(settings, cursors)
        self._clock, self._sleep = clock, sleep
        if account is None:  # its own, for a clock of its own
            account = account_for(settings, clock=clock, sleep=sleep)
        self.budget = account.budget
        self.api = XApi(settings, pacer=account.pacer, budget=account.budget)
        self._cursors: dict[str, PollCursor] = {}
        self._started_at = 0.0
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        """Open the client and load the cursors; nothing to do when polling is off."""
        if not self.settings.poll:
            return
        s = self.settings
        if not s.account_id or not s.access_token.get_secret_value():
            raise ConfigError("x: polling needs account_id and access_token", where="SB_X")
        await self.api.start()
        self._started_at = self._clock()
        for endpoint in ENDPOINTS:
            key = f"x:{s.account_id}:{endpoint}"
            self._cursors[endpoint] = PollCursor.decode(key, await self.cursors.load(key))

    async def stop(self) -> None:
        """Stop polling and close the client; safe to call twice."""
        self._stopped.set()
        await self.api.stop()

    async def commit(self, cursor: Any) -> None:
        """Save one endpoint's cursor: its item is in Kafka."""
        if not isinstance(cursor, PollCursor):
            raise TypeError(f"not an X poll cursor: {cursor!r}")
        await self.cursors.save(cursor.key, cursor.encode())

    async def messages(self) -> AsyncIterator[Arrival]:
        """Mentions and DMs as they come, each endpoint on its own interval; ends after stop()."""
        if not self.settings.poll:
            return
        due = dict.fromkeys(ENDPOINTS, self._clock())
        while not self._stopped.is_set():
            endpoint = min(due, key=lambda e: due[e])
            wait = due[endpoint] - self._clock()
            if wait > 0:
                await self._sleep(wait)
                continue
            due[endpoint] = self._clock() + self.settings.poll_interval(endpoint)
            try:
                if await self.budget.exhausted():
                    due[endpoint] = (self._clock() // _DAY + 1) * _DAY  # the next UTC day
                    log.warning("x budget spent today; polling paused", extra={"endpoint": endpoint})
                    continue
                arrivals = await self.poll(endpoint)
            except AuthError as e:
                # our credentials were refused: this connector stops, and says so loudly
                log.error("x polling stopped: credentials refused", extra={"reason": e.reason})
                return
            except (TransientError, XRefused, XInputError) as e:
                # a limit, a cap, an outage or an answer we cannot read: this endpoint backs off
                later = e.retry_after if isinstance(e, TransientError) and e.retry_after else 0.0
                due[endpoint] = self._clock() + max(later, self.settings.poll_interval(endpoint))
                log.warning("x poll failed", extra={"endpoint": endpoint, "reason": e.reason})
                continue
            for arrival in arrivals:
                yield arrival

    async def poll(self, endpoint: str) -> list[Arrival]:
        """One read of `endpoint`: what is new since the cursor, oldest first, with its cursor."""
        cursor = self._cursors[endpoint]
        floor = (cursor.newest or self._started_at) - self.settings.poll_overlap_seconds
        price = self.settings.prices.read_post
        if endpoint == "mentions":
            body = await self.api.call(
                endpoint, lambda c: c.get_users_mentions(
                    self.settings.account_id, start_time=_x_time(floor), max_results=100,
                    expansions="author_id,referenced_tweets.id", tweet_fields=_POST_FIELDS,
                    user_fields="username,name", user_auth=True),
                cost=lambda b: price * len(b.get("data") or ()), write=False)
            found = self._posts(body)
        else:
            body = await self.api.call(
                endpoint, lambda c: c.get_direct_message_events(
                    dm_event_fields=_DM_FIELDS, event_types="MessageCreate", max_results=100,
                    expansions="sender_id", user_fields="username,name", user_auth=True),
                cost=lambda b: price * len(b.get("data") or ()), write=False)
            found = self._dms(body)
        seen = {i for i, _ in cursor.seen}
        arrivals = []
        for native_id, at, item in sorted(found, key=lambda f: (f[1], int(f[0]) if f[0].isdigit() else 0)):
            if native_id in seen or at < floor:
                continue
            cursor = cursor.taking(native_id, at, self.settings.poll_overlap_seconds)
            seen.add(native_id)
            if not isinstance(item, Ignored):
                arrivals.append(Arrival(item, cursor))
        self._cursors[endpoint] = cursor
        return arrivals

    def _posts(self, body: dict[str, Any]) -> list[Found]:
        read = _answer(body, _Posts, "mentions")
        includes = read.includes or Includes()

        def one(post: Post) -> InboundMessage | Ignored:
            cited = {r.id for r in post.references}
            errors = tuple(f"{p.title}: {p.detail}"[:300] for p in read.errors if p.resource_id in cited)
            return post_message(post, self.settings.account_id, includes=includes, errors=errors)
        return [_found(p.id, p.created_at, p, one) for p in read.data]

    def _dms(self, body: dict[str, Any]) -> list[Found]:
        read = _answer(body, _Dms, "DM events")

        def one(dm: Dm) -> InboundMessage | Ignored:
            return dm_message(dm, self.settings.account_id, includes=read.includes)
        return [_found(d.id, d.created_at, d, one) for d in read.data]


def _answer(body: dict[str, Any], model: type[A], what: str) -> A:
    """A polled answer in its typed shape; XInputError when X sent something else."""
    try:
        return msgspec.convert(body, model)
    except msgspec.ValidationError as e:
        raise XInputError(f"{what} answer is not readable: {e}") from e


def _found(native_id: str, created_at: str | None, item: Item,
           make: Callable[[Item], InboundMessage | Ignored]) -> Found:
    """One polled item with its id and time: a message, why it is not routed, or a dead letter."""
    at = (timestamp(created_at) or datetime.now(UTC)).timestamp()
    try:
        return native_id, at, make(item)
    except XInputError as e:
        return native_id, at, _dead(e.reason, msgspec.json.encode(item))


def _dead(reason: str, original: bytes) -> DeadLetter:
    return DeadLetter(stage="x", reason=reason, original=original[:_DEADLETTER_BYTES],
                      at=datetime.now(UTC), channel="x")


def _x_time(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
