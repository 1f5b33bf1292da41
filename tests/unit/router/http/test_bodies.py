"""Every route reading a JSON body answers invalid UTF-8 and a JSON bomb with a counted 400, and serves on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY
from pydantic import SecretStr
from redis.asyncio import Redis

from connectors.slack.routes import PATH as SLACK_PATH
from processors.policy.load import load_policy
from router.http.app import edge_app
from router.settings import Settings
from router.vocabulary import VOCABULARY
from schemas.identified import IdentityLink
from tests.emulators import slack
from tests.paths import EXAMPLE_POLICY

TOKEN = "dev-token"
SECRET = "slack-signing-secret"
CONVERSATION = "/v1/conversations/con_0123456789abcdef0123"
CUSTOMER = "/v1/customers/cus_ada"
JSON = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
BOMB = b"[" * 50_000 + b"]" * 50_000  # nested past any stack

# each route that decodes a JSON body, with a body it would take but for one invalid byte
ROUTES = [
    ("POST", "/v1/messages", b'{"sender": "ada@example.com", "text": "caf\xe9"}', "bad_json"),
    ("POST", f"{CONVERSATION}/replies", b'{"text": "caf\xe9"}', "bad_json"),
    ("POST", f"{CONVERSATION}/notes", b'{"text": "caf\xe9"}', "bad_json"),
    ("POST", f"{CONVERSATION}/resolve", b'{"note": "caf\xe9"}', "bad_json"),
    ("POST", f"{CUSTOMER}/identities", b'{"identity": "bob@example.com", "evidence": "caf\xe9"}', "bad_json"),
    ("DELETE", f"{CUSTOMER}/identities/bob@example.com", b'{"evidence": "caf\xe9"}', "bad_json"),
    ("PUT", f"{CUSTOMER}/tier", b'{"tier": "caf\xe9"}', "bad_json"),
    # signed, so the body is read; Slack's unreadable signed bodies have their own code
    ("POST", SLACK_PATH, b'{"type": "event_callback", "event": {"text": "caf\xe9"}}', "bad_event"),
]
IDS = [f"{method} {path}" for method, path, _, _ in ROUTES]


class Published:
    """The app's publisher: records what would go to Kafka."""

    def __init__(self) -> None:
        self.values: list[bytes] = []

    async def __call__(self, topic: str, key: bytes, value: bytes) -> None:
        self.values.append(value)

    async def link(self, link: IdentityLink) -> None:
        self.values.append(link.customer_id.encode())


@pytest.fixture
async def api() -> AsyncIterator[tuple[TestClient[web.Request, web.Application], Published]]:
    settings = Settings(api_tokens=(SecretStr(TOKEN),), sections={
        "slack": {"bot_token": "xoxb-unused", "signing_secret": SECRET}})
    redis = Redis.from_url("redis://127.0.0.1:9")  # never reached: every body here is refused first
    published = Published()
    policy = load_policy(EXAMPLE_POLICY, VOCABULARY)
    app = edge_app(settings, {}, publish=published, publish_link=published.link, redis=lambda: redis,
                   policy=lambda: policy)
    async with TestClient(TestServer(app)) as client:
        yield client, published
    await redis.aclose()


def headers(path: str, body: bytes) -> dict[str, str]:
    return slack.signed_headers(SECRET, body) if path == SLACK_PATH else JSON


def rejected(code: str) -> float:
    return REGISTRY.get_sample_value("sb_api_rejected_total", {"code": code}) or 0.0


async def refused(client: TestClient[web.Request, web.Application], method: str, path: str, body: bytes,
                  code: str) -> dict[str, Any]:
    before = rejected(code)
    response = await client.request(method, path, data=body, headers=headers(path, body))
    assert response.status == 400, await response.text()
    answer: dict[str, Any] = await response.json()
    assert answer["error"]["code"] == code
    assert rejected(code) == before + 1
    healthy = await client.get("/healthz")
    assert healthy.status == 200
    return answer


@pytest.mark.parametrize(("method", "path", "body", "code"), ROUTES, ids=IDS)
async def test_invalid_utf8_is_a_counted_400(api: tuple[TestClient[web.Request, web.Application], Published],
                                             method: str, path: str, body: bytes, code: str) -> None:
    client, published = api
    answer = await refused(client, method, path, body, code)
    assert "not UTF-8" in answer["error"]["message"]
    assert published.values == []


@pytest.mark.parametrize(("method", "path", "body", "code"), ROUTES, ids=IDS)
async def test_a_json_bomb_is_a_counted_400(api: tuple[TestClient[web.Request, web.Application], Published],
                                            method: str, path: str, body: bytes, code: str) -> None:
    client, published = api
    answer = await refused(client, method, path, BOMB, code)
    assert "nested too deeply" in answer["error"]["message"]
    assert published.values == []


async def test_the_next_good_message_is_taken(
        api: tuple[TestClient[web.Request, web.Application], Published]) -> None:
    client, published = api
    await refused(client, "POST", "/v1/messages", BOMB, "bad_json")
    await refused(client, "POST", "/v1/messages", b'{"text": "\xff"}', "bad_json")
    response = await client.post("/v1/messages", json={"sender": "ada@example.com", "text": "café"},
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status == 202
    assert len(published.values) == 1
