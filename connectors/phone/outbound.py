"""Texts back to callers: the twilio REST client's Messages API, a receipt with the message SID.

The send stage claims each reply before it comes here, so this only sends and says what
became of it. Twilio's refusals are final and carry its code (21610 unsubscribed, 21211
invalid number, 21617 too long, 30034 unregistered sender, …): a failed receipt with the
reason, which the agent sees in their tool. A 429 or 5xx means Twilio did not take the
text: tried again with backoff, a bounded number of times. A connection lost once the
request was on its way may have sent it: `uncertain`, never sent twice.

The client talks through our own async HTTP client (the library's `http_client` seam),
which sends to `api_base_url` — Twilio in production, a local emulator in tests.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from prometheus_client import Counter
from twilio.base.exceptions import TwilioException
from twilio.http import AsyncHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from connectors.base import Outbound
from connectors.phone.errors import SmsRefused, SmsUnavailable
from connectors.phone.segments import segments
from connectors.phone.settings import PhoneSettings
from schemas.outbound import DeliveryReceipt, DeliveryStatus, OutboundMessage

__all__ = ["REFUSALS", "PhoneOutbound", "RebasedHttpClient"]

log = logging.getLogger(__name__)
TEXTS = Counter("sb_phone_texts_total", "Texts to callers, by final status", ["status"])
SEGMENTS = Counter("sb_phone_text_segments_total", "SMS segments of the texts Twilio took")

# what a refusal means for the agent, by Twilio's error code
REFUSALS = {
    21610: "the customer has unsubscribed from our texts (replied STOP)",
    21211: "the number is not a valid phone number",
    21614: "the number cannot receive texts (not a mobile number)",
    21617: "the text is longer than 1,600 characters",
    30034: "our sending number is not registered for this traffic (A2P 10DLC)",
    21408: "texts to this region are not enabled for our account",
    21606: "our number cannot send texts",
}


class RebasedHttpClient(AsyncHttpClient):  # type: ignore[misc]
    """The twilio client's async HTTP transport, on one aiohttp session, sending to `base_url`."""

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__(log, True, timeout)
        self._base = urlsplit(base_url)
        self._session: aiohttp.ClientSession | None = None

    def _rebased(self, url: str) -> str:
        parts, base = urlsplit(url), self._base
        return urlunsplit((base.scheme, base.netloc, base.path + parts.path, parts.query, ""))

    async def request(self, method: str, url: str, *, params: dict[str, Any] | None = None,
                      data: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                      auth: tuple[str, str] | None = None, timeout: float | None = None,
                      allow_redirects: bool = False) -> Response:
        """One API call; the answer as the library's Response, whatever its status."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = dict(headers or {})
        if auth:
            headers["Authorization"] = aiohttp.encode_basic_auth(*auth)
        async with self._session.request(
                method.upper(), self._rebased(url), params=params, data=data, headers=headers,
                allow_redirects=allow_redirects,
                timeout=aiohttp.ClientTimeout(total=timeout or self.timeout)) as answer:
            return Response(answer.status, await answer.text(), answer.headers)

    async def close(self) -> None:
        """Close the session; safe to call twice."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()


class PhoneOutbound(Outbound[PhoneSettings]):
    """Sends agents' answers and acknowledgements to callers as texts."""

    def __init__(self, settings: PhoneSettings) -> None:
        super().__init__(settings)
        self._http: RebasedHttpClient | None = None
        self._client: Any = None

    async def start(self) -> None:
        """Make the client once; credentials are checked by the first send."""
        self._http = RebasedHttpClient(self.settings.api_base_url, self.settings.timeout_seconds)
        self._client = Client(self.settings.account_sid, self.settings.token(), http_client=self._http)

    async def stop(self) -> None:
        """Close the HTTP session; safe to call twice."""
        http, self._http, self._client = self._http, None, None
        if http is not None:
            await http.close()

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        """Text the caller; the receipt says sent (with the SID), failed (with why) or uncertain."""
        if self._client is None:
            return self._receipt(message, "failed", "the phone sender is not started")
        if self.settings.from_number is None:
            return self._receipt(message, "failed", "no number to text from (SB_PHONE__FROM_NUMBER)")
        if message.recipient.kind != "phone" or not message.recipient.value.startswith("+"):
            return self._receipt(message, "failed", f"{message.recipient} is not a number we can text")
        try:
            sid = await self._create(message)
        except (SmsRefused, SmsUnavailable) as e:
            return self._receipt(message, "failed", e.reason)
        except (aiohttp.ClientError, TimeoutError) as e:
            return self._receipt(message, "uncertain", f"the connection to Twilio failed mid-request; the "
                                 f"text may have been sent, so it is not sent again: {type(e).__name__}")
        SEGMENTS.inc(segments(message.text))
        return self._receipt(message, "sent", None, sid)

    async def _create(self, message: OutboundMessage) -> str:
        """The new message's SID; Twilio's 429 and 5xx tried again with backoff."""
        last = ""
        for attempt in range(1, self.settings.send_attempts + 1):
            try:
                async with asyncio.timeout(self.settings.timeout_seconds * 2):
                    created = await self._client.messages.create_async(
                        to=message.recipient.value, from_=self.settings.from_number, body=message.text)
                return str(created.sid)
            except aiohttp.ClientConnectorError as e:  # never reached Twilio: safe to try again
                last = f"could not connect: {e}"
            except TwilioException as e:
                status, code = getattr(e, "status", None), getattr(e, "code", None)
                words = getattr(e, "msg", None) or getattr(e, "detail", None) or str(e)
                if status != 429 and (status is None or status < 500):
                    meaning = REFUSALS.get(code) if isinstance(code, int) else None
                    raise SmsRefused(f"Twilio refused the text ({code}): {meaning or words}",
                                     code if isinstance(code, int) else None) from e
                last = f"Twilio answered {status} ({code}): {words}"
            if attempt < self.settings.send_attempts:
                await asyncio.sleep(random.uniform(0, self.settings.backoff_seconds * 2 ** (attempt - 1)))
        raise SmsUnavailable(f"gave up after {self.settings.send_attempts} attempts; last: {last}")

    def _receipt(self, message: OutboundMessage, status: DeliveryStatus, reason: str | None,
                 sid: str | None = None) -> DeliveryReceipt:
        TEXTS.labels(status).inc()
        log.info("phone: text %s", status, extra={"reply_id": message.reply_id,
                 "conversation_id": message.conversation_id, "reason": reason, "sid": sid})
        return DeliveryReceipt(reply_id=message.reply_id, conversation_id=message.conversation_id,
                               channel="phone", status=status, at=datetime.now(UTC), reason=reason,
                               provider_id=sid)
