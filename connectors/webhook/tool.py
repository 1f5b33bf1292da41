"""The webhook tool: each handoff POSTed as signed JSON to the destination's URL.

Body: `{"event", "delivery_id", "conversation", "routed", "receipt", "text"}` (absent
parts are null). Headers: X-Switchboard-Signature (sign.py), X-Switchboard-Delivery (the
delivery id: receivers dedupe on it, since a delivery may arrive more than once) and
X-Switchboard-Event. A 2xx answer is delivered; 408, 429, 5xx, a refused connection or a
timeout is transient (the receiver's Retry-After is passed on); any other answer is
permanent. Webhooks have no threads, so the thread reference is always "".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp
import msgspec

from connectors.base import AgentTool, Handoff
from connectors.webhook.errors import WebhookRejected, WebhookUnavailable
from connectors.webhook.settings import WebhookEndpoint, WebhookSettings
from connectors.webhook.sign import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign
from schemas.conversation import ConversationCard
from schemas.errors import PermanentError
from schemas.outbound import DeliveryReceipt
from schemas.routed import RoutedConversation

__all__ = ["WebhookBody", "WebhookTool", "body_of", "retry_after"]

_RETRY = frozenset({408, 429})
_encoder = msgspec.json.Encoder()


class WebhookBody(msgspec.Struct, frozen=True, kw_only=True):
    """What a receiver gets: the event, the delivery id, the card and the item itself."""

    event: str
    delivery_id: str
    conversation: ConversationCard
    routed: RoutedConversation | None
    receipt: DeliveryReceipt | None
    text: str | None


def body_of(handoff: Handoff) -> bytes:
    """The JSON body for one handoff."""
    return _encoder.encode(WebhookBody(
        event=handoff.event, delivery_id=handoff.delivery_id, conversation=handoff.card,
        routed=handoff.routed, receipt=handoff.receipt, text=handoff.text))


def retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


class WebhookTool(AgentTool[WebhookSettings]):
    """Delivers to the endpoint of each destination it knows (name → URL and secret)."""

    def __init__(self, settings: WebhookSettings, endpoints: Mapping[str, WebhookEndpoint],
                 *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(settings)
        self.endpoints = dict(endpoints)
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Make the one HTTP session every delivery shares."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_seconds),
                headers={"User-Agent": self.settings.user_agent})

    async def stop(self) -> None:
        """Close the session; safe to call twice."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def deliver(self, handoff: Handoff) -> str:
        """POST one handoff; returns "" (a webhook has no thread of its own)."""
        endpoint = self.endpoints.get(handoff.destination)
        if endpoint is None:
            raise PermanentError(f"no webhook endpoint for destination {handoff.destination!r}")
        if self._session is None:
            raise WebhookUnavailable("the webhook tool is not started")
        body = body_of(handoff)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(endpoint.secret.get_secret_value().encode(), body, self._clock()),
            DELIVERY_HEADER: handoff.delivery_id,
            EVENT_HEADER: handoff.event,
        }
        where = f"webhook {handoff.destination}"
        try:
            # a redirect would re-send (or drop) a signed body somewhere nobody configured
            async with self._session.post(endpoint.url, data=body, headers=headers,
                                          allow_redirects=False) as response:
                status, phrase = response.status, response.reason or ""
                wait = retry_after(response.headers.get("Retry-After"), datetime.now(UTC))
        except TimeoutError as e:
            raise WebhookUnavailable(
                f"{where}: no answer within {self.settings.timeout_seconds:g}s") from e
        except aiohttp.ClientError as e:
            raise WebhookUnavailable(f"{where}: {type(e).__name__}: {e}") from e
        if 200 <= status < 300:
            return ""
        text = f"{where} answered HTTP {status} {phrase}".rstrip()
        if status in _RETRY or status >= 500:
            raise WebhookUnavailable(text, status, wait)
        raise WebhookRejected(text, status)
