"""The conversations API: answer, resolve and annotate a conversation; read it with its history.

    GET  /v1/conversations/{id}          conversations:read   card, history lines, recent conversations
    POST /v1/conversations/{id}/replies  conversations:write  {text, author?, then?} → 202 queued
    POST /v1/conversations/{id}/resolve  conversations:write  {author?, note?} → 202 queued
    POST /v1/conversations/{id}/notes    conversations:write  {text, author?} → 202 queued
    POST /v1/conversations/{id}/callback conversations:write  {reached?, author?, note?} → 202 queued
A reply is only put on sb.outbound.v1: the send stage emits its `agent_reply` event once
the channel took it (decision 0005). With an `Idempotency-Key` header the reply and event
ids are fixed by the integration and the key, so a retried request publishes the same
reply (claimed before sending, so sent once) or the same event (deduped by its id).
Without one every request is new.

`author` names the person; it becomes the conversation's agent once the reply is sent, so
it is never filled in with the integration's name. The integration is in every log line
and in each event's `source` (`api:<integration>`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisClusterException, RedisError

from processors.send.replies import reply_to
from processors.stores.cards import CardStore
from processors.stores.history import ConversationSummary, HistoryStore
from processors.stores.tags import Tags
from router.edge import Publisher
from router.http.customers import Refused
from router.http.errors import error, unavailable
from router.http.integrations import Caller, Denied, Integrations, Scope
from router.settings import Settings
from schemas.codec import decode_json, encode
from schemas.conversation import ConversationCard, ConversationEvent, LifecycleKind
from schemas.errors import TransientError
from schemas.ids import agent_reply_id, lifecycle_event_id
from schemas.routed import HistoryEntry
from schemas.topics import CONVERSATION, OUTBOUND

__all__ = [
    "MAX_TEXT_CHARS",
    "CallbackBody",
    "ConversationApi",
    "ConversationView",
    "EventQueued",
    "HistoryLine",
    "NoteBody",
    "ReplyBody",
    "ReplyQueued",
    "ResolveBody",
    "add_routes",
]

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 10_000
MAX_NOTE_CHARS = 2_000
MAX_AUTHOR_CHARS = 100
_MAX_KEY_CHARS = 200
_CONVERSATION_ID = re.compile(r"^con_[A-Za-z0-9_-]{1,64}$")
_KEY = re.compile(r"^[\x21-\x7e]+$")
# msgspec names the offending field as "field `x`" or "at `$.x`"
_FIELD = re.compile(r"(?:field `|at `\$\.)(\w+)")

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT_CHARS)]
Author = Annotated[str, msgspec.Meta(max_length=MAX_AUTHOR_CHARS, description="the agent who wrote it")]
Then = Literal["waiting_on_customer", "resolved"]
RedisGetter = Callable[[], Redis]
Handler = Callable[[web.Request, Caller], Awaitable[web.Response]]
T = TypeVar("T")


class ReplyBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An agent's reply to the customer, and where the conversation stands after it."""

    text: Text
    author: Author | None = None
    then: Then | None = None


class ResolveBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The team considers the conversation solved; an optional internal note says why."""

    author: Author | None = None
    note: Annotated[str, msgspec.Meta(max_length=MAX_NOTE_CHARS)] | None = None


class CallbackBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The call back the conversation's task asked for was made: reached (the answer is given) or not."""

    reached: bool = True
    author: Author | None = None
    note: Annotated[str, msgspec.Meta(max_length=MAX_NOTE_CHARS)] | None = None


class TransferBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Move the conversation to another queue; the note says why, for the new team."""

    queue: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    author: Author | None = None
    note: Annotated[str, msgspec.Meta(max_length=MAX_NOTE_CHARS)] | None = None


class NoteBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An internal note: it joins the history and never reaches the customer."""

    text: Text
    author: Author | None = None


class ReplyQueued(msgspec.Struct, frozen=True, kw_only=True):
    """A reply handed to Kafka; `event_id` is that of the `then` event, if one was asked."""

    reply_id: str
    conversation_id: str
    status: Literal["queued"] = "queued"
    event_id: str | None = None


class EventQueued(msgspec.Struct, frozen=True, kw_only=True):
    """A lifecycle event (resolve, note) handed to Kafka."""

    event_id: str
    conversation_id: str
    kind: LifecycleKind
    status: Literal["queued"] = "queued"


class HistoryLine(HistoryEntry, frozen=True, kw_only=True):
    """A line of the customer's history, the identity it concerns, and whether it is this conversation's."""

    identity: str | None = None
    this_conversation: bool = False


class ConversationView(msgspec.Struct, frozen=True, kw_only=True):
    """A conversation's card, its customer's history (newest first) and recent conversations."""

    card: ConversationCard
    history: list[HistoryLine]
    conversations: list[ConversationSummary]


_reply_body = msgspec.json.Decoder(ReplyBody)
_resolve_body = msgspec.json.Decoder(ResolveBody)
_note_body = msgspec.json.Decoder(NoteBody)
_callback_body = msgspec.json.Decoder(CallbackBody)
_transfer_body = msgspec.json.Decoder(TransferBody)
_encoder = msgspec.json.Encoder()


def _error(status: int, code: str, message: str, field: str | None = None, **more: Any) -> web.Response:
    return error(status, code, message, field=field, **more)


def _json(struct: msgspec.Struct, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(struct), status=status, content_type="application/json")


def _conversation_id(request: web.Request) -> str:
    conversation_id = request.match_info["id"]
    if not _CONVERSATION_ID.match(conversation_id):
        raise Refused(400, "bad_conversation_id", f"{conversation_id[:80]!r} is not a conversation id", "id")
    return conversation_id


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not _KEY.match(key) or len(key) > _MAX_KEY_CHARS:
        raise Refused(400, "bad_idempotency_key",
                      f"Idempotency-Key must be 1..{_MAX_KEY_CHARS} visible ASCII characters",
                      "Idempotency-Key")
    return key


def _decode(decoder: msgspec.json.Decoder[T], raw: bytes) -> T:
    try:
        return decode_json(raw, decoder)
    except msgspec.ValidationError as e:
        found = _FIELD.search(str(e))
        raise Refused(422, "invalid", str(e), found.group(1) if found else None) from e
    except msgspec.DecodeError as e:
        raise Refused(400, "bad_json", f"the body is not JSON: {e}") from e


def _text(text: str, field: str = "text") -> str:
    if not text.strip():
        raise Refused(422, "invalid", f"{field} is blank", field)
    return text


def _author(author: str | None) -> str | None:
    return (author or "").strip() or None


class ConversationApi:
    """The handlers, bound to Redis, the Kafka publisher and the integrations' tokens."""

    def __init__(self, settings: Settings, redis_getter: RedisGetter, publish: Publisher,
                 access: Integrations, *, timeout: float = 10.0,
                 queues: Callable[[], Collection[str]] = frozenset) -> None:
        namespace = f"{settings.topic_prefix}sb"
        self._redis = redis_getter
        self._publish = publish
        self._access = access
        tags = Tags(settings.kafka_partitions)
        self._cards = CardStore(namespace, settings.conversation_ttl_seconds, tags)
        self._history = HistoryStore(namespace, cap=settings.history_cap, tags=tags)
        self._outbound = settings.topic(OUTBOUND)
        self._conversation = settings.topic(CONVERSATION)
        self._max_body = settings.max_body_bytes
        self._timeout = timeout
        self._queues = queues

    def guarded(self, handler: Handler, scope: Scope) -> Callable[[web.Request], Awaitable[web.Response]]:
        """Ask for a token holding `scope` first; every refusal and outage becomes a JSON error."""
        async def guarded(request: web.Request) -> web.Response:
            try:
                return await handler(request, self._access.authorize(request.headers, scope))
            except Denied as e:
                return _error(e.status, e.code, e.message, **({"scope": e.scope} if e.scope else {}))
            except Refused as e:
                return _error(e.status, e.code, e.message, e.field)
            except (TimeoutError, RedisError, RedisClusterException) as e:
                log.warning("conversation store unavailable", extra={"reason": repr(e)})
                return _unavailable(f"conversation store unavailable: {e!r}")
            except TransientError as e:
                log.warning("publish failed", extra={"reason": e.reason})
                return _unavailable("Kafka did not take it; retry with the same Idempotency-Key")
        return guarded

    async def post_reply(self, request: web.Request, caller: Caller) -> web.Response:
        """Queue an agent's reply on the customer's channel; optionally set what happens next."""
        conversation_id = _conversation_id(request)
        key = _idempotency_key(request)
        body = await self._body(request, _reply_body)
        text = _text(body.text)
        card = await self._card(conversation_id, refuse_closed=True)
        reply_id = agent_reply_id("api", f"{caller.name}:{key}") if key else f"rep_{secrets.token_hex(12)}"
        now = datetime.now(UTC)
        author = _author(body.author)
        message = reply_to(card, text=text, author=author, reply_id=reply_id, now=now)
        await self._publish(self._outbound, conversation_id.encode(), encode(message))
        event_id = None
        if body.then is not None:
            event_id = lifecycle_event_id(reply_id, body.then)
            await self._emit(card, body.then, event_id, now, caller, author=author, reply_id=reply_id)
        log.info("reply queued", extra={"reply_id": reply_id, "conversation_id": conversation_id,
                                        "integration": caller.name, "then": body.then})
        return _json(ReplyQueued(reply_id=reply_id, conversation_id=conversation_id, event_id=event_id), 202)

    async def post_resolve(self, request: web.Request, caller: Caller) -> web.Response:
        """Mark the conversation resolved: its SLA clock stops and a follow-up is planned."""
        conversation_id = _conversation_id(request)
        key = _idempotency_key(request)
        body = await self._body(request, _resolve_body, empty_is={})
        card = await self._card(conversation_id, refuse_closed=True)
        return await self._queue(card, "resolved", caller, key, author=body.author, text=body.note)

    async def post_note(self, request: web.Request, caller: Caller) -> web.Response:
        """Add an internal note to the conversation's history; the customer never sees it."""
        conversation_id = _conversation_id(request)
        key = _idempotency_key(request)
        body = await self._body(request, _note_body)
        text = _text(body.text)
        card = await self._card(conversation_id, refuse_closed=False)
        return await self._queue(card, "note", caller, key, author=body.author, text=text)

    async def post_callback(self, request: web.Request, caller: Caller) -> web.Response:
        """Mark the conversation's call back made: reached, it is the answer; else a note of the try."""
        conversation_id = _conversation_id(request)
        key = _idempotency_key(request)
        body = await self._body(request, _callback_body, empty_is={})
        card = await self._card(conversation_id, refuse_closed=True)
        if card.callback is None:
            raise Refused(409, "no_callback", f"conversation {conversation_id} has no call back to mark; "
                          "its tier is answered in writing", "id")
        if body.reached:
            return await self._queue(card, "called_back", caller, key, author=body.author, text=body.note)
        tried = "called back, no answer" + (f": {body.note}" if body.note else "")
        return await self._queue(card, "note", caller, key, author=body.author, text=tried)

    async def post_transfer(self, request: web.Request, caller: Caller) -> web.Response:
        """Move the conversation to another queue: the brain hands it to that queue's team."""
        conversation_id = _conversation_id(request)
        key = _idempotency_key(request)
        body = await self._body(request, _transfer_body)
        if body.queue not in self._queues():
            raise Refused(422, "unknown_queue", f"the policy has no queue {body.queue!r}", "queue")
        card = await self._card(conversation_id, refuse_closed=True)
        if card.queue == body.queue:
            raise Refused(409, "same_queue", f"conversation {conversation_id} is already in queue "
                          f"{body.queue}", "queue")
        return await self._queue(card, "transferred", caller, key, author=body.author, text=body.note,
                                 queue=body.queue)

    async def get_conversation(self, request: web.Request, caller: Caller) -> web.Response:
        """The card, the customer's history lines (this conversation's marked) and recent conversations."""
        conversation_id = _conversation_id(request)
        limit = self._limit(request)
        card = await self._card(conversation_id, refuse_closed=False)
        async with asyncio.timeout(self._timeout):
            pipe = self._redis().pipeline(transaction=False)
            self._history.queue_read(pipe, [card.customer_id], limit)
            self._history.queue_read_recent(pipe, [card.customer_id])
            history, recent = await pipe.execute()
        [lines] = self._history.parse_lines(history)
        [conversations] = self._history.parse_recent(recent)
        marked = [HistoryLine(**msgspec.structs.asdict(line.entry), identity=line.identity,
                              this_conversation=line.entry.conversation_id == conversation_id)
                  for line in lines]
        return _json(ConversationView(card=card, history=marked, conversations=conversations))

    async def _queue(self, card: ConversationCard, kind: LifecycleKind, caller: Caller, key: str | None,
                     *, author: str | None, text: str | None, queue: str | None = None) -> web.Response:
        # with a key the id is fixed by who asked and the key; the kind keeps a note and a
        # resolve sent with one key apart
        cause = f"api:{caller.name}:{key}" if key else secrets.token_hex(16)
        event_id = lifecycle_event_id(cause, kind)
        await self._emit(card, kind, event_id, datetime.now(UTC), caller, author=_author(author), text=text,
                         queue=queue)
        log.info("conversation event queued", extra={"event_id": event_id, "kind": kind,
                                                     "conversation_id": card.conversation_id,
                                                     "integration": caller.name})
        return _json(EventQueued(event_id=event_id, conversation_id=card.conversation_id, kind=kind), 202)

    async def _emit(self, card: ConversationCard, kind: LifecycleKind, event_id: str, at: datetime,
                    caller: Caller, *, author: str | None, text: str | None = None,
                    reply_id: str | None = None, queue: str | None = None) -> None:
        # a transfer names the new queue; every other event the one it happened in
        event = ConversationEvent(event_id=event_id, conversation_id=card.conversation_id,
                                  customer_id=card.customer_id, kind=kind, at=at, author=author, text=text,
                                  queue=queue or card.queue, source=f"api:{caller.name}", reply_id=reply_id)
        await self._publish(self._conversation, card.customer_id.encode(), encode(event))

    async def _body(self, request: web.Request, decoder: msgspec.json.Decoder[T],
                    empty_is: dict[str, Any] | None = None) -> T:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge as e:
            raise Refused(413, "too_large", f"body is larger than {self._max_body} bytes") from e
        if not raw.strip() and empty_is is not None:
            raw = msgspec.json.encode(empty_is)
        elif request.content_type != "application/json" and not request.content_type.endswith("+json"):
            raise Refused(415, "unsupported_media_type", "send the body as 'Content-Type: application/json'")
        return _decode(decoder, raw)

    async def _card(self, conversation_id: str, *, refuse_closed: bool) -> ConversationCard:
        async with asyncio.timeout(self._timeout):
            card = await self._cards.get(self._redis(), conversation_id)
        if card is None:
            raise Refused(404, "not_found", f"no conversation {conversation_id}", "id")
        if refuse_closed and card.status == "closed":
            raise Refused(409, "closed", f"conversation {conversation_id} is closed; "
                          "the customer's next message opens a new one", "id")
        return card

    def _limit(self, request: web.Request) -> int:
        raw = request.query.get("limit", str(self._history.cap))
        if not raw.isdigit() or not 1 <= int(raw) <= self._history.cap:
            raise Refused(400, "bad_limit", f"limit must be 1..{self._history.cap}", "limit")
        return int(raw)


def _unavailable(message: str) -> web.Response:
    return unavailable(message, field=None)


def add_routes(app: web.Application, settings: Settings, redis_getter: RedisGetter, publish: Publisher,
               access: Integrations, *, queues: Callable[[], Collection[str]] = frozenset) -> ConversationApi:
    """Mount the conversations API on an application and return it."""
    api = ConversationApi(settings, redis_getter, publish, access, queues=queues)
    read: Scope = "conversations:read"
    write: Scope = "conversations:write"
    app.router.add_get("/v1/conversations/{id}", api.guarded(api.get_conversation, read))
    app.router.add_post("/v1/conversations/{id}/replies", api.guarded(api.post_reply, write))
    app.router.add_post("/v1/conversations/{id}/resolve", api.guarded(api.post_resolve, write))
    app.router.add_post("/v1/conversations/{id}/notes", api.guarded(api.post_note, write))
    app.router.add_post("/v1/conversations/{id}/callback", api.guarded(api.post_callback, write))
    app.router.add_post("/v1/conversations/{id}/transfer", api.guarded(api.post_transfer, write))
    return api
