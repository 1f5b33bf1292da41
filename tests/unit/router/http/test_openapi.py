"""The OpenAPI document: committed copy current, every mounted route documented, refs resolve."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import SecretStr

from processors.policy.load import load_policy
from router.http import conversations as conversations_api
from router.http import openapi
from router.http.app import edge_app
from router.http.integrations import SCOPES
from router.settings import Settings
from router.vocabulary import VOCABULARY
from tests.paths import EXAMPLE_POLICY


def test_committed_openapi_document_is_current() -> None:
    committed = openapi.DOC_PATH.read_text(encoding="utf-8")
    assert committed == openapi.render(), "docs/openapi.json is stale: run `switchboard export-schemas`"


async def _never(topic: str, key: bytes, value: bytes) -> None:
    raise AssertionError("building the app publishes nothing")


def _app() -> web.Application:
    """The edge's application, as `switchboard run` serves it; building it does no I/O."""
    settings = Settings(api_tokens=(SecretStr("t"),), sections={"slack": {
        "bot_token": "xoxb-t", "signing_secret": "s"}})

    def no_redis() -> Any:
        raise AssertionError("building the app touches no Redis")

    return edge_app(settings, {}, publish=_never, publish_link=_never,  # type: ignore[arg-type]
                    redis=no_redis, policy=lambda: load_policy(EXAMPLE_POLICY, VOCABULARY))


def test_every_mounted_route_is_documented() -> None:
    document = openapi.document()
    mounted = {(r.method.lower(), r.resource.canonical) for r in _app().router.routes()
               if r.method != "HEAD" and r.resource is not None}
    documented = {(method, path) for path, ops in document["paths"].items() for method in ops}
    assert mounted <= documented, mounted - documented
    assert documented == mounted, documented - mounted


def test_security_names_real_scopes_and_open_routes_are_few() -> None:
    open_routes = set()
    for path, ops in openapi.document()["paths"].items():
        for method, op in ops.items():
            if not op["security"]:
                open_routes.add(path)
                continue
            [[scope]] = [r["bearer"] for r in op["security"]]
            assert scope in SCOPES, (method, path)
            assert {"401", "403"} <= set(op["responses"]), (method, path)
    assert open_routes == {"/healthz", "/readyz", "/metrics", "/v1/openapi.json", "/v1/slack/events",
                           "/dashboard", "/dashboard/{file}"}


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [node["$ref"]] if "$ref" in node else [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_every_reference_resolves() -> None:
    document = openapi.document()
    refs = set(_refs(document))
    assert refs
    for ref in refs:
        node: Any = document
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        assert node, ref


def test_the_document_is_openapi_31_built_from_our_structs() -> None:
    document = json.loads(openapi.render())
    assert document["openapi"] == "3.1.0"
    schemas = document["components"]["schemas"]
    reply = schemas["ReplyBody"]
    assert reply["required"] == ["text"] and reply["additionalProperties"] is False
    assert reply["properties"]["text"]["maxLength"] == conversations_api.MAX_TEXT_CHARS
    assert set(schemas["ConversationView"]["properties"]) == {"card", "history", "conversations"}
    assert "this_conversation" in schemas["HistoryLine"]["properties"]
    replies = document["paths"]["/v1/conversations/{id}/replies"]["post"]
    assert {p["name"] for p in replies["parameters"]} == {"id", "Idempotency-Key"}
