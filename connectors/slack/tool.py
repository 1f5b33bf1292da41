"""The Slack tool: a conversation's first message opens a thread in the team's channel.

The first routed message of a conversation is posted to the destination's channel and
its `ts` becomes the conversation's thread reference; everything after (the customer
writing again, reply receipts, SLA notices) is posted in that thread. Agents answer in
the thread; router/http/slack_events.py takes those answers back.

One `AsyncWebClient` over one aiohttp session, made in `start()` and checked with
`auth.test`. The SDK's own retries are off: the dispatch stage retries with backoff and
a circuit breaker, and honours Slack's Retry-After (`SlackUnavailable.retry_after`).
Slack allows about one message a second per channel; bursts above it answer 429.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from connectors.base import AgentTool, Handoff
from connectors.slack.blocks import render
from connectors.slack.errors import SlackRejected, SlackUnavailable
from connectors.slack.settings import SlackSettings
from schemas.errors import AuthError, PermanentError, SwitchboardError

__all__ = ["SlackTool", "failure_of"]

log = logging.getLogger(__name__)

# Slack's error codes (HTTP 200, `ok: false`) that say the token, not the call, is wrong
_AUTH = frozenset({
    "invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
    "no_permission", "missing_scope", "not_allowed_token_type", "team_access_not_granted",
    "ekm_access_denied", "org_login_required",
})
# ... and those that say Slack itself is having a bad moment
_TRANSIENT = frozenset({
    "ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout",
    "team_added_to_org",
})


class SlackTool(AgentTool[SlackSettings]):
    """Posts to the Slack channel of each destination it knows (destination name → channel id)."""

    def __init__(self, settings: SlackSettings, channels: Mapping[str, str]) -> None:
        super().__init__(settings)
        self.channels = dict(channels)
        self._session: aiohttp.ClientSession | None = None
        self._client: AsyncWebClient | None = None
        self._warned: set[str] = set()

    async def start(self) -> None:
        """Make the one client and check the token: a refused one is an AuthError."""
        if self._client is not None:
            return
        timeout = self.settings.timeout_seconds
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))
        client = AsyncWebClient(token=self.settings.bot_token.get_secret_value(),
                                base_url=self.settings.base_url, timeout=math.ceil(timeout),
                                session=session, retry_handlers=[])
        try:
            answer = await self._call("auth.test", client.auth_test)
        except BaseException:
            await session.close()
            raise
        self._session, self._client = session, client
        log.info("slack connected", extra={"team": answer.get("team"), "bot_user": answer.get("user_id")})

    async def stop(self) -> None:
        """Close the session; safe to call twice."""
        session, self._session, self._client = self._session, None, None
        if session is not None:
            await session.close()

    async def deliver(self, handoff: Handoff) -> str:
        """Post one item; returns the thread's ts (the new message's, for a first post)."""
        channel = self.channels.get(handoff.destination)
        if channel is None:
            raise PermanentError(f"no Slack channel for destination {handoff.destination!r}")
        client = self._client
        if client is None:
            raise SlackUnavailable("the Slack tool is not started")
        message = render(handoff)

        def post() -> Awaitable[AsyncSlackResponse]:
            # customers' links are never unfurled: Slack would fetch them
            return client.chat_postMessage(
                channel=channel, text=message.text, blocks=list(message.blocks),
                thread_ts=handoff.thread or None, unfurl_links=False, unfurl_media=False)

        answer = await self._call(f"chat.postMessage to {channel}", post)
        ts = answer.get("ts")
        if not isinstance(ts, str) or not ts:
            raise SlackRejected(f"chat.postMessage to {channel} answered without a ts", "no_ts")
        self._check_channel(handoff.destination, channel, answer.get("channel"))
        log.debug("posted to slack", extra={"delivery_id": handoff.delivery_id, "ts": ts,
                                            "conversation_id": handoff.card.conversation_id})
        return handoff.thread or ts

    async def _call(self, what: str, call: Callable[[], Awaitable[AsyncSlackResponse]]
                    ) -> AsyncSlackResponse:
        """One Web API call, its failures mapped into the error tree."""
        try:
            async with asyncio.timeout(self.settings.timeout_seconds):
                return await call()
        except TimeoutError as e:
            raise SlackUnavailable(f"{what}: no answer within {self.settings.timeout_seconds:g}s") from e
        except SlackApiError as e:
            raise failure_of(what, e.response) from e
        except (aiohttp.ClientError, OSError) as e:
            raise SlackUnavailable(f"{what}: {type(e).__name__}: {e}") from e
        except SlackClientError as e:
            raise PermanentError(f"{what}: {type(e).__name__}: {e}") from e

    def _check_channel(self, destination: str, configured: str, answered: Any) -> None:
        """Warn once when the policy names a channel by name: replies are matched by its id."""
        if isinstance(answered, str) and answered != configured and destination not in self._warned:
            self._warned.add(destination)
            log.warning("slack destination names its channel, not its id: agents' replies in its "
                        "threads will not be recognised until the policy says the id",
                        extra={"destination": destination, "channel": configured, "channel_id": answered})


def failure_of(what: str, response: AsyncSlackResponse) -> SwitchboardError:
    """The error a failed Web API answer is: transient, auth, or a permanent refusal."""
    status = response.status_code
    data = response.data if isinstance(response.data, dict) else {}
    error = str(data.get("error") or f"http_{status}")
    detail = _detail(data)
    text = f"{what}: Slack answered {error}" + (f" ({detail})" if detail else "")
    if status == 429 or error in _TRANSIENT or status >= 500:
        wait = _retry_after(response.headers.get("Retry-After") if response.headers else None)
        return SlackUnavailable(text, status, wait)
    if error in _AUTH:
        return AuthError(text)
    return SlackRejected(text, error)


def _detail(data: Mapping[str, Any]) -> str:
    """What Slack added to explain an error: the scope it needed, its messages."""
    parts = [f"needs {data['needed']}"] if data.get("needed") else []
    metadata = data.get("response_metadata")
    if isinstance(metadata, Mapping):
        parts += [str(m) for m in (metadata.get("messages") or ())[:2]]
    return "; ".join(parts)[:300]


def _retry_after(value: Any) -> float | None:
    """Slack's Retry-After is whole seconds."""
    if isinstance(value, str) and value.strip().isdigit():
        return float(value.strip())
    return None
