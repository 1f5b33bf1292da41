"""The simulated customers: they write, chase, answer our answers and our follow-ups.

What each does next depends on what reaches them: our mail arrives at the simulator's
SMTP sink and is read the way a person would read it (an acknowledgement, a status
update, an answer, a follow-up). An out-of-office mailbox answers automatically, a dead
one bounces.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage

import aiohttp

from bench.day.clock import SimClock
from bench.day.mail import Folder, bounce, customer_mail
from bench.day.plan import Contact, Customer, DayPlan
from bench.day.visitors import ChatVisitor, leave_voicemail
from tests.emulators.twilio import TwilioEmulator
from tests.emulators.x import XEmulator

__all__ = ["Crowd", "kind_of"]

CHASE = (
    "Any update on this? I wrote earlier and I am still waiting for an answer.",
    "Hello?? Still nothing from you about my request. Please answer.",
)
NOT_SOLVED = "No, it is still broken. The same problem happened again this morning."
SOLVED = "Yes, works now. Thank you!"
ANSWER_BACK = (
    "Thanks, but one more question: how long will that take?",
    "Thank you. Can you also confirm the change by email?",
)


def kind_of(text: str) -> str:
    """What one of our mails is, as the customer reads it."""
    lowered = text.lower()
    if "haven't forgotten you" in lowered or "haven\u2019t forgotten you" in lowered:
        return "status_update"
    if "is everything working" in lowered:
        return "follow_up"
    if any(w in lowered for w in ("your reference is", "expect an answer by", "get back to you by")):
        return "acknowledgement"
    return "answer"


@dataclass
class _State:
    last: EmailMessage | None = None  # our latest mail, to answer in its thread
    answered_at: datetime | None = None
    wrote_at: datetime | None = None
    auto_replied: bool = False
    answered_back: bool = False
    follow_ups: int = 0


@dataclass
class Counts:
    """What the customers did."""

    contacts: int = 0
    chasers: int = 0
    answers_back: int = 0
    auto_replies: int = 0
    bounces: int = 0
    follow_up_answers: int = 0
    x_deliveries: int = 0
    mail_received: dict[str, int] = field(default_factory=dict)
    chats_opened: int = 0
    chat_messages: int = 0
    chat_answers_seen: int = 0
    chats_left: int = 0
    continuation_mails: int = 0
    voicemails: int = 0
    texts_received: dict[str, int] = field(default_factory=dict)


class Crowd:
    """Every customer of the day and their reactions."""

    def __init__(
        self,
        plan: DayPlan,
        *,
        clock: SimClock,
        folder: Folder,
        api: str,
        token: str,
        rng: random.Random,
        spawn: Callable[[Awaitable[None]], None],
        x: XEmulator | None = None,
        x_webhook: str = "",
        twilio: TwilioEmulator | None = None,
        site_secret: bytes | None = None,
    ) -> None:
        self.plan, self.clock, self.folder, self.api, self.token = plan, clock, folder, api, token
        self.rng, self._spawn = rng, spawn
        self.x, self.x_webhook = x, x_webhook
        self.twilio, self.site_secret = twilio, site_secret
        self.visitors: dict[str, ChatVisitor] = {}
        self.by_phone = {c.phone: c for c in plan.customers if c.phone}
        self._texts_read = 0
        if x is not None:
            for c in plan.customers:
                if c.x_id:
                    handle = c.name.lower().replace(" ", "_")
                    x.users[c.x_id] = {"id": c.x_id, "name": c.name, "username": handle}
        self.by_address = {c.address: c for c in plan.customers}
        self.state = {c.address: _State() for c in plan.customers}
        self.counts = Counts()
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the HTTP session."""
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    async def stop(self) -> None:
        """Close the visitors' sockets and the HTTP session."""
        for visitor in self.visitors.values():
            await visitor.leave()
        if self._session is not None:
            await self._session.close()

    async def play(self) -> None:
        """Send every first contact at its moment on the simulated clock."""
        for contact in self.plan.contacts:
            wait = self.clock.real_at(contact.at) - self.clock.real()
            if wait > 0:
                await asyncio.sleep(wait)
            await self._first(contact)

    async def _first(self, contact: Contact) -> None:
        who = contact.customer
        self.counts.contacts += 1
        st = self.state[who.address]
        st.wrote_at, st.answered_at = self.clock.now(), None
        await self.write(who, contact.channel, contact.text, contact.subject)
        if who.chases:
            self._spawn(self._chase(who, contact))

    async def _chase(self, who: Customer, contact: Contact) -> None:
        await asyncio.sleep(self.clock.real_seconds(who.patience))
        st = self.state[who.address]
        if st.answered_at is not None:
            return
        # chasing where it is quickest for them: their other channel when they have one
        channel = who.channels[1] if len(who.channels) > 1 else who.channels[0]
        self.counts.chasers += 1
        await self.write(who, channel, self.rng.choice(CHASE), "Re: " + contact.subject)

    async def write(
        self,
        who: Customer,
        channel: str,
        text: str,
        subject: str,
        *,
        reply_to: EmailMessage | None = None,
        auto: bool = False,
    ) -> None:
        """One message from a customer on a channel."""
        if channel == "x" and self.x is not None and who.x_id:
            await self._on_x(who, text)
            return
        if channel == "chat":
            await self._in_chat(who, text)
            return
        if channel == "phone" and self.twilio is not None and who.phone:
            await self._call(who, text)
            return
        if channel == "email":
            raw, _ = customer_mail(
                who.address, who.name, subject, text, self.clock.now(), reply_to=reply_to, auto=auto
            )
            await self.folder.file(raw, self.clock.now())
            return
        assert self._session is not None
        body = {"sender": who.address, "text": text, "subject": subject, "message_id": uuid.uuid4().hex}
        for _ in range(20):
            try:
                async with self._session.post(
                    f"{self.api}/v1/messages", json=body, headers={"Authorization": f"Bearer {self.token}"}
                ) as r:
                    if r.status in (200, 202):
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.5)

    async def _on_x(self, who: Customer, text: str) -> None:
        """A public mention most of the time, a DM (saying their address) otherwise; X signs the delivery."""
        assert self.x is not None and who.x_id is not None
        if self.rng.random() < 0.7:
            envelope = self.x.envelope("post.mention.create", self.x.mention(text[:250], author=who.x_id))
        else:
            said = f"{text} My email is {who.address}."
            envelope = self.x.envelope("dm.received", self.x.dm(said, sender=who.x_id))
        for _ in range(20):
            try:
                status, _ = await self.x.deliver(self.x_webhook, envelope)
                if status == 200:
                    self.counts.x_deliveries += 1
                    return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.5)

    async def _in_chat(self, who: Customer, text: str) -> None:
        """Say it in the web chat: the open tab, or a new one."""
        assert self._session is not None
        visitor = self.visitors.get(who.address)
        if visitor is None or not visitor.here:
            visitor = ChatVisitor(
                self._session,
                self.api.replace("http://", "ws://") + "/v1/chat/socket",
                who.address,
                site_secret=self.site_secret if who.logged_in else None,
                on_agent=lambda text: self._chat_answer(who, text),
            )
            await visitor.open()
            self.visitors[who.address] = visitor
            self.counts.chats_opened += 1
            if not who.stays_in_chat:
                self._spawn(self._leave(who, visitor))
        await visitor.say(text)
        self.counts.chat_messages += 1

    async def _leave(self, who: Customer, visitor: ChatVisitor) -> None:
        """A visitor who does not wait: gone in a few minutes, the answer follows by mail."""
        await asyncio.sleep(self.clock.real_seconds(timedelta(minutes=self.rng.uniform(2, 10))))
        if not visitor.seen:
            self.counts.chats_left += 1
            await visitor.leave()

    def _chat_answer(self, who: Customer, text: str) -> None:
        """An agent's message showed in the visitor's chat."""
        self.counts.chat_answers_seen += 1
        st = self.state[who.address]
        st.answered_at = self.clock.now()
        if who.answers_back and not st.answered_back:
            st.answered_back = True
            self.counts.answers_back += 1
            self._spawn(self._say_later(who, self.rng.choice(ANSWER_BACK), minutes=5))

    async def _say_later(self, who: Customer, text: str, minutes: float) -> None:
        span = timedelta(minutes=self.rng.uniform(minutes / 2, minutes * 2))
        await asyncio.sleep(self.clock.real_seconds(span))
        visitor = self.visitors.get(who.address)
        if visitor is not None and visitor.here:
            await visitor.say(text)
            self.counts.chat_messages += 1

    async def _call(self, who: Customer, text: str) -> None:
        """A voicemail: the call, its recording and its transcript through Twilio's signed webhooks."""
        assert self._session is not None and who.phone is not None
        # a minute to speak, a minute to transcribe, on the simulated clock
        await leave_voicemail(
            self._session, self.api, who.phone, text[:1000],
            pause=lambda: self.clock.real_seconds(timedelta(minutes=1)),
        )
        self.counts.voicemails += 1

    def read_texts(self) -> None:
        """The texts Twilio took for our callers since the last look (acknowledgements, answers)."""
        if self.twilio is None:
            return
        new = self.twilio.messages[self._texts_read :]
        self._texts_read += len(new)
        for sms in new:
            who = self.by_phone.get(sms.to)
            kind = kind_of(sms.body)
            self.counts.texts_received[kind] = self.counts.texts_received.get(kind, 0) + 1
            if who is not None and kind == "answer":
                self.state[who.address].answered_at = self.clock.now()

    async def watch_texts(self) -> None:
        """Read the callers' texts as they come, until cancelled."""
        while True:
            self.read_texts()
            await asyncio.sleep(0.5)

    def mail(self, recipient: str, message: EmailMessage) -> None:
        """One of our mails reached a customer's mailbox (the SMTP sink's callback)."""
        who = self.by_address.get(recipient)
        if who is None:
            return
        body = message.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        kind = kind_of(text)
        self.counts.mail_received[kind] = self.counts.mail_received.get(kind, 0) + 1
        if "in your chat with" in text:
            self.counts.continuation_mails += 1
        st = self.state[who.address]
        if who.dead_mailbox:
            self.counts.bounces += 1
            now = self.clock.now()
            self._spawn(self.folder.file(bounce(message, recipient, now), now))
            return
        st.last = message
        if who.out_of_office and not st.auto_replied:
            st.auto_replied = True
            self.counts.auto_replies += 1
            self._spawn(
                self.write(
                    who,
                    "email",
                    "I am out of the office until Monday with limited access to email.",
                    "",
                    reply_to=message,
                    auto=True,
                )
            )
            return
        if kind == "answer":
            st.answered_at = self.clock.now()
            if who.answers_back and not st.answered_back:
                st.answered_back = True
                self.counts.answers_back += 1
                self._spawn(self._later(who, message, self.rng.choice(ANSWER_BACK), minutes=20))
        elif kind == "follow_up":
            st.follow_ups += 1
            self.counts.follow_up_answers += 1
            words = SOLVED if who.satisfied_after_resolve or st.follow_ups > 1 else NOT_SOLVED
            self._spawn(self._later(who, message, words, minutes=30))

    async def _later(self, who: Customer, message: EmailMessage, text: str, minutes: float) -> None:
        await asyncio.sleep(
            self.clock.real_seconds(timedelta(minutes=self.rng.uniform(minutes / 2, minutes * 2)))
        )
        await self.write(who, "email", text, "", reply_to=message)
