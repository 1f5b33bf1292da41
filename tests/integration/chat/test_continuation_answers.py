"""Intake on real Redis: an answer to a chat's continuation mail links the session, or says why not."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import pytest
from redis.asyncio import Redis

from processors.intake.continuation import CONTINUATIONS
from processors.intake.stage import Intake
from processors.stage import Output, Record
from processors.stores.cards import CardStore, card_fields
from processors.stores.claims import ClaimStore
from processors.stores.history import Append, ConversationSummary, HistoryStore, RecentWrite
from processors.stores.identities import IdentityStore
from router.settings import Settings
from schemas import Identity, InboundMessage, OutboundMessage, decode, encode
from schemas.conversation import ConversationCard
from schemas.identified import IdentifiedMessage, IdentityLink
from schemas.ids import customer_id_for
from schemas.routed import HistoryEntry
from schemas.tokens import continuation_key, continuation_token
from schemas.topics import IDENTIFIED, IDENTITY, OUTBOUND

KEY = b"continuation-test-key"
AT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
VISITOR = "ada@example.org"


@pytest.fixture
async def redis(stack: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(stack.redis_dsn)
    yield client
    await client.aclose()


class Chat:
    """A chat conversation in Redis as the pipeline leaves it: a session's customer, history, card."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.ns = f"t{uuid.uuid4().hex}"
        self.history = HistoryStore(self.ns, cap=10)
        self.identities = IdentityStore(self.ns, self.history)
        self.cards = CardStore(self.ns, 600)
        self.session = Identity(kind="chat", value="s_" + uuid.uuid4().hex[:22])
        self.conversation = f"con_{uuid.uuid4().hex[:20]}"
        # the chat's own instant: tokens are checked against it, never against the wall clock
        self.intake = Intake(redis, ClaimStore(namespace=self.ns, ttl_seconds=600), self.identities, KEY,
                             cards=self.cards, clock=lambda: AT)
        self.offset = 0

    @property
    def customer(self) -> str:
        return customer_id_for(self.session)

    async def start(self) -> None:
        """The visitor chatted: their session is a customer with a line and a conversation."""
        await self.process(InboundMessage(
            event_id=f"ev_{uuid.uuid4().hex}", channel="chat", native_id=f"{self.session.value}:m1",
            thread_key=f"chat:{self.session.value}", sender=self.session, received_at=AT,
            text="Can you check order 77?"))
        pipe = self.redis.pipeline(transaction=False)
        self.history.queue_append(pipe, [Append(self.customer, [HistoryEntry(
            at=AT, channel="chat", conversation_id=self.conversation, direction="in",
            summary="Can you check order 77?")], self.session)])
        self.history.queue_write_recent(pipe, [RecentWrite(self.customer, [ConversationSummary(
            conversation_id=self.conversation, queue="general", status="open", last_at=AT,
            identity=str(self.session))])])
        self.cards.queue_write(pipe, {self.conversation: card_fields(ConversationCard(
            conversation_id=self.conversation, customer_id=self.customer, channel="chat",
            recipient=self.session, queue="general", tier="standard", urgency="normal", priority=3,
            status="open", opened_at=AT, updated_at=AT, in_reply_to=f"{self.session.value}:m1"))})
        await pipe.execute()

    async def process(self, message: InboundMessage) -> list[Output]:
        self.offset += 1
        return await self.intake.process([Record("sb.inbound.v1", 0, self.offset, encode(message))])


def answer(sender: str, token: str, text: str = "Great, thanks!") -> InboundMessage:
    """A mail answering the continuation: the token rides in the plus-address it was sent to."""
    return InboundMessage(
        event_id=f"ev_{uuid.uuid4().hex}", channel="email", native_id=f"{uuid.uuid4().hex}@example.org",
        thread_key="root@support.example.com", sender=Identity(kind="email", value=sender),
        received_at=AT, text=text, subject="Re: Your chat with Example Support", reply_token=token)


def token(chat: Chat, address: str = VISITOR, last_day: date = date(2026, 12, 23)) -> str:
    return continuation_token(chat.conversation, address, last_day, continuation_key(KEY))


def later(token: str) -> str:
    """The token with its last day moved a month on: altered."""
    conversation, day, signature = token.split(".")
    return f"{conversation}.{int(day, 16) + 30:05x}.{signature}"


def count(verdict: str) -> float:
    return CONTINUATIONS.labels(verdict)._value.get()


async def test_the_visitors_answer_links_the_session_to_their_address_and_copies_into_the_chat(
        redis: Redis) -> None:
    chat = Chat(redis)
    await chat.start()
    before = count("verified")
    mail = answer(VISITOR, token(chat))
    outputs = await chat.process(mail)
    assert count("verified") == before + 1
    by_topic = {o.topic: o for o in outputs}
    assert [o.topic for o in outputs] == [IDENTITY, OUTBOUND, IDENTIFIED]

    mine = customer_id_for(Identity(kind="email", value=VISITOR))
    identified = decode(by_topic[IDENTIFIED].value, IdentifiedMessage)
    assert identified.customer_id == mine and "continuation" in identified.message.tags
    assert identified.identified_at == AT
    decision = identified.decisions[-1]
    assert decision.stage == "identify" and decision.outcome == "linked"
    assert f"{chat.session} linked to {mine}" in decision.reasons[-1]

    link = decode(by_topic[IDENTITY].value, IdentityLink)
    assert (link.action, link.identity, link.customer_id, link.previous_customer_id) == (
        "link", chat.session, mine, chat.customer)
    # the session, its line and its conversation are the address's customer's now
    assert set(await chat.identities.identities(redis, mine)) == {
        chat.session, Identity(kind="email", value=VISITOR)}
    pipe = redis.pipeline(transaction=False)
    chat.history.queue_read(pipe, [mine], 10)
    chat.history.queue_read_recent(pipe, [mine])
    lines, recent = await pipe.execute()
    assert [line.entry.summary for line in chat.history.parse_lines(lines)[0]] == ["Can you check order 77?"]
    assert [s.conversation_id for s in chat.history.parse_recent(recent)[0]] == [chat.conversation]

    copy = decode(by_topic[OUTBOUND].value, OutboundMessage)
    assert (copy.kind, copy.channel, copy.recipient, copy.conversation_id, copy.text, copy.author) == (
        "transcript", "chat", chat.session, chat.conversation, "Great, thanks!", VISITOR)
    assert copy.in_reply_to == f"{chat.session.value}:m1" and copy.customer_id == mine

    # the same record read again after a crash: a replay finds the link made, and the same copy
    chat.offset -= 1
    again = await chat.process(mail)
    assert [o.topic for o in again] == [OUTBOUND, IDENTIFIED]
    copied = decode(next(o for o in again if o.topic == OUTBOUND).value, OutboundMessage)
    assert copied.reply_id == copy.reply_id
    assert decode(next(o for o in again if o.topic == IDENTIFIED).value,
                  IdentifiedMessage).decisions[-1].outcome == "linked"
    # and another record with the same event: a duplicate, dropped
    assert await chat.process(mail) == []


async def test_a_second_answer_after_the_link_changes_nothing_more(redis: Redis) -> None:
    chat = Chat(redis)
    await chat.start()
    await chat.process(answer(VISITOR, token(chat)))
    outputs = await chat.process(answer(VISITOR, token(chat), "One more thing"))
    assert [o.topic for o in outputs] == [OUTBOUND, IDENTIFIED]
    identified = decode(next(o for o in outputs if o.topic == IDENTIFIED).value, IdentifiedMessage)
    assert identified.decisions[-1].outcome == "linked"


@pytest.mark.parametrize(("sender", "make", "verdict", "words"), [
    ("eve@example.net", token, "other_address", "mailed to another address"),
    (VISITOR, lambda chat: token(chat)[:-1] + ("0" if token(chat)[-1] != "0" else "1"), "other_address",
     "mailed to another address"),
    (VISITOR, lambda chat: later(token(chat)), "forged", "not ours or was altered"),
    (VISITOR, lambda chat: token(chat).replace(chat.conversation[-4:], "beef", 1), "forged",
     "not ours or was altered"),
    (VISITOR, lambda chat: chat.conversation + ".4f2a0.0123456789abcdef", "forged",
     "not ours or was altered"),
    (VISITOR, lambda chat: token(chat, last_day=date(2026, 11, 22)), "expired", "expired after 2026-11-22"),
])
async def test_a_token_from_elsewhere_altered_or_expired_links_nothing(
        redis: Redis, sender: str, make: object, verdict: str, words: str) -> None:
    chat = Chat(redis)
    await chat.start()
    before = count(verdict)
    outputs = await chat.process(answer(sender, make(chat)))  # type: ignore[operator]
    assert count(verdict) == before + 1
    assert [o.topic for o in outputs] == [IDENTIFIED]
    identified = decode(outputs[0].value, IdentifiedMessage)
    decision = identified.decisions[-1]
    assert decision.outcome == "new" and words in decision.reasons[-1], decision
    assert identified.customer_id == customer_id_for(Identity(kind="email", value=sender))
    assert "continuation" not in identified.message.tags
    assert set(await chat.identities.identities(redis, chat.customer)) == {chat.session}


async def test_an_answer_for_a_conversation_no_longer_known_links_nothing(redis: Redis) -> None:
    chat = Chat(redis)
    await chat.start()
    await redis.delete(chat.cards.key(chat.conversation))
    outputs = await chat.process(answer(VISITOR, token(chat)))
    assert [o.topic for o in outputs] == [IDENTIFIED]
    reasons = decode(outputs[0].value, IdentifiedMessage).decisions[-1].reasons
    assert "no longer known; nothing linked" in reasons[-1]
