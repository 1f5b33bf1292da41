"""The agents' Slack: what our bot posts in the emulator becomes work; answers go back as Slack events.

A conversation's first post (a top-level message in a team's channel) names the
conversation, its priority, when the first response is due and whether it is a call
back. The agent answers in that post's thread: a message event signed with the app's
signing secret, on the simulated clock, to the edge's `/v1/slack/events`, which sends it
to the customer (or, starting `called:`, marks the call back made). A later post in the
thread saying the customer wrote again (or the conversation moved here) is work too.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from bench.day.clock import SimClock
from bench.day.desk import Item
from tests.emulators.slack import Post, SlackEmulator, send_event, thread_reply

__all__ = ["SIGNING_SECRET", "SlackDesk", "follow_up_of", "item_of"]

SIGNING_SECRET = "day-slack-signing-secret"
_PRIORITY = re.compile(r"· P(\d+)$")
_CONVERSATION = re.compile(r"`(con_[A-Za-z0-9_-]+)`")
_DATE = re.compile(r"<!date\^(\d+)\^")


_AGAIN = re.compile(r"\* · .* · P(\d+) · first response due (.*)$")


def follow_up_of(post: Post, root: Item) -> Item | None:
    """The work a post in a conversation's thread asks for: the customer wrote again, or it moved here."""
    sections = (b for b in post.blocks if b.get("type") == "section" and "text" in b)
    lead = next((str(b["text"]["text"]) for b in sections), "")
    again = _AGAIN.search(lead)
    if post.thread_ts is None or again is None or not (" wrote again*" in lead or " moved to " in lead):
        return None
    due = _DATE.search(again.group(2))
    return Item(
        priority=int(again.group(1)),
        due=datetime.fromtimestamp(int(due.group(1)), UTC) if due else root.due,
        key=f"slack:{post.channel}:{post.ts}",
        conversation_id=root.conversation_id,
        customer_id="",
        text=post.text or "",
        kind=root.kind,
        thread=root.thread,
    )


def item_of(post: Post, now: datetime) -> Item | None:
    """The work a conversation's first post asks for; None for any other post."""
    if post.thread_ts is not None:
        return None
    header = next((b["text"]["text"] for b in post.blocks if b.get("type") == "header"), "")
    facts = {
        name.strip("*"): value
        for b in post.blocks
        if b.get("type") == "section"
        for f in b.get("fields", [])
        for name, _, value in [str(f.get("text", "")).partition("\n")]
    }
    conversation = _CONVERSATION.search(facts.get("Conversation", ""))
    if conversation is None:
        return None
    priority = _PRIORITY.search(header)
    due = _DATE.search(facts.get("First response due", ""))
    return Item(
        priority=int(priority.group(1)) if priority else 50,
        due=datetime.fromtimestamp(int(due.group(1)), UTC) if due else now + timedelta(days=1),
        key=f"slack:{post.channel}:{post.ts}",
        conversation_id=conversation.group(1),
        customer_id="",
        text=post.text or "",
        kind="callback" if "Call back" in facts else "answer",
        thread=(post.channel, post.ts),
    )


class SlackDesk:
    """Reads the bot's posts for the teams and answers in their threads."""

    def __init__(self, slack: SlackEmulator, clock: SimClock, events_url: str) -> None:
        self.slack, self.clock, self.events_url = slack, clock, events_url
        self.refused = 0
        self._read = 0
        self._roots: dict[tuple[str, str], Item] = {}  # (channel, ts) of a conversation's first post
        self._session: aiohttp.ClientSession | None = None

    def settings(self) -> dict[str, Any]:
        """SB_SLACK for the router: the emulator's Web API and our signing secret."""
        return {"bot_token": self.slack.token, "signing_secret": SIGNING_SECRET,
                "base_url": self.slack.base_url}

    async def watch(self, hand: Callable[[Item], None]) -> None:
        """Hand every new conversation post to its team, until cancelled."""
        while True:
            new = self.slack.posts[self._read :]
            self._read += len(new)
            for post in new:
                root = self._roots.get((post.channel, post.thread_ts or ""))
                item = follow_up_of(post, root) if root is not None else item_of(post, self.clock.now())
                if item is not None and root is None:
                    self._roots[(post.channel, post.ts)] = item
                if item is not None:
                    hand(item)
            await asyncio.sleep(0.5)

    async def answer(self, thread: tuple[str, str], text: str, agent: str) -> None:
        """An agent's message in the thread, as Slack delivers it to the edge."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        user = "U0" + re.sub(r"[^A-Z0-9]", "", agent.upper())[:9]
        payload = thread_reply(thread[0], thread[1], text[:3000], user=user)
        for _ in range(20):
            try:
                status, _ = await send_event(self._session, self.events_url, SIGNING_SECRET, payload,
                                             timestamp=int(self.clock.now().timestamp()))
                if status == 200:
                    return
                self.refused += 1
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.5)

    async def stop(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
