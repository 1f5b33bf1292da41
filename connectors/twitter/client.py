"""tweepy's async client for one account: one session, paced calls, X's errors in our tree.

tweepy's AsyncClient builds every URL on `https://api.twitter.com` and offers no setting
for another host; what it does take is the aiohttp session it sends through. A different
`base_url` (an emulator in tests, a proxy) is honoured by one client middleware on that
session that moves each request to it before it leaves; the OAuth 1.0a signature stays
the one tweepy made for api.twitter.com, as X would check it. Responses come back raw
(`return_type=aiohttp.ClientResponse`) so their rate-limit headers are seen; tweepy's own
`wait_on_rate_limit` is off, the pacer (limits.py) schedules waits.

A 429 means X did nothing, so after its reset (within `max_wait`) the call is made once
more; `usage-capped` is not waited for but refused and counted, for an alert. A write
whose answer never came (timeout, reset connection) may have happened: `XUnavailable`
with `maybe_done` set, so the sender reports it uncertain and never repeats it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from tweepy.asynchronous import AsyncClient
from tweepy.errors import HTTPException, TooManyRequests, TwitterServerError, Unauthorized
from yarl import URL

from connectors.twitter.errors import XRefused, XUnavailable
from connectors.twitter.limits import CAPPED, Budget, Pacer
from connectors.twitter.settings import XSettings
from schemas.errors import AuthError

__all__ = ["DEFAULT_BASE", "XApi", "refusal_code"]

log = logging.getLogger(__name__)
DEFAULT_BASE = "https://api.twitter.com"
Call = Callable[[AsyncClient], Awaitable[aiohttp.ClientResponse]]


def refusal_code(error: HTTPException) -> str:
    """Which of X's refusals an error is: duplicate, not_summoned, dm_closed, or its status."""
    text = " ".join(str(m) for m in error.api_messages).lower()
    if "duplicate content" in text:
        return "duplicate"
    if "not been mentioned" in text or "reply to this conversation is not allowed" in text:
        return "not_summoned"
    if 349 in error.api_codes or "cannot send messages to this user" in text:
        return "dm_closed"
    if "usage cap" in text:
        return "usage_capped"
    return f"http_{error.response.status}"


class XApi:
    """One account's X API: made once per process, `start()` opens its session."""

    def __init__(self, settings: XSettings, *, pacer: Pacer, budget: Budget) -> None:
        self.settings = settings
        self.pacer = pacer
        self.budget = budget
        self._client: AsyncClient | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the one session every call of this account goes through."""
        if self._session is not None:
            return
        base = URL(self.settings.base_url)
        middlewares: tuple[Any, ...] = ()
        if str(base) != DEFAULT_BASE:
            async def rebase(request: aiohttp.ClientRequest, handler: Any) -> aiohttp.ClientResponse:
                moved = request.url.with_scheme(base.scheme).with_host(base.host or "")
                request.url = moved.with_port(base.port)
                response: aiohttp.ClientResponse = await handler(request)
                return response
            middlewares = (rebase,)
        self._session = aiohttp.ClientSession(
            middlewares=middlewares, timeout=aiohttp.ClientTimeout(total=self.settings.timeout_seconds))
        s = self.settings
        client = AsyncClient(consumer_key=s.consumer_key.get_secret_value(),
                             consumer_secret=s.consumer_secret.get_secret_value(),
                             access_token=s.access_token.get_secret_value(),
                             access_token_secret=s.access_token_secret.get_secret_value(),
                             return_type=aiohttp.ClientResponse, wait_on_rate_limit=False)
        client.session = self._session
        self._client = client

    async def stop(self) -> None:
        """Close the session; safe to call twice."""
        if self._session is not None:
            await self._session.close()
        self._session = self._client = None

    async def call(self, endpoint: str, call: Call, *, cost: Callable[[dict[str, Any]], float],
                   write: bool, estimate: float = 0.0, optional: bool = True) -> dict[str, Any]:
        """One paced, budgeted call; its JSON answer, or XRefused / XUnavailable / AuthError.

        An `optional` call is refused once the day's budget is spent; the estimate is set
        aside before and settled after, so workers sharing the budget see each other's calls.
        """
        if self._client is None:
            raise XUnavailable("the X client is not started")
        day = await self.budget.reserve(endpoint, estimate, optional=optional)
        spent = 0.0
        try:
            body = await self._paced(endpoint, call, write)
            spent = cost(body)
            return body
        except XUnavailable as e:
            spent = estimate if e.maybe_done else 0.0  # it may have been made, and billed
            raise
        finally:
            # a refused or failed call costs nothing; an answered one what X bills for it
            await self._after(endpoint, self.budget.settle(endpoint, estimate, spent, day))

    async def _after(self, endpoint: str, step: Awaitable[None]) -> None:
        """Book-keeping after X answered: Redis away must not turn a made call into "not sent"."""
        try:
            await step
        except XUnavailable as e:
            log.error("x call made but not booked", extra={"endpoint": endpoint, "reason": e.reason})

    async def _paced(self, endpoint: str, call: Call, write: bool) -> dict[str, Any]:
        assert self._client is not None
        for attempt in (1, 2):
            await self.pacer.ready(endpoint)
            try:
                response = await call(self._client)
            except TooManyRequests as e:
                if refusal_code(e) == "usage_capped":
                    CAPPED.labels(self.budget.account, endpoint).inc()
                    log.error("x usage cap reached", extra={"endpoint": endpoint})
                    raise XRefused(f"X's usage cap is reached ({'; '.join(e.api_messages)}); "
                                   "nothing is sent until the plan allows it", code="usage_capped") from e
                wait = await self.pacer.refused(endpoint, e.response.headers)
                if attempt == 2 or wait > self.settings.max_wait_seconds:
                    raise XUnavailable(f"X's {endpoint} limit is reached; it resets in {wait:.0f}s",
                                       status=429, retry_after=wait) from e
                log.warning("x rate limited; waiting for the reset",
                            extra={"endpoint": endpoint, "wait": wait})
                continue  # the pacer waits for the reset before the one retry
            except Unauthorized as e:
                raise AuthError(f"X refused our credentials: {e}") from e
            except TwitterServerError as e:
                raise XUnavailable(f"X failed: {e}", status=e.response.status, maybe_done=write) from e
            except HTTPException as e:
                code = refusal_code(e)
                reason = "; ".join(str(m) for m in e.api_messages) or str(e)
                raise XRefused(f"X refused it: {reason}", code=code) from e
            except aiohttp.ClientConnectorError as e:
                raise XUnavailable(f"X could not be reached: {e!r}") from e
            except (aiohttp.ClientError, TimeoutError) as e:
                raise XUnavailable(f"X did not answer: {e!r}", maybe_done=write) from e
            await self._after(endpoint, self.pacer.observe(endpoint, response.headers))
            body: dict[str, Any] = await response.json()
            return body
        raise AssertionError("unreachable: the second attempt returns or raises")

