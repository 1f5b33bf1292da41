"""Simulated agents behind their real tools: signed webhooks and the team mailboxes.

Each team has shifts (local hours, agents on duty), takes what its tools are handed —
most pressing first — and works each item for a while of simulated time. Answers go
back through the replies API; a team mailbox's agent answers the handoff mail itself
(the reply threads back by its agent token). Some answers trip the reply guard (the
agent rewrites a held one), some conversations are transferred, some resolved too soon.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web

from bench.day.clock import SimClock
from connectors.webhook.errors import SignatureError
from connectors.webhook.sign import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, verify

__all__ = ["GUARD_BAIT", "QUEUE_TEAMS", "Desk", "Item", "Shift", "Team", "staffed"]

# phrases the example policy's reply guard knows: (text, rule); "calm down" is held, the other warned
GUARD_BAIT = (
    ("Please calm down, we are looking into it. ", "telling-feelings"),
    ("Due to company policy we have to check this first. ", "policy-quoting"),
)
_CONVERSATION = re.compile(r"\bcon_[A-Za-z0-9_-]+")
_QUEUE_TAG = re.compile(r"\[([\w.-]+)\] ")
# which team works which queue of the example policy (social is the general team's, by mail)
QUEUE_TEAMS = {"general": "general", "social": "general", "billing": "billing", "escalations": "escalations"}
_PRESSING = re.compile(r"priority (\d+) · first response due (\S+)")


@dataclass(frozen=True)
class Shift:
    """`agents` on duty from local hour `begin` to `end`."""

    begin: int
    end: int
    agents: int


def staffed(shifts: tuple[Shift, ...], local_hour: float) -> int:
    """Agents on duty at a local hour of the day."""
    return sum(s.agents for s in shifts if s.begin <= local_hour < s.end)


@dataclass(order=True)
class Item:
    """Work for a team: a routed message to answer, or a held reply to rewrite."""

    priority: int
    due: datetime
    key: str = field(compare=False)
    conversation_id: str = field(compare=False)
    customer_id: str = field(compare=False)
    text: str = field(compare=False, default="")
    kind: str = field(compare=False, default="answer")  # answer | rewrite | callback
    reply_to: EmailMessage | None = field(compare=False, default=None)  # the handoff mail, from a mailbox
    thread: tuple[str, str] | None = field(compare=False, default=None)  # (channel, ts) of its Slack thread


@dataclass
class Team:
    """A team: its shifts and its queue of work."""

    name: str
    shifts: tuple[Shift, ...]
    waiting: list[Item] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    busy: int = 0

    def add(self, item: Item) -> None:
        """Queue an item once (handoffs are at least once; a team reads two tools)."""
        if item.key not in self.seen:
            self.seen.add(item.key)
            self.waiting.append(item)

    def take(self) -> Item | None:
        """The most pressing item: priority first, then due time."""
        if not self.waiting:
            return None
        best = min(self.waiting)
        self.waiting.remove(best)
        return best


@dataclass
class Stats:
    """What the desk did (the system's own record is what the scorecard reads)."""

    replies: int = 0
    rewrites: int = 0
    transfers: int = 0
    resolves: int = 0
    callbacks_made: int = 0
    slack_answers: int = 0
    callbacks_unreached: int = 0
    refused_signatures: int = 0
    down_refusals: int = 0


class Desk:
    """Every team's agents, the webhook receivers they read and the way they answer."""

    def __init__(
        self,
        *,
        clock: SimClock,
        zone: ZoneInfo,
        teams: dict[str, Team],
        secrets: dict[str, bytes],
        api: str,
        token: str,
        rng: random.Random,
        answer_text: Callable[[str], str],
        mail_answer: Callable[[EmailMessage, str], Awaitable[None]],
        in_thread: Callable[[tuple[str, str], str, str], Awaitable[None]] | None = None,
        down: tuple[datetime, datetime] | None = None,
    ) -> None:
        self.clock, self.zone, self.teams, self.secrets = clock, zone, teams, secrets
        self.api, self.token, self.rng = api, token, rng
        self._answer_text, self._mail_answer = answer_text, mail_answer
        self._in_thread = in_thread
        self.down = down
        self.stats = Stats()
        self.transferred: set[str] = set()
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._working: set[asyncio.Task[None]] = set()  # items in hand: finish() lets them land
        self._stopping = False

    # --- the tools -----------------------------------------------------------------
    async def start(self) -> None:
        """Listen for webhooks (one path per webhook destination) and put the agents to work."""
        app = web.Application(client_max_size=2 * 1024 * 1024)
        app.router.add_post("/hook/{destination}", self._webhook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/hook"
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        for team in self.teams.values():
            most = max((s.agents for s in team.shifts), default=0) * 2 + 1
            self._tasks += [asyncio.create_task(self._agent(team, seat)) for seat in range(most)]

    async def finish(self) -> None:
        """End the shift: no agent takes a new item; those in hand are posted before this returns."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._working, return_exceptions=True)

    async def stop(self) -> None:
        """Send the agents home, dropping what they hold, and stop listening."""
        for work in self._working:
            work.cancel()
        await self.finish()
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def is_down(self, destination: str) -> bool:
        """Whether the helpdesk is having its outage now."""
        if self.down is None or destination != "helpdesk-webhook":
            return False
        return self.down[0] <= self.clock.now() < self.down[1]

    async def _webhook(self, request: web.Request) -> web.Response:
        destination = request.match_info["destination"]
        body = await request.read()
        if self.is_down(destination):
            self.stats.down_refusals += 1
            return web.Response(status=503, text="helpdesk maintenance")
        secret = self.secrets.get(destination)
        try:
            if secret is None:
                raise SignatureError(f"no secret for {destination}")
            # the sender signs with the simulated clock; so does the receiver check
            verify(
                secret,
                request.headers.get(SIGNATURE_HEADER, ""),
                body,
                self.clock.now().timestamp(),
                tolerance=3600,
            )
        except SignatureError as e:
            self.stats.refused_signatures += 1
            return web.Response(status=401, text=str(e))
        payload: dict[str, Any] = json.loads(body)
        team = self.teams[_team_of(destination)]
        event = request.headers.get(EVENT_HEADER, "")
        delivery = request.headers.get(DELIVERY_HEADER, "")
        if event == "conversation.routed" and payload.get("routed"):
            r = payload["routed"]
            team.add(
                Item(
                    priority=int(r["priority"]),
                    due=_due(r.get("first_response_due"), self.clock.now()),
                    key=r["event_id"],
                    conversation_id=r["conversation_id"],
                    customer_id=r["customer_id"],
                    text=r["message"]["text"],
                    # the tier is answered by a call: the item is a number to ring, not a reply to write
                    kind="callback" if r.get("reply_mode") == "callback" else "answer",
                )
            )
        elif event == "reply.receipt" and (receipt := payload.get("receipt")) and receipt["status"] == "held":
            card = payload["conversation"]
            team.add(
                Item(
                    priority=0,
                    due=self.clock.now(),
                    key="held:" + receipt["reply_id"],
                    conversation_id=card["conversation_id"],
                    customer_id=card["customer_id"],
                    kind="rewrite",
                )
            )
        elif event in ("conversation.transferred", "conversation.event"):
            # a transfer is handed over whole; a notice may say it was reassigned here
            self._moved_here(team, payload["conversation"], None)
        _ = delivery
        return web.Response(status=200, text="ok")

    def _moved_here(self, team: Team, card: dict[str, Any], mail: EmailMessage | None) -> None:
        """A conversation handed to one of this team's queues (transferred or reassigned to it): work."""
        if QUEUE_TEAMS.get(card["queue"], "general") != team.name or card.get("status") not in ("open", None):
            return
        due = card.get("first_response_due")
        team.add(
            Item(
                priority=int(card.get("priority", 50)),
                due=_due(due, self.clock.now()),
                key=f"moved:{card['conversation_id']}:{card['queue']}",
                conversation_id=card["conversation_id"],
                customer_id=card.get("customer_id", ""),
                kind="callback" if card.get("callback") else "answer",
                reply_to=mail,
            )
        )

    def team_mail(self, recipient: str, mail: EmailMessage) -> None:
        """A handoff mail reached a team mailbox."""
        team = self.teams[_team_of(recipient)]
        event = str(mail.get("X-Switchboard-Event", ""))
        body = mail.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        found = _CONVERSATION.search(text)
        if found is None:
            return
        if event == "conversation.routed":
            pressing = _PRESSING.search(text)
            priority = int(pressing.group(1)) if pressing else 50
            due = _due(
                pressing.group(2) if pressing and pressing.group(2) != "none" else None, self.clock.now()
            )
            team.add(
                Item(
                    priority=priority,
                    due=due,
                    key="mail:" + str(mail.get("X-Switchboard-Delivery")),
                    conversation_id=found.group(0),
                    customer_id="",
                    text=text,
                    kind="callback" if "CALL BACK +" in text else "answer",
                    reply_to=mail,
                )
            )
        elif (event in ("conversation.transferred", "conversation.event")
              and (queue := _QUEUE_TAG.match(str(mail.get("Subject", ""))))):
            self._moved_here(team, {"queue": queue.group(1), "conversation_id": found.group(0)}, mail)
        elif event == "reply.receipt" and " was held" in text:
            team.add(
                Item(
                    priority=0,
                    due=self.clock.now(),
                    key="held:" + str(mail.get("X-Switchboard-Delivery")),
                    conversation_id=found.group(0),
                    customer_id="",
                    kind="rewrite",
                    reply_to=mail,
                )
            )

    # --- the agents ----------------------------------------------------------------
    async def _agent(self, team: Team, seat: int) -> None:
        while not self._stopping:
            hour = self.clock.now().astimezone(self.zone)
            on_duty = seat < staffed(team.shifts, hour.hour + hour.minute / 60)
            item = team.take() if on_duty else None
            if item is None:
                await asyncio.sleep(self.clock.real_seconds(timedelta(minutes=1)))
                continue
            team.busy += 1
            try:
                minutes = 3.0 if item.kind == "rewrite" else self.rng.lognormvariate(math.log(6), 0.5)
                await asyncio.sleep(self.clock.real_seconds(timedelta(minutes=minutes)))
                # the shift's end does not cut a reply in half: finish() waits for it instead
                work = asyncio.create_task(self._work(team, item, f"{team.name}-{seat}"))
                self._working.add(work)
                work.add_done_callback(self._working.discard)
                await asyncio.shield(work)
            finally:
                team.busy -= 1

    async def _work(self, team: Team, item: Item, agent: str) -> None:
        rng = self.rng
        if item.thread is not None and self._in_thread is not None:
            # a Slack thread: the agent answers in it (a call back is marked `called:` there)
            self.stats.slack_answers += 1
            said = "called: reached them, solved on the phone" if item.kind == "callback" else ""
            await self._in_thread(item.thread, said or self._answer_text(item.text), agent)
            return
        if item.kind == "callback":
            await self._call_back(team, item, agent)
            return
        if (
            item.kind == "answer"
            and team.name == "general"
            and item.customer_id
            and item.conversation_id not in self.transferred
            and rng.random() < 0.06
        ):
            # "that's billing": passed on, once per conversation
            self.transferred.add(item.conversation_id)
            self.stats.transfers += 1
            await self._post(f"/v1/conversations/{item.conversation_id}/transfer",
                             {"queue": "billing", "author": agent, "note": "that's a billing question"})
            return
        text = self._answer_text(item.text)
        if item.kind == "rewrite":
            self.stats.rewrites += 1
        elif rng.random() < 0.08:
            text = rng.choice(GUARD_BAIT)[0] + text
        then: str | None = None
        if rng.random() < 0.75:
            then = "resolved"
            self.stats.resolves += 1
        if item.reply_to is not None and then is None:
            await self._mail_answer(item.reply_to, text)
        else:
            await self._reply(item.conversation_id, text, agent, then)
        self.stats.replies += 1

    async def _call_back(self, team: Team, item: Item, agent: str) -> None:
        """Ring the caller and mark the call made; one in eight is not reached and is tried again later."""
        reached = self.rng.random() >= 0.125
        note = "called back, solved on the phone" if reached else "no answer, left a message"
        await self._post(f"/v1/conversations/{item.conversation_id}/callback",
                         {"reached": reached, "author": agent, "note": note})
        if reached:
            self.stats.callbacks_made += 1
            return
        self.stats.callbacks_unreached += 1
        again = Item(item.priority, item.due, item.key + ":again", item.conversation_id, item.customer_id,
                     item.text, "callback")

        async def later() -> None:
            await asyncio.sleep(self.clock.real_seconds(timedelta(minutes=30)))
            team.add(again)

        self._tasks.append(asyncio.create_task(later()))

    async def _reply(self, conversation_id: str, text: str, agent: str, then: str | None) -> None:
        body: dict[str, Any] = {"text": text, "author": agent}
        if then:
            body["then"] = then
        await self._post(f"/v1/conversations/{conversation_id}/replies", body)

    async def _post(self, path: str, body: dict[str, Any]) -> None:
        """POST to the replies API until it takes it (the same key: at most once)."""
        assert self._session is not None
        key = uuid.uuid4().hex
        for _ in range(20):
            try:
                async with self._session.post(
                    f"{self.api}{path}",
                    json=body,
                    headers={"Authorization": f"Bearer {self.token}", "Idempotency-Key": key},
                ) as r:
                    if r.status in (200, 201, 202, 409):
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.5)


def _team_of(destination: str) -> str:
    if destination.startswith("billing"):
        return "billing"
    if destination.startswith("pager"):
        return "escalations"
    return "general"


def _due(value: str | None, now: datetime) -> datetime:
    return datetime.fromisoformat(value) if value else now + timedelta(days=1)
