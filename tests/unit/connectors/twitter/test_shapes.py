"""Our Activity API fixtures and the emulator's deliveries use only names X's OpenAPI document has."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.emulators.x import XEmulator
from tests.paths import FIXTURES

OPENAPI = json.loads((FIXTURES / "x" / "openapi-x-api-v2.json").read_text())["components"]["schemas"]
PAYLOADS = {"post.mention.create": "Post", "post.reply.create": "Post", "dm.received": "DmEvent",
            "chat.received": "ChatMessageEvent"}


def names(schema: str) -> set[str]:
    return set(OPENAPI[schema]["properties"])


def check(envelope: dict[str, Any]) -> None:
    data = envelope.get("data")
    if data is None:
        return
    assert set(data) <= set(OPENAPI["ActivityStreamResponse"]["properties"]["data"]["properties"])
    if data["event_type"] in PAYLOADS:
        assert set(data["payload"]) <= names(PAYLOADS[data["event_type"]]), data["payload"]
    includes = data.get("includes", {})
    assert set(includes) <= names("Expansions")
    for user in includes.get("users", []):
        assert set(user) <= names("User")


@pytest.mark.parametrize("path", sorted((FIXTURES / "x" / "activity").glob("*.json")), ids=lambda p: p.name)
def test_recorded_deliveries_have_the_openapi_shape(path: Path) -> None:
    check(json.loads(path.read_bytes()))


def test_the_emulator_delivers_the_openapi_shape() -> None:
    x = XEmulator()
    mention = x.mention("hello", quotes="1")
    check(x.envelope("post.mention.create", mention))
    check(x.envelope("post.reply.create", x.mention("again", reply_to=mention["id"], mentions_us=False)))
    check(x.envelope("dm.received", x.dm("hi")))
