"""The web chat end to end in a real browser: widget → socket → routed → agent reply → page.

Debian's chromium opens the test page `switchboard run` serves, with the widget embedded
by its one tag; a `worker` shares the stages, so a reply may be sent by either process
and still reaches the socket the edge holds. Screenshots land in tests/artefacts/.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest
from playwright.async_api import Page

from router.settings import Settings
from tests.browser import ARTEFACTS, open_page
from tests.e2e.test_email import routed
from tests.processes import Switchboard

pytestmark = pytest.mark.e2e
Launch = Callable[..., Switchboard]


async def shown(page: Page) -> list[tuple[int, str, str]]:
    """(number, author, text) of every message on screen, in screen order."""
    rows = await page.eval_on_selector_all(
        ".sb-log li", "items => items.map(i => [Number(i.dataset.seq), i.className, "
        "i.querySelector('.sb-text').textContent])")
    return [(seq, cls.split("sb-")[-1].strip(), text) for seq, cls, text in rows]


async def showing(page: Page, text: str, timeout: float = 60) -> list[tuple[int, str, str]]:
    """Wait until a message with `text` is on screen; the whole screen then."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = await shown(page)
        if any(t == text for _, _, t in rows):
            return rows
        assert asyncio.get_running_loop().time() < deadline, f"{text!r} never shown; screen: {rows}"
        await asyncio.sleep(0.1)


def contiguous(rows: list[tuple[int, str, str]]) -> None:
    """Numbers 1..n, each once, in order: no duplicates, no holes."""
    assert [seq for seq, _, _ in rows] == list(range(1, len(rows) + 1)), rows


async def test_a_visitor_chats_replies_arrive_reload_keeps_history_and_a_drop_loses_nothing(
        deployment: Settings, launch: Launch) -> None:
    chat = {"email_after_seconds": 600}
    edge = launch("run", SB_CHAT=json.dumps(chat))
    chat["allowed_origins"] = [edge.url]  # type: ignore[assignment]
    launch("worker", SB_CHAT=json.dumps(chat))
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    async with open_page() as page:
        await page.goto(f"{edge.url}/chat/demo.html")
        await page.wait_for_selector(".sb-chat[data-state=open]")
        await page.fill(".sb-send textarea", "My parcel never arrived")
        await page.click(".sb-send button")
        await showing(page, "My parcel never arrived")
        [first] = await routed(deployment, 1, timeout=120)
        assert first.message.channel == "chat" and first.message.sender.kind == "chat"

        status, body = await asyncio.to_thread(
            edge.post, f"/v1/conversations/{first.conversation_id}/replies",
            json.dumps({"text": "Sorry! A new parcel left today.", "author": "maria"}).encode())
        assert status == 202, body
        rows = await showing(page, "Sorry! A new parcel left today.")
        contiguous(rows)
        await page.screenshot(path=str(ARTEFACTS / "chat-1-reply.png"))

        await page.reload()
        await page.wait_for_selector(".sb-chat[data-state=open]")
        again = await showing(page, "Sorry! A new parcel left today.")
        assert again == rows, "a reload shows the same history"

        # the connection drops mid-conversation: a reply and a message cross the gap
        await page.evaluate("window.SwitchboardChat.drop()")
        status, _ = await asyncio.to_thread(
            edge.post, f"/v1/conversations/{first.conversation_id}/replies",
            json.dumps({"text": "Tracking: SB123", "author": "maria"}).encode())
        assert status == 202
        await page.fill(".sb-send textarea", "Thanks, and the tracking number?")
        await page.click(".sb-send button")
        await showing(page, "Tracking: SB123")
        final = await showing(page, "Thanks, and the tracking number?")
        contiguous(final)
        assert [t for _, _, t in final].count("Tracking: SB123") == 1
        await page.screenshot(path=str(ARTEFACTS / "chat-2-after-drop.png"))
        second = await routed(deployment, 2, timeout=120)
        assert {r.conversation_id for r in second} == {first.conversation_id}
