"""`POST /v1/slack/events`: agents' answers in a conversation's Slack thread, to its customer.

Slack signs every request (events.py); the signature is checked on the raw bytes before
anything is read. A thread reply is found back to its conversation through the tool's
thread (`Edge.conversation_of`) and becomes the reply on the customer's channel; its
reply id is fixed by the Slack message (channel and ts), so Slack's retries of an event
publish the same reply, which the send stage claims once.

Agents talk to each other in the same thread: a message starting with `note:` or `//`
(any case, after trimming) is an internal note. It joins the conversation's history and
never reaches the customer; a note on a closed conversation is still kept. `called:`
marks the conversation's call back made (`Edge.called_back`) where the policy asked for
one; elsewhere it is kept as a note. `transfer: <queue> <note>` moves the conversation
to that queue (`Edge.transfer`), whose team is handed it with the note; a transfer the
policy refuses (no such queue, the queue it is in, closed) is kept as a note saying why,
so the agent's words are not lost. A reply to a closed conversation is not sent: a
"failed" receipt for the reply id it would have had is posted back into the thread, so
the agent sees that the customer did not get it.

Slack waits three seconds and then retries any answer but a 2xx: a request we will
never act on (an unknown thread, a bot's post) is answered 200 with the reason and a
log line; only an outage (Redis, Kafka) answers 503, so that Slack tries again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client import Counter

from connectors.routes import Edge, Refusal, Route
from connectors.slack.errors import SignatureError
from connectors.slack.events import (
    RETRY_NUM_HEADER,
    RETRY_REASON_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Ignored,
    SlackCalled,
    SlackEvent,
    SlackNote,
    SlackReply,
    SlackTransfer,
    UrlVerification,
    parse,
    verify,
)
from connectors.slack.settings import SlackDestination, SlackSettings
from schemas.conversation import ConversationCard
from schemas.errors import ParseError, TransientError
from schemas.ids import agent_reply_id, lifecycle_event_id
from schemas.outbound import DeliveryReceipt

__all__ = ["CLOSED", "EVENTS", "PATH", "SlackEvents", "destination_for", "routes"]

log = logging.getLogger(__name__)

PATH = "/v1/slack/events"
EVENTS = Counter("sb_slack_events_total", "Slack Events API requests, by what became of them", ["outcome"])
CLOSED = "the conversation is closed; the customer did not get this reply — start a new conversation"


class SlackEvents:
    """The handler, bound to the signing secret and the router's edge."""

    def __init__(self, settings: SlackSettings, edge: Edge, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._secret = settings.signing_secret.get_secret_value().encode()
        self._edge = edge
        self._clock = clock

    async def post(self, request: web.Request) -> web.Response:
        """Verify, then answer Slack's URL check or pass an agent's thread reply on."""
        event = await self._verified(request)
        if isinstance(event, UrlVerification):
            EVENTS.labels("url_verification").inc()
            return web.json_response({"challenge": event.challenge})
        if isinstance(event, Ignored):
            return _ignored(event.reason, event_id=event.event_id)
        retry = request.headers.get(RETRY_NUM_HEADER)
        try:
            return await self._reply(event, retry and f"{retry} ({request.headers.get(RETRY_REASON_HEADER)})")
        except TransientError as e:
            EVENTS.labels("unavailable").inc()
            log.warning("slack reply: not taken now", extra={"event_id": event.event_id, "reason": e.reason})
            raise

    async def _verified(self, request: web.Request) -> SlackEvent:
        """The request's event once its signature holds; else a Refusal."""
        raw = await request.read()
        try:
            verify(self._secret, raw, timestamp=request.headers.get(TIMESTAMP_HEADER),
                   signed=request.headers.get(SIGNATURE_HEADER), now=self._clock())
        except SignatureError as e:
            log.warning("slack request refused", extra={"reason": e.reason})
            raise _refused(401, "bad_signature", e.reason) from e
        try:
            return parse(raw)
        except ParseError as e:
            raise _refused(400, "bad_event", e.reason) from e

    async def _reply(self, said: SlackReply | SlackNote | SlackCalled | SlackTransfer,
                     retry: str | None) -> web.Response:
        """The reply on the customer's channel or the internal note, published; or why there is none."""
        where: dict[str, Any] = {"event_id": said.event_id, "slack_channel": said.channel,
                                 "thread_ts": said.thread_ts, "slack_retry": retry}
        destination = destination_for(self._edge.destinations("slack"), said.channel)
        if destination is None:
            return _ignored("no Slack destination posts to this channel", **where)
        card = await self._edge.conversation_of(destination, said.thread_ts)
        where |= {"destination": destination, "conversation_id": card and card.conversation_id}
        if card is None:
            return _ignored("not the thread of a conversation we know", **where)
        if isinstance(said, SlackNote | SlackCalled | SlackTransfer):
            return await self._for_agents(said, card, where)
        # fixed by the Slack message, so Slack's retries publish the same reply (or receipt)
        reply_id = agent_reply_id("slack", f"{said.channel}:{said.ts}")
        if card.status == "closed":
            return await self._refuse_closed(card, reply_id, where)
        await self._edge.reply(card, text=said.text, author=said.user, reply_id=reply_id)
        EVENTS.labels("reply").inc()
        log.info("slack reply queued", extra={**where, "reply_id": reply_id})
        return web.json_response({"ok": True, "reply_id": reply_id, "conversation_id": card.conversation_id})

    async def _for_agents(self, said: SlackNote | SlackCalled | SlackTransfer, card: ConversationCard,
                          where: dict[str, Any]) -> web.Response:
        """What agents tell Switchboard in the thread, not the customer: a note, a call made, a move."""
        if isinstance(said, SlackCalled):
            return await self._called(said, card, where)
        if isinstance(said, SlackTransfer):
            return await self._transfer(said, card, where)
        # a note is history, never sent: a closed conversation still takes one
        return await self._note(said, card, where)

    async def _note(self, note: SlackNote, card: ConversationCard, where: dict[str, Any]) -> web.Response:
        """An internal note in the conversation's history."""
        event_id = lifecycle_event_id(f"slack:{note.channel}:{note.ts}", "note")
        await self._edge.note(card, event_id=event_id, text=note.text, author=note.user,
                              at=_written_at(note.ts), source="slack")
        EVENTS.labels("note").inc()
        log.info("slack note queued", extra={**where, "note_event_id": event_id})
        return web.json_response({"ok": True, "note_id": event_id, "conversation_id": card.conversation_id})

    async def _called(self, called: SlackCalled, card: ConversationCard,
                      where: dict[str, Any]) -> web.Response:
        """The conversation's call back made; without a task (or once closed) the words are a note."""
        if card.callback is None or card.status == "closed":
            why = "no call back was asked for" if card.callback is None else "the conversation is closed"
            text = f"called ({why}): {called.text}".rstrip(": ")
            return await self._note(SlackNote(channel=called.channel, thread_ts=called.thread_ts,
                                              ts=called.ts, user=called.user, text=text,
                                              event_id=called.event_id), card, where)
        event_id = lifecycle_event_id(f"slack:{called.channel}:{called.ts}", "called_back")
        await self._edge.called_back(card, event_id=event_id, text=called.text or None, author=called.user,
                                     at=_written_at(called.ts), source="slack")
        EVENTS.labels("called_back").inc()
        log.info("slack call back marked", extra={**where, "event_id": event_id})
        return web.json_response({"ok": True, "event_id": event_id, "conversation_id": card.conversation_id})

    async def _transfer(self, move: SlackTransfer, card: ConversationCard,
                        where: dict[str, Any]) -> web.Response:
        """The conversation moved to the queue named; refused, the words are kept as a note saying why."""
        event_id = lifecycle_event_id(f"slack:{move.channel}:{move.ts}", "transferred")
        try:
            await self._edge.transfer(card, event_id=event_id, queue=move.queue, text=move.text or None,
                                      author=move.user, at=_written_at(move.ts), source="slack")
        except Refusal as e:
            EVENTS.labels("transfer_refused").inc()
            log.info("slack transfer refused", extra={**where, "queue": move.queue, "reason": e.message})
            text = f"transfer to {move.queue or '(no queue named)'} refused: {e.message}"
            return await self._note(SlackNote(channel=move.channel, thread_ts=move.thread_ts, ts=move.ts,
                                              user=move.user, text=f"{text}. {move.text}".rstrip(". "),
                                              event_id=move.event_id), card, where)
        EVENTS.labels("transfer").inc()
        log.info("slack transfer queued", extra={**where, "event_id": event_id, "queue": move.queue})
        return web.json_response({"ok": True, "event_id": event_id, "conversation_id": card.conversation_id,
                                  "queue": move.queue})

    async def _refuse_closed(self, card: ConversationCard, reply_id: str,
                             where: dict[str, Any]) -> web.Response:
        """A failed receipt for a reply to a closed conversation: dispatch shows it in the thread."""
        receipt = DeliveryReceipt(reply_id=reply_id, conversation_id=card.conversation_id,
                                  channel=card.channel, status="failed", at=datetime.now(UTC),
                                  reason=CLOSED, kind="agent_reply", customer_id=card.customer_id)
        await self._edge.receipt(receipt)
        EVENTS.labels("closed").inc()
        log.info("slack reply to a closed conversation refused", extra={**where, "reply_id": reply_id})
        return web.json_response({"ok": True, "not_sent": CLOSED, "reply_id": reply_id,
                                  "conversation_id": card.conversation_id})


def destination_for(destinations: Mapping[str, Any], channel: str) -> str | None:
    """The Slack destination that posts to `channel` (an id, as events name it), if any."""
    return next((name for name, d in destinations.items()
                 if isinstance(d, SlackDestination) and d.channel == channel), None)


def routes(settings: SlackSettings, edge: Edge) -> Sequence[Route]:
    """The Slack tool's one route: its Events API endpoint."""
    return (Route("POST", PATH, SlackEvents(settings, edge).post),)


def _written_at(ts: str) -> datetime:
    """When a Slack message was written (its ts is unix seconds): the same on Slack's retries."""
    try:
        return datetime.fromtimestamp(float(ts), UTC)
    except (ValueError, OverflowError, OSError):
        return datetime.now(UTC)


def _ignored(reason: str, **where: Any) -> web.Response:
    EVENTS.labels("ignored").inc()
    log.info("slack event ignored", extra={"reason": reason, **where})
    return web.json_response({"ok": True, "ignored": reason})


def _refused(status: int, code: str, message: str) -> Refusal:
    EVENTS.labels(code).inc()
    return Refusal(status, code, message, field=None)
