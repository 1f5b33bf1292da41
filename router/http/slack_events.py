"""`POST /v1/slack/events`: agents' answers in a conversation's Slack thread, to its customer.

Slack signs every request (connectors/slack/events.py); the signature is checked on the
raw bytes before anything is read. A thread reply is found back to its conversation
through the dispatch stage's `tool-thread` key, made into the reply on the customer's
channel and put on sb.outbound.v1; the send stage sends it and emits the lifecycle
event. Its reply id is fixed by the Slack message (channel and ts), so Slack's retries
of an event publish the same reply, which the send stage claims once.

Agents talk to each other in the same thread: a message starting with `note:` or `//`
(any case, after trimming) is an internal note. It becomes a "note" event on
sb.conversation.v1 (keyed by customer; its event id fixed by channel and ts), joins the
conversation's history and never reaches the customer; a note on a closed conversation
is still kept. A reply to a closed conversation is not sent: a "failed" receipt for the
reply id it would have had goes on sb.delivery.v1, and the dispatch stage posts it back
into the thread, so the agent sees that the customer did not get it.

Slack waits three seconds and then retries any answer but a 2xx: a request we will
never act on (an unknown thread, a bot's post) is answered 200 with the reason and a
log line; only an outage (Redis, Kafka) answers 503, so that Slack tries again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from connectors.slack.errors import SignatureError
from connectors.slack.events import (
    RETRY_NUM_HEADER,
    RETRY_REASON_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Ignored,
    SlackEvent,
    SlackNote,
    SlackReply,
    UrlVerification,
    parse,
    verify,
)
from connectors.slack.settings import SlackSettings
from processors.policy.model import Destination
from processors.send.replies import reply_to
from processors.stores.cards import CardStore
from router.http.errors import error, unavailable
from router.http.server import Publisher
from schemas.codec import encode
from schemas.conversation import ConversationCard, ConversationEvent
from schemas.errors import ParseError, TransientError
from schemas.ids import agent_reply_id, lifecycle_event_id
from schemas.outbound import DeliveryReceipt
from schemas.topics import CONVERSATION, DELIVERY, OUTBOUND

__all__ = ["EVENTS", "PATH", "SlackEvents", "add_routes", "destination_for"]

log = logging.getLogger(__name__)

PATH = "/v1/slack/events"
EVENTS = Counter("sb_slack_events_total", "Slack Events API requests, by what became of them", ["outcome"])
CLOSED = "the conversation is closed; the customer did not get this reply — start a new conversation"


class SlackEvents:
    """The handler, bound to the signing secret, Redis, the policy's channels and Kafka."""

    def __init__(self, settings: SlackSettings, *, redis_getter: Callable[[], Redis], namespace: str,
                 destination_for_channel: Callable[[str], str | None], publish: Publisher,
                 outbound_topic: str, conversation_topic: str | None = None,
                 delivery_topic: str | None = None, timeout: float = 2.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._secret = settings.signing_secret.get_secret_value().encode()
        self._redis = redis_getter
        # reads only: the TTL is the dispatch stage's business
        self._cards = CardStore(namespace, ttl_seconds=0)
        self._destination = destination_for_channel
        self._publish = publish
        self._outbound = outbound_topic
        self._conversation = conversation_topic or _beside(outbound_topic, CONVERSATION.name)
        self._delivery = delivery_topic or _beside(outbound_topic, DELIVERY.name)
        self._timeout = timeout
        self._clock = clock

    async def post(self, request: web.Request) -> web.Response:
        """Verify, then answer Slack's URL check or pass an agent's thread reply on."""
        event = await self._verified(request)
        if isinstance(event, web.Response):
            return event
        if isinstance(event, UrlVerification):
            EVENTS.labels("url_verification").inc()
            return web.json_response({"challenge": event.challenge})
        if isinstance(event, Ignored):
            return _ignored(event.reason, event_id=event.event_id)
        retry = request.headers.get(RETRY_NUM_HEADER)
        try:
            return await self._reply(event, retry and f"{retry} ({request.headers.get(RETRY_REASON_HEADER)})")
        except (TimeoutError, RedisError) as e:
            log.warning("slack reply: conversation store unavailable",
                        extra={"event_id": event.event_id, "reason": repr(e)})
            return _unavailable("conversation store unavailable")
        except TransientError as e:
            log.warning("slack reply: publish failed", extra={"event_id": event.event_id, "reason": e.reason})
            return _unavailable("Kafka did not take the reply")

    async def _verified(self, request: web.Request) -> SlackEvent | web.Response:
        """The request's event once its signature holds; else the error answer."""
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, "too_large", "body is larger than this server accepts")
        try:
            verify(self._secret, raw, timestamp=request.headers.get(TIMESTAMP_HEADER),
                   signed=request.headers.get(SIGNATURE_HEADER), now=self._clock())
        except SignatureError as e:
            log.warning("slack request refused", extra={"reason": e.reason})
            return _error(401, "bad_signature", e.reason)
        try:
            return parse(raw)
        except ParseError as e:
            return _error(400, "bad_event", e.reason)

    async def _reply(self, said: SlackReply | SlackNote, retry: str | None) -> web.Response:
        """The reply on the customer's channel or the internal note, published; or why there is none."""
        where: dict[str, Any] = {"event_id": said.event_id, "slack_channel": said.channel,
                                 "thread_ts": said.thread_ts, "slack_retry": retry}
        destination = self._destination(said.channel)
        if destination is None:
            return _ignored("no Slack destination posts to this channel", **where)
        redis = self._redis()
        async with asyncio.timeout(self._timeout):
            conversation_id = await self._cards.conversation_of(redis, destination, said.thread_ts)
            card = await self._cards.get(redis, conversation_id) if conversation_id else None
        where |= {"destination": destination, "conversation_id": conversation_id}
        if conversation_id is None:
            return _ignored("not the thread of a conversation we posted", **where)
        if card is None:
            return _ignored("the conversation is no longer known", **where)
        if isinstance(said, SlackNote):
            # a note is history, never sent: a closed conversation still takes one
            return await self._note(said, card, where)
        # fixed by the Slack message, so Slack's retries publish the same reply (or receipt)
        reply_id = agent_reply_id("slack", f"{said.channel}:{said.ts}")
        if card.status == "closed":
            return await self._refuse_closed(card, reply_id, where)
        message = reply_to(card, text=said.text, author=said.user, reply_id=reply_id,
                           now=datetime.now(UTC))
        await self._publish(self._outbound, card.conversation_id.encode(), encode(message))
        EVENTS.labels("reply").inc()
        log.info("slack reply queued", extra={**where, "reply_id": reply_id})
        return web.json_response({"ok": True, "reply_id": reply_id, "conversation_id": card.conversation_id})

    async def _note(self, note: SlackNote, card: ConversationCard, where: dict[str, Any]) -> web.Response:
        """An internal note on sb.conversation.v1, keyed by customer like every lifecycle event."""
        event_id = lifecycle_event_id(f"slack:{note.channel}:{note.ts}", "note")
        event = ConversationEvent(event_id=event_id, conversation_id=card.conversation_id,
                                  customer_id=card.customer_id, kind="note", at=_written_at(note.ts),
                                  author=note.user, text=note.text, queue=card.queue, source="slack")
        await self._publish(self._conversation, card.customer_id.encode(), encode(event))
        EVENTS.labels("note").inc()
        log.info("slack note queued", extra={**where, "note_event_id": event_id})
        return web.json_response({"ok": True, "note_id": event_id, "conversation_id": card.conversation_id})

    async def _refuse_closed(self, card: ConversationCard, reply_id: str,
                             where: dict[str, Any]) -> web.Response:
        """A failed receipt for a reply to a closed conversation: dispatch shows it in the thread."""
        receipt = DeliveryReceipt(reply_id=reply_id, conversation_id=card.conversation_id,
                                  channel=card.channel, status="failed", at=datetime.now(UTC),
                                  reason=CLOSED, kind="agent_reply", customer_id=card.customer_id)
        await self._publish(self._delivery, card.conversation_id.encode(), encode(receipt))
        EVENTS.labels("closed").inc()
        log.info("slack reply to a closed conversation refused", extra={**where, "reply_id": reply_id})
        return web.json_response({"ok": True, "not_sent": CLOSED, "reply_id": reply_id,
                                  "conversation_id": card.conversation_id})


def destination_for(destinations: Iterable[Destination], channel: str) -> str | None:
    """The Slack destination that posts to `channel` (an id, as events name it), if any."""
    return next((d.name for d in destinations if d.kind == "slack" and d.channel == channel), None)


def _written_at(ts: str) -> datetime:
    """When a Slack message was written (its ts is unix seconds): the same on Slack's retries."""
    try:
        return datetime.fromtimestamp(float(ts), UTC)
    except (ValueError, OverflowError, OSError):
        return datetime.now(UTC)


def _beside(outbound_topic: str, name: str) -> str:
    """A topic under the same deployment prefix as the outbound topic."""
    return outbound_topic.removesuffix(OUTBOUND.name) + name


def _ignored(reason: str, **where: Any) -> web.Response:
    EVENTS.labels("ignored").inc()
    log.info("slack event ignored", extra={"reason": reason, **where})
    return web.json_response({"ok": True, "ignored": reason})


def _error(status: int, code: str, message: str) -> web.Response:
    EVENTS.labels(code).inc()
    return error(status, code, message, field=None)


def _unavailable(message: str) -> web.Response:
    EVENTS.labels("unavailable").inc()
    return unavailable(message, field=None)


def add_routes(app: web.Application, settings: SlackSettings, *, redis_getter: Callable[[], Redis],
               namespace: str, destination_for_channel: Callable[[str], str | None], publish: Publisher,
               outbound_topic: str, conversation_topic: str | None = None,
               delivery_topic: str | None = None) -> SlackEvents:
    """Mount `POST /v1/slack/events` on an application and return its handler.

    Notes go to `conversation_topic` and refusals to `delivery_topic`; when not given, they
    are the topics under the outbound topic's prefix.
    """
    events = SlackEvents(settings, redis_getter=redis_getter, namespace=namespace,
                         destination_for_channel=destination_for_channel, publish=publish,
                         outbound_topic=outbound_topic, conversation_topic=conversation_topic,
                         delivery_topic=delivery_topic)
    app.router.add_post(PATH, events.post)
    return events
