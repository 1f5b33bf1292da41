"""The customers API: profile, identities and history; links, tiers and the CSV import.

Mounted beside router.http; `require_token` names the caller first, whose scope is checked
(`customers:read` for GET, `customers:write` for the rest):
    GET    /v1/customers/{id}                        profile, identities, conversations, history
    POST   /v1/customers/{id}/identities             {"identity", "evidence", "actor"} → 201 link
    DELETE /v1/customers/{id}/identities/{identity}  ?actor=&evidence= (or that JSON) → 200 unlink
    PUT    /v1/customers/{id}/tier                   {"tier", "actor"?} → 200
    POST   /v1/customers/import?actor=               text/csv body → 200 counts
Every link and unlink is published (`publish_link`) before the answer. When publishing
fails the change stands and the answer is 503; repeating the request publishes the same
event again (consumers dedupe by its event id) and answers 200.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import msgspec
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisClusterException, RedisError

from processors.intake.identify import MAX_EVIDENCE_CHARS, parse_identity
from processors.stores.directory import Directory, parse_directory_csv
from processors.stores.history import HistoryStore
from processors.stores.identities import IdentityStore, LinkRefused
from processors.stores.tags import UNTAGGED, Tags
from router.http.errors import error, unavailable
from router.http.integrations import Caller, Scope, forbidden
from schemas.codec import decode_json
from schemas.errors import ConfigError, ParseError, TransientError
from schemas.identified import IdentityLink
from schemas.identity import Identity

__all__ = ["CustomerApi", "add_routes"]

log = logging.getLogger(__name__)

RedisGetter = Callable[[], Redis]
PublishLink = Callable[[IdentityLink], Awaitable[None]]
# who is asking: an integration (its scopes are checked per route), or a plain yes/no
RequireToken = Callable[[web.Request], Caller | bool | None]
Handler = Callable[[web.Request], Awaitable[web.Response]]

_CUSTOMER_ID = re.compile(r"^cus_[A-Za-z0-9_-]{1,64}$")
_FIELD = re.compile(r"(?:field `|at `\$\.)(\w+)")
_MAX_ACTOR_CHARS = 100
_STATUS = {"unknown_customer": 404, "already_linked": 409, "not_linked": 409}


class LinkBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a link or unlink says: which identity, why, and who says so."""

    identity: str = ""
    evidence: str = ""
    actor: str = ""


class TierBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A new tier and who set it."""

    tier: str
    actor: str = "api"


_link_body = msgspec.json.Decoder(LinkBody)
_tier_body = msgspec.json.Decoder(TierBody)


class Refused(Exception):
    """A request answered with a 4xx JSON error."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


def _error(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    return error(status, code, message, field=field)


def _customer_id(request: web.Request) -> str:
    customer_id = request.match_info["id"]
    if not _CUSTOMER_ID.match(customer_id):
        raise Refused(400, "bad_customer_id", f"{customer_id[:80]!r} is not a customer id", "id")
    return customer_id


def _decode(decoder: msgspec.json.Decoder[Any], raw: bytes) -> Any:
    try:
        return decode_json(raw, decoder)
    except msgspec.DecodeError as e:
        found = _FIELD.search(str(e))
        raise Refused(400 if not found else 422, "bad_json" if not found else "invalid", str(e),
                      found.group(1) if found else None) from e


def _identity(raw: str) -> Identity:
    try:
        return parse_identity(raw)
    except ParseError as e:
        raise Refused(422, "invalid", e.reason, "identity") from e


def _checked(body: LinkBody) -> LinkBody:
    actor, evidence = body.actor.strip(), body.evidence.strip()
    if not actor or len(actor) > _MAX_ACTOR_CHARS:
        raise Refused(422, "invalid", f"actor is required, at most {_MAX_ACTOR_CHARS} characters", "actor")
    if not evidence or len(evidence) > MAX_EVIDENCE_CHARS:
        raise Refused(422, "invalid", f"evidence is required, at most {MAX_EVIDENCE_CHARS} characters",
                      "evidence")
    return LinkBody(body.identity, evidence, actor)


class CustomerApi:
    """The handlers, bound to Redis, the link publisher and the policy's tiers."""

    def __init__(self, redis_getter: RedisGetter, publish_link: PublishLink, valid_tiers: Collection[str],
                 require_token: RequireToken, *, namespace: str, history_cap: int = 50,
                 timeout: float = 10.0, tags: Tags = UNTAGGED) -> None:
        self._redis = redis_getter
        self._publish = publish_link
        self._tiers = frozenset(valid_tiers)
        self._allowed = require_token
        self._history = HistoryStore(namespace, cap=history_cap, tags=tags)
        self._ids = IdentityStore(namespace, self._history, timeout=timeout)
        self._directory = Directory(self._ids, timeout=timeout * 3)
        self._timeout = timeout

    def guarded(self, handler: Handler, scope: Scope) -> Handler:
        """Ask for the token and its `scope` first; refusals and an unreachable Redis become JSON errors."""
        async def guarded(request: web.Request) -> web.Response:
            caller = self._allowed(request)
            if not caller:
                return _error(401, "unauthorized", "a valid 'Authorization: Bearer <token>' is required")
            if isinstance(caller, Caller) and not caller.may(scope):
                denied = forbidden(caller, scope)
                return error(403, denied.code, denied.message, field=None, scope=scope)
            try:
                return await handler(request)
            except Refused as e:
                return _error(e.status, e.code, e.message, e.field)
            except (TimeoutError, RedisError, RedisClusterException, TransientError) as e:
                # the log keeps the cause; the caller learns only that it may retry
                log.warning("customer store unavailable", extra={"error": repr(e)})
                return unavailable("customer store unavailable; retry", field=None)
        return guarded

    async def get_customer(self, request: web.Request) -> web.Response:
        """One customer: tier, name, identities, recent conversations and history."""
        customer_id = _customer_id(request)
        limit = self._limit(request)
        redis = self._redis()
        async with asyncio.timeout(self._timeout):
            pipe = redis.pipeline(transaction=False)
            pipe.exists(*self._ids.customer_keys(customer_id))
            self._directory.queue_read_profiles(pipe, [customer_id])
            self._history.queue_read(pipe, [customer_id], limit)
            self._history.queue_read_recent(pipe, [customer_id])
            found, profiles, history, conversations = await pipe.execute()
            if not found:
                raise Refused(404, "not_found", f"no customer {customer_id}", "id")
            identities = await self._ids.identities(redis, customer_id)
            suggested = await self._ids.suggestions(redis, customer_id)
        [profile] = self._directory.parse_profiles([customer_id], profiles)
        [lines] = self._history.parse_lines(history)
        [recent] = self._history.parse_recent(conversations)
        return web.json_response({
            "customer_id": customer_id, "tier": profile.tier, "name": profile.name,
            "identities": [str(i) for i in identities],
            # stated by the customer, linked by nobody yet: POST /identities confirms one
            "suggested_identities": [
                {"identity": identity, "evidence": b.evidence, "event_id": b.event_id, "via": b.via,
                 "at": b.since.isoformat()} for identity, b in suggested.items()],
            "conversations": msgspec.to_builtins(recent),
            "history": [{"identity": line.identity, **msgspec.to_builtins(line.entry)} for line in lines],
        })

    async def post_identity(self, request: web.Request) -> web.Response:
        """Link an identity to this customer on an agent's evidence."""
        customer_id = _customer_id(request)
        body = _checked(_decode(_link_body, await request.read()))
        identity = _identity(body.identity)
        return await self._change(self._ids.link(self._redis(), identity, customer_id,
                                                 evidence=body.evidence, actor=body.actor), 201)

    async def delete_identity(self, request: web.Request) -> web.Response:
        """Part an identity from this customer; it goes back to its own customer."""
        customer_id = _customer_id(request)
        raw = await request.read()
        body = _decode(_link_body, raw) if raw.strip() else LinkBody(
            evidence=request.query.get("evidence", ""), actor=request.query.get("actor", ""))
        body = _checked(body)
        identity = _identity(request.match_info["identity"])
        return await self._change(self._ids.unlink(self._redis(), identity, customer_id,
                                                   evidence=body.evidence, actor=body.actor), 200)

    async def put_tier(self, request: web.Request) -> web.Response:
        """Set this customer's tier to one the policy knows."""
        customer_id = _customer_id(request)
        body: TierBody = _decode(_tier_body, await request.read())
        if body.tier not in self._tiers:
            known = ", ".join(sorted(self._tiers))
            raise Refused(422, "invalid", f"unknown tier {body.tier!r}; known: {known}", "tier")
        redis = self._redis()
        if not await self._directory.exists(redis, customer_id):
            raise Refused(404, "not_found", f"no customer {customer_id}", "id")
        await self._directory.set_tier(redis, customer_id, body.tier, body.actor.strip()[:_MAX_ACTOR_CHARS])
        return web.json_response({"customer_id": customer_id, "tier": body.tier})

    async def post_import(self, request: web.Request) -> web.Response:
        """Import a directory CSV: every identity's customer gets its tier and name."""
        if request.content_type not in ("text/csv", "text/plain"):
            raise Refused(415, "unsupported_media_type", "send the CSV as 'Content-Type: text/csv'")
        try:
            text = (await request.read()).decode("utf-8")
        except UnicodeDecodeError as e:
            raise Refused(400, "bad_encoding", f"the CSV is not UTF-8: {e}") from e
        try:
            rows = parse_directory_csv(text, self._tiers)
        except ConfigError as e:
            raise Refused(422, "invalid_csv", e.reason, e.where) from e
        actor = request.query.get("actor", "").strip()[:_MAX_ACTOR_CHARS] or "import"
        counts = await self._directory.import_rows(self._redis(), rows, actor)
        return web.json_response(msgspec.to_builtins(counts))

    async def _change(self, change: Awaitable[IdentityLink], status: int) -> web.Response:
        try:
            link = await change
        except LinkRefused as e:
            if e.recorded is None:
                raise Refused(_STATUS.get(e.code, 409), e.code, e.reason, "identity") from e
            link, status = e.recorded, 200  # a repeat: publish the same event again
        await self._publish(link)
        return web.json_response(msgspec.to_builtins(link), status=status)

    def _limit(self, request: web.Request) -> int:
        raw = request.query.get("limit", str(self._history.cap))
        if not raw.isdigit() or not 1 <= int(raw) <= self._history.cap:
            raise Refused(400, "bad_limit", f"limit must be 1..{self._history.cap}", "limit")
        return int(raw)


def add_routes(app: web.Application, redis_getter: RedisGetter, publish_link: PublishLink,
               valid_tiers: Collection[str], require_token: RequireToken, *, namespace: str,
               history_cap: int = 50, tags: Tags = UNTAGGED) -> CustomerApi:
    """Mount the customers API on an application and return it."""
    api = CustomerApi(redis_getter, publish_link, valid_tiers, require_token,
                      namespace=namespace, history_cap=history_cap, tags=tags)
    write: Scope = "customers:write"
    app.router.add_post("/v1/customers/import", api.guarded(api.post_import, write))
    app.router.add_get("/v1/customers/{id}", api.guarded(api.get_customer, "customers:read"))
    app.router.add_post("/v1/customers/{id}/identities", api.guarded(api.post_identity, write))
    app.router.add_delete("/v1/customers/{id}/identities/{identity}", api.guarded(api.delete_identity, write))
    app.router.add_put("/v1/customers/{id}/tier", api.guarded(api.put_tier, write))
    return api
