"""The OpenAPI 3.1 document of the HTTP API, built from the msgspec structs the handlers use.

Served at `GET /v1/openapi.json` and committed at docs/openapi.json; `switchboard
export-schemas` rewrites the file, and a unit test fails when the committed copy is stale.
Where a handler answers with a plain dict, a struct below describes that dict.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from connectors.api.parse import ApiMessage
from connectors.webhook.sign import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER
from connectors.webhook.tool import WebhookBody
from processors.stores.directory import ImportCounts
from processors.stores.history import ConversationSummary
from router.http.conversations import (
    CallbackBody,
    ConversationView,
    EventQueued,
    NoteBody,
    ReplyBody,
    ReplyQueued,
    ResolveBody,
    TransferBody,
)
from router.http.customers import LinkBody, TierBody
from router.http.integrations import SCOPES, Scope
from schemas.identified import IdentityLink
from schemas.identity import Identity
from schemas.routed import HistoryEntry

__all__ = ["DOC_PATH", "add_route", "document", "render", "write"]

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
_REF = "#/components/schemas/{name}"


class ErrorDetail(msgspec.Struct, frozen=True, kw_only=True):
    """What went wrong: a stable code, a sentence, and the field or scope concerned."""

    code: str
    message: str
    field: str | None = None
    scope: Scope | None = None
    limit: int | None = None


class Error(msgspec.Struct, frozen=True, kw_only=True):
    """Every 4xx and 5xx answer of the API."""

    error: ErrorDetail


class MessageAccepted(msgspec.Struct, frozen=True, kw_only=True):
    """A message taken for routing: its event id and the thread it joins."""

    event_id: str
    channel: str
    thread_key: str
    sender: Identity


class CustomerLine(HistoryEntry, frozen=True, kw_only=True):
    """A line of a customer's history and the identity it concerns (none: the whole customer)."""

    identity: str | None = None


class SuggestedIdentity(msgspec.Struct, frozen=True, kw_only=True):
    """An identity the customer stated as theirs in a private message; an agent may link it."""

    identity: str
    evidence: str | None
    event_id: str | None
    via: str | None
    at: str


class CustomerView(msgspec.Struct, frozen=True, kw_only=True):
    """One customer: tier, name, identities, recent conversations and history (newest first)."""

    customer_id: str
    tier: str | None
    name: str | None
    identities: list[str]
    # stated by the customer, linked by nobody yet: POST .../identities confirms one
    suggested_identities: list[SuggestedIdentity]
    conversations: list[ConversationSummary]
    history: list[CustomerLine]


class TierSet(msgspec.Struct, frozen=True, kw_only=True):
    """A customer's tier as now set."""

    customer_id: str
    tier: str


class Health(msgspec.Struct, frozen=True, kw_only=True):
    """The process is up."""

    status: str


class CheckResult(msgspec.Struct, frozen=True, kw_only=True):
    """One dependency's answer."""

    ok: bool
    detail: str


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    """Whether every dependency answers, and what each said."""

    ready: bool
    checks: dict[str, CheckResult]


_STRUCTS: tuple[type, ...] = (
    Error, ApiMessage, MessageAccepted, CustomerView, LinkBody, IdentityLink, TierBody, TierSet,
    ImportCounts, ReplyBody, ReplyQueued, ResolveBody, NoteBody, CallbackBody, TransferBody, EventQueued,
    ConversationView,
    Health, Readiness, WebhookBody,
)
# every error answer, by status: its name in components/responses and what it means
_ERRORS = {
    400: ("BadRequest", "The body is not JSON, or an id, parameter or header is malformed."),
    401: ("Unauthorized", "No `Authorization: Bearer <token>`, or a token nobody issued."),
    403: ("Forbidden", "The token's integration lacks the scope this operation needs (`scope` names it)."),
    404: ("NotFound", "No such customer or conversation (or no such route)."),
    409: ("Conflict", "The state does not allow it (e.g. the conversation is closed)."),
    413: ("TooLarge", "The body is larger than SB_MAX_BODY_BYTES."),
    415: ("UnsupportedMediaType", "The body is not sent as `application/json` (`text/csv` for the import)."),
    422: ("Invalid", "The JSON is valid but a field is not (`field` names it)."),
    503: ("Unavailable", "Kafka or Redis did not answer in time; retry after `Retry-After` seconds."),
}
_SLACK_EVENT: dict[str, Any] = {
    "description": "Slack's Events API envelope, as Slack sends it.",
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"enum": ["url_verification", "event_callback"]},
        "challenge": {"type": "string"},
        "team_id": {"type": "string"},
        "event_id": {"type": "string"},
        "event": {"type": "object"},
    },
}


def _ref(struct: type) -> dict[str, str]:
    return {"$ref": _REF.format(name=struct.__name__)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _path_param(name: str, pattern: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "pattern": pattern}}


_CUSTOMER_ID = _path_param("id", r"^cus_[A-Za-z0-9_-]{1,64}$", "customer id")
_CONVERSATION_ID = _path_param("id", r"^con_[A-Za-z0-9_-]{1,64}$", "conversation id")
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "Retry-safe id per integration: the same key gives the same reply or event id.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"^[\x21-\x7e]+$"},
}
_LIMIT = {"name": "limit", "in": "query", "required": False,
          "description": "history lines to return, 1..SB_HISTORY_CAP (default: the cap)",
          "schema": {"type": "integer", "minimum": 1}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): {"$ref": f"#/components/responses/{_ERRORS[code][0]}"} for code in codes}


def _operation(summary: str, scope: Scope | None, responses: dict[str, Any], *,
               body: type | dict[str, Any] | None = None, media_type: str = "application/json",
               parameters: tuple[dict[str, Any], ...] = (), description: str = "") -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "security": [{"bearer": [scope]}] if scope else [],
        # every operation behind a token can be refused for it
        "responses": {**responses, **(_errors(401, 403) if scope else {})},
    }
    if description:
        op["description"] = description
    if parameters:
        op["parameters"] = list(parameters)
    if body is not None:
        schema = _ref(body) if isinstance(body, type) else body
        op["requestBody"] = {"required": True, "content": {media_type: {"schema": schema}}}
    return op


def _query(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "string"}}


def _messages() -> dict[str, Any]:
    return {
        "/v1/messages": {"post": _operation(
            "Send a customer message in through the API channel", "messages:write",
            {"202": _json(_ref(MessageAccepted), "Accepted for routing."), **_errors(400, 413, 422, 503)},
            body=ApiMessage,
            description="With `message_id` the event id is derived from it, so a retry is one message.")},
    }


def _customers() -> dict[str, Any]:
    actor = _query("actor", "who does it")
    return {
        "/v1/customers/import": {"post": _operation(
            "Import a directory CSV (identity,tier,name)", "customers:write",
            {"200": _json(_ref(ImportCounts), "What the import did."), **_errors(400, 413, 415, 422, 503)},
            body={"type": "string"}, media_type="text/csv", parameters=(actor,))},
        "/v1/customers/{id}": {"get": _operation(
            "A customer's profile, identities, conversations and history", "customers:read",
            {"200": _json(_ref(CustomerView), "The customer."), **_errors(400, 404, 503)},
            parameters=(_CUSTOMER_ID, _LIMIT))},
        "/v1/customers/{id}/identities": {"post": _operation(
            "Link an identity to this customer on an agent's evidence", "customers:write",
            {"201": _json(_ref(IdentityLink), "Linked."),
             "200": _json(_ref(IdentityLink), "Already linked by this request: the recorded link."),
             **_errors(400, 404, 409, 413, 422, 503)},
            body=LinkBody, parameters=(_CUSTOMER_ID,))},
        "/v1/customers/{id}/identities/{identity}": {"delete": _operation(
            "Part an identity from this customer", "customers:write",
            {"200": _json(_ref(IdentityLink), "Unlinked."), **_errors(400, 404, 409, 413, 422, 503)},
            parameters=(_CUSTOMER_ID, _path_param("identity", r"^.+$", "e.g. email:ada@example.com"),
                        actor, _query("evidence", "why")),
            description="Actor and evidence come from the query, or from a LinkBody JSON body.")},
        "/v1/customers/{id}/tier": {"put": _operation(
            "Set a customer's tier", "customers:write",
            {"200": _json(_ref(TierSet), "The tier is set."), **_errors(400, 404, 413, 422, 503)},
            body=TierBody, parameters=(_CUSTOMER_ID,))},
    }


def _conversations() -> dict[str, Any]:
    queued = "Handed to Kafka; the effect follows asynchronously."
    write = (_CONVERSATION_ID, _IDEMPOTENCY_KEY)
    return {
        "/v1/conversations/{id}": {"get": _operation(
            "A conversation's card, its customer's history and recent conversations", "conversations:read",
            {"200": _json(_ref(ConversationView), "The conversation."), **_errors(400, 404, 503)},
            parameters=(_CONVERSATION_ID, _LIMIT))},
        "/v1/conversations/{id}/replies": {"post": _operation(
            "Reply to the customer on their channel", "conversations:write",
            {"202": _json(_ref(ReplyQueued), queued), **_errors(400, 404, 409, 413, 415, 422, 503)},
            body=ReplyBody, parameters=write,
            description="The reply goes to sb.outbound.v1 and counts as given once the channel took it; "
                        "`then` also sets the conversation's state.")},
        "/v1/conversations/{id}/resolve": {"post": _operation(
            "Mark the conversation resolved", "conversations:write",
            {"202": _json(_ref(EventQueued), queued), **_errors(400, 404, 409, 413, 415, 422, 503)},
            body=ResolveBody, parameters=write, description="The body may be empty.")},
        "/v1/conversations/{id}/notes": {"post": _operation(
            "Add an internal note (never sent to the customer)", "conversations:write",
            {"202": _json(_ref(EventQueued), queued), **_errors(400, 404, 413, 415, 422, 503)},
            body=NoteBody, parameters=write)},
        "/v1/conversations/{id}/callback": {"post": _operation(
            "Mark the conversation's call back made", "conversations:write",
            {"202": _json(_ref(EventQueued), queued), **_errors(400, 404, 409, 413, 415, 422, 503)},
            body=CallbackBody, parameters=write,
            description="Only for a conversation whose tier is answered by calling back (its card has "
                        "a `callback`). Reached (the default): the call is the team's answer and the "
                        "first-response clock stops. Not reached: a note of the try; the task stays "
                        "open. The body may be empty.")},
        "/v1/conversations/{id}/transfer": {"post": _operation(
            "Transfer the conversation to another queue", "conversations:write",
            {"202": _json(_ref(EventQueued), queued), **_errors(400, 404, 409, 413, 415, 422, 503)},
            body=TransferBody, parameters=write,
            description="Publishes a `transferred` event; the new queue's team is handed the "
                        "conversation with its history and the note. An unknown queue is 422 "
                        "(`unknown_queue`); the queue it is already in, or a closed conversation, is 409.")},
    }


def _operations() -> dict[str, Any]:
    slack_headers = tuple({"name": h, "in": "header", "required": True, "schema": {"type": "string"}}
                          for h in ("X-Slack-Signature", "X-Slack-Request-Timestamp"))
    return {
        "/v1/slack/events": {"post": _operation(
            "Slack's Events API: agents' replies in a conversation's Slack thread", None,
            {"200": _json({"type": "object"}, "Taken (url_verification: the challenge echoed)."),
             "401": _json(_ref(Error), "Bad signature, or a timestamp outside five minutes."),
             **_errors(400, 413, 503)},
            body=_SLACK_EVENT, parameters=slack_headers,
            description="Authenticated by Slack's request signature (HMAC-SHA256 with the signing "
                        "secret), not by a bearer token.")},
        "/healthz": {"get": _operation("The process is up", None, {"200": _json(_ref(Health), "Up.")})},
        "/readyz": {"get": _operation("Every dependency answers", None, {
            "200": _json(_ref(Readiness), "Ready."),
            "503": _json(_ref(Readiness), "Not ready; `checks` says what is missing.")})},
        "/metrics": {"get": _operation("Prometheus metrics", None, {"200": {
            "description": "Prometheus text exposition.",
            "content": {"text/plain": {"schema": {"type": "string"}}}}})},
        "/v1/openapi.json": {"get": _operation("This document", None, {
            "200": _json({"type": "object"}, "The OpenAPI 3.1 document.")})},
        **_dashboard(),
    }


def _dashboard() -> dict[str, Any]:
    page = {"content": {"text/html": {"schema": {"type": "string"}}}}
    snapshot = _json({"type": "object"}, "The dashboard's snapshot (README: Dashboard).")
    return {
        "/dashboard": {"get": _operation("The live dashboard page (no data without a token)", None, {
            "200": {"description": "The page.", **page}})},
        "/dashboard/{file}": {"get": _operation("The dashboard's script and style sheet", None, {
            "200": {"description": "dashboard.js or dashboard.css."}, **_errors(404)},
            parameters=(_path_param("file", r"^dashboard\.(js|css)$", "the asset"),))},
        "/v1/dashboard": {"get": _operation("The dashboard's snapshot", "dashboard:read", {"200": snapshot})},
        "/v1/dashboard/events": {"get": _operation(
            "The dashboard's snapshots as server-sent events", "dashboard:read",
            {"200": {"description": "`event: snapshot` lines whose data is the snapshot; the stream "
                     "ends before the request deadline and the client reconnects.",
                     "content": {"text/event-stream": {"schema": {"type": "string"}}}}})},
    }


def document() -> dict[str, Any]:
    """The OpenAPI document as a dict."""
    _, components = msgspec.json.schema_components(_STRUCTS, ref_template=_REF)
    scopes = ", ".join(f"`{s}`" for s in SCOPES)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Switchboard HTTP API",
            "version": "1",
            "description": "Message intake, customers and conversations of the Switchboard support "
                           "router. Errors are always `{\"error\": {\"code\", \"message\", ...}}`.",
        },
        "paths": {**_messages(), **_customers(), **_conversations(), **_operations()},
        "webhooks": _webhooks(),
        "components": {
            "schemas": components,
            "responses": {name: _json(_ref(Error), meaning) for name, meaning in _ERRORS.values()},
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": f"An integration's token (`switchboard token new`); scopes: {scopes}. "
                               "Development tokens from SB_API_TOKENS hold every scope.",
            }},
        },
    }


def _webhooks() -> dict[str, Any]:
    """What Switchboard POSTs to a webhook destination: the receiver's side of the contract."""
    header = {"in": "header", "required": True, "schema": {"type": "string"}}
    return {"delivery": {"post": {
        "summary": "A routed conversation, a reply's receipt or a notice, for an agents' tool",
        "description": (
            "Sent to each webhook destination of the policy. Verify `X-Switchboard-Signature` "
            "(`t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.\" + body>` with the destination's "
            "secret; refuse a `t` older than 5 minutes) before parsing, and dedupe on "
            "`X-Switchboard-Delivery`: a delivery interrupted by a crash is sent again with the "
            "same id. Answer 2xx to accept; 408, 429 and 5xx are retried with backoff until the "
            "destination's deadline, then its fallback takes over; any other 4xx is final."),
        "parameters": [
            {**header, "name": SIGNATURE_HEADER, "description": "t=<unix seconds>,v1=<hex HMAC>"},
            {**header, "name": DELIVERY_HEADER, "description": "stable across retries and restarts"},
            {**header, "name": EVENT_HEADER, "description": "conversation.routed, conversation.transferred, "
                                                            "reply.receipt or conversation.event"},
        ],
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(WebhookBody)}}},
        "responses": {"2XX": {"description": "Taken; not sent again."},
                      "default": {"description": "408, 429 and 5xx are retried; other answers are final."}},
    }}}


@cache
def render() -> str:
    """The document as the JSON text committed at docs/openapi.json."""
    return json.dumps(document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write(path: Path = DOC_PATH) -> Path:
    """Write the document to `path` and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(), encoding="utf-8")
    return path


async def _serve(_: web.Request) -> web.Response:
    return web.Response(text=render(), content_type="application/json")


def add_route(app: web.Application) -> None:
    """Serve the document at GET /v1/openapi.json; no token needed."""
    app.router.add_get("/v1/openapi.json", _serve)
