"""`/v1/x/webhook`: the X Activity API's CRC challenge (GET) and its deliveries (POST).

The CRC token and the body signature are checked against our consumer secret before a
byte of the body is parsed (sign.py); a refusal is a 401, counted. A delivery we route is
accepted onto the inbound topic; one we do not (our own post, a retweet, an errors-only
envelope) is answered 200 with the reason, so X does not retry it. X redelivers an event
it got no 2xx for: the copy carries the same post or DM id, so its event id is the same
and the intake's dedupe drops it. An outage (Kafka, Redis) is a 503: X retries later.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiohttp import web
from prometheus_client import Counter

from connectors.routes import Edge, Refusal, Route
from connectors.twitter.errors import SignatureError, XInputError
from connectors.twitter.parse import Ignored, parse_envelope
from connectors.twitter.settings import XSettings
from connectors.twitter.sign import SIGNATURE_HEADER, crc_response, verify

__all__ = ["PATH", "WEBHOOK", "routes"]

log = logging.getLogger(__name__)
PATH = "/v1/x/webhook"
WEBHOOK = Counter("sb_x_webhook_total", "X Activity API webhook requests, by what became of them",
                  ["outcome"])


def routes(settings: XSettings, edge: Edge) -> Sequence[Route]:
    """The CRC and delivery routes, bound to our consumer secret and account."""
    secret = settings.consumer_secret.get_secret_value().encode()

    def refuse(outcome: str, reason: str) -> Refusal:
        WEBHOOK.labels(outcome).inc()
        log.warning("x webhook refused", extra={"reason": reason, "outcome": outcome})
        return Refusal(401, "bad_signature", reason)

    async def crc(request: web.Request) -> web.Response:
        if not secret:
            raise refuse("bad_crc", "the X channel has no consumer secret")
        try:
            answer = crc_response(secret, request.query.get("crc_token"))
        except SignatureError as e:
            raise refuse("bad_crc", e.reason) from e
        WEBHOOK.labels("crc").inc()
        return web.json_response(answer)

    async def deliver(request: web.Request) -> web.Response:
        if not secret:
            raise refuse("bad_signature", "the X channel has no consumer secret")
        if (request.content_length or 0) > settings.max_body_bytes:
            raise refuse("bad_signature", "body is larger than any X event")
        raw = await request.read()  # bounded by the server's client_max_size
        if len(raw) > settings.max_body_bytes:
            raise refuse("bad_signature", "body is larger than any X event")
        try:
            verify(secret, raw, request.headers.get(SIGNATURE_HEADER))
        except SignatureError as e:
            raise refuse("bad_signature", e.reason) from e
        try:
            found = parse_envelope(raw, settings.account_id or None)
        except XInputError as e:
            WEBHOOK.labels("bad_event").inc()
            raise Refusal(400, "bad_event", e.reason) from e
        if isinstance(found, Ignored):
            WEBHOOK.labels("ignored").inc()
            log.info("x event not routed", extra={"reason": found.reason, "native_id": found.native_id})
            return web.json_response({"ok": True, "ignored": found.reason})
        await edge.accept(found)
        WEBHOOK.labels("accepted").inc()
        log.info("x event accepted", extra={"event_id": found.event_id, "thread_key": found.thread_key})
        return web.json_response({"ok": True, "event_id": found.event_id})

    return (Route("GET", PATH, crc), Route("POST", PATH, deliver))
