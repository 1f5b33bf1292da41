"""The X sender through tweepy's async client against the local X: every way a reply goes, or why not."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from prometheus_client import REGISTRY

from connectors.twitter.outbound import XSender, deep_link
from connectors.twitter.parse import DM_MODE, PUBLIC_MODE, UNSUMMONED_MODE
from connectors.twitter.settings import XSettings
from router.settings import Settings
from schemas.identity import Identity
from schemas.outbound import OutboundMessage
from tests.emulators.x import ADA, DUPLICATE, XEmulator

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
BOB = "2244994945"
REDIS = Settings().redis_dsn
DM_INVITE = XSettings.model_fields["dm_invite"].default


@dataclass
class Clock:
    """A clock both sides read; sleeping moves it on instead of waiting."""

    now: float = T0.timestamp()
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@dataclass
class World:
    x: XEmulator
    clock: Clock

    # the account's pacer and budget live in Redis: each test its own namespace
    namespace: str = field(default_factory=lambda: f"t{uuid.uuid4().hex}")

    def settings(self, **changes: Any) -> XSettings:
        return XSettings(account_id=self.x.account, handle=self.x.handle, consumer_key=self.x.consumer_key,
                         consumer_secret=self.x.consumer_secret, access_token=self.x.access_token,
                         access_token_secret=self.x.access_token_secret, base_url=self.x.base_url,
                         **({"redis_url": REDIS, "namespace": self.namespace} | changes))

    async def sender(self, **changes: Any) -> XSender:
        sender = XSender(self.settings(**changes), clock=self.clock, sleep=self.clock.sleep)
        await sender.start()
        return sender


@pytest.fixture
async def world(stack: Settings) -> AsyncIterator[World]:
    clock = Clock()
    emulator = await XEmulator(clock=clock).start()
    try:
        yield World(emulator, clock)
    finally:
        await emulator.stop()


def reply(text: str, *, post: str | None = None, mode: str = PUBLIC_MODE, n: int = 1) -> OutboundMessage:
    return OutboundMessage(reply_id=f"rep_{n}", conversation_id="con_1", channel="x",
                           recipient=Identity(kind="xid", value=ADA), kind="agent_reply", text=text,
                           created_at=T0, in_reply_to=post, references=(mode,), customer_id="cus_ada")


def cost(call: str) -> float:
    return REGISTRY.get_sample_value("sb_x_api_cost_usd_total", {"account": "1072250532645998596",
                                                                 "call": call}) or 0.0


async def test_a_summoned_mention_is_answered_in_its_thread(world: World) -> None:
    post = world.x.mention("my parcel never arrived")
    sender = await world.sender()
    before = cost("post")
    receipt = await sender.send(reply("Sorry! A new one left today.", post=post["id"]))
    await sender.stop()
    assert receipt.status == "sent" and receipt.reason == "public reply in the customer's thread"
    [sent] = world.x.sent
    assert (sent.kind, sent.in_reply_to, sent.id) == ("post", post["id"], receipt.provider_id)
    assert cost("post") == pytest.approx(before + 0.015)


async def test_a_follow_up_without_a_mention_is_answered_by_dm(world: World) -> None:
    post = world.x.mention("still nothing", mentions_us=False)
    sender = await world.sender()
    receipt = await sender.send(reply("Let's sort it out here.", post=post["id"], mode=UNSUMMONED_MODE))
    await sender.stop()
    assert receipt.status == "sent" and receipt.reason is not None and "not summoned" in receipt.reason
    [sent] = world.x.sent
    assert (sent.kind, sent.recipient) == ("dm", ADA)
    assert receipt.provider_id == f"dm:{sent.id}"


async def test_x_refusing_a_public_reply_turns_it_into_a_dm(world: World) -> None:
    post = world.x.mention("hello?", mentions_us=False)  # we believed it summoned us; X does not
    sender = await world.sender()
    receipt = await sender.send(reply("Here to help.", post=post["id"]))
    await sender.stop()
    assert receipt.status == "sent" and "X refused a public reply" in (receipt.reason or "")
    assert [s.kind for s in world.x.sent] == ["dm"]


async def test_too_long_for_a_post_goes_by_dm(world: World) -> None:
    post = world.x.mention("what happened?")
    sender = await world.sender()
    receipt = await sender.send(reply("包" * 141, post=post["id"]))  # 282 weighted characters
    await sender.stop()
    assert receipt.status == "sent" and "282/280" in (receipt.reason or "")
    assert [s.kind for s in world.x.sent] == ["dm"]


async def test_a_dm_is_answered_by_dm(world: World) -> None:
    world.x.dm("my account is locked")
    sender = await world.sender()
    receipt = await sender.send(reply("We'll unlock it.", post="1585800613253812228", mode=DM_MODE))
    await sender.stop()
    assert receipt.status == "sent" and [s.kind for s in world.x.sent] == ["dm"]


async def test_closed_dms_on_a_summoned_thread_become_a_public_invite(world: World) -> None:
    post = world.x.mention("my order")
    world.x.dm_closed.add(ADA)
    sender = await world.sender()
    receipt = await sender.send(reply("x" * 300, post=post["id"]))
    await sender.stop()
    assert receipt.status == "sent" and "DMs are closed" in (receipt.reason or "")
    [invite] = world.x.sent
    assert invite.in_reply_to == post["id"] and invite.deep_link == deep_link(world.x.account)


async def test_a_second_invite_is_not_refused_as_a_duplicate(world: World) -> None:
    first, second = world.x.mention("my order", author=ADA), world.x.mention("mine too", author=BOB)
    world.x.dm_closed |= {ADA, BOB}
    sender = await world.sender()
    one = await sender.send(reply("x" * 300, post=first["id"]))
    two = await sender.send(msgspec.structs.replace(reply("y" * 300, post=second["id"], n=2),
                                                    recipient=Identity(kind="xid", value=BOB)))
    await sender.stop()
    assert (one.status, two.status) == ("sent", "sent")
    assert [s.text for s in world.x.sent] == [DM_INVITE, f"{DM_INVITE} (ep_2)"]


async def test_closed_dms_without_a_summons_fail_with_the_reason(world: World) -> None:
    post = world.x.mention("hm", mentions_us=False)
    world.x.dm_closed.add(ADA)
    sender = await world.sender()
    receipt = await sender.send(reply("Hi", post=post["id"], mode=UNSUMMONED_MODE))
    await sender.stop()
    assert receipt.status == "failed" and (receipt.reason or "").startswith("dm_closed: not summoned")
    assert world.x.sent == []


async def test_duplicate_content_is_refused_for_the_agent_to_vary(world: World) -> None:
    first, second = world.x.mention("one"), world.x.mention("two")
    sender = await world.sender()
    assert (await sender.send(reply("Thanks, looking into it.", post=first["id"]))).status == "sent"
    receipt = await sender.send(reply("Thanks, looking into it.", post=second["id"], n=2))
    await sender.stop()
    assert receipt.status == "failed" and receipt.reason == f"duplicate: X refused it: {DUPLICATE}"


async def test_a_spent_window_is_waited_out_from_the_headers(world: World) -> None:
    world.x.limit("post", 1, reset_in=300)
    first, second = world.x.mention("one"), world.x.mention("two")
    sender = await world.sender()
    assert (await sender.send(reply("First answer", post=first["id"]))).status == "sent"
    receipt = await sender.send(reply("Second answer", post=second["id"], n=2))
    await sender.stop()
    assert receipt.status == "sent" and world.clock.slept == [300.0]
    assert len(world.x.sent) == 2


async def test_a_429_is_waited_out_and_the_post_made_once(world: World) -> None:
    world.x.limit("post", 1, reset_in=120)
    first, second = world.x.mention("one"), world.x.mention("two")
    other, sender = await world.sender(), await world.sender()  # another process used the window
    assert (await other.send(reply("First answer", post=first["id"]))).status == "sent"
    receipt = await sender.send(reply("Second answer", post=second["id"], n=2))
    await other.stop()
    await sender.stop()
    assert receipt.status == "sent" and world.clock.slept == [120.0]
    assert [s.text for s in world.x.sent] == ["First answer", "Second answer"]


async def test_the_24_hour_dm_cap_defers_the_reply_until_it_resets(world: World) -> None:
    world.x.limit("dm_send", 15, per_day=1)
    sender = await world.sender()
    assert (await sender.send(reply("one", mode=DM_MODE))).status == "sent"
    receipt = await sender.send(reply("two", mode=DM_MODE, n=2))
    await sender.stop()
    assert receipt.status == "deferred" and "resets in 86400s" in (receipt.reason or "")
    assert receipt.retry_at == datetime.fromtimestamp(world.clock.now + 86_400, UTC)
    assert world.clock.slept == [] and len(world.x.sent) == 1


async def test_the_apps_24_hour_cap_binds_too(world: World) -> None:
    sender = await world.sender()
    resets = int(world.clock.now) + 7_200
    await sender.api.pacer.observe("post", {"x-user-limit-24hour-remaining": "40",
                                            "x-user-limit-24hour-reset": str(resets + 600),
                                            "x-app-limit-24hour-remaining": "0",
                                            "x-app-limit-24hour-reset": str(resets)})
    post = world.x.mention("one")
    receipt = await sender.send(reply("Hi", post=post["id"]))
    await sender.stop()
    assert receipt.status == "deferred" and receipt.retry_at == datetime.fromtimestamp(resets, UTC)
    assert world.x.sent == []


async def test_our_tables_day_cap_defers_before_x_refuses(world: World) -> None:
    # an older plan: one DM a day, from our table alone (X has not said so yet)
    sender = await world.sender(limits={"dm_send": {"calls": 15, "per_day": 1}})
    assert (await sender.send(reply("one", mode=DM_MODE))).status == "sent"
    receipt = await sender.send(reply("two", mode=DM_MODE, n=2))
    await sender.stop()
    assert receipt.status == "deferred"
    assert receipt.retry_at == datetime.fromtimestamp(world.clock.now + 86_400, UTC)
    assert world.x.calls.count("dm_send") == 1


async def test_two_processes_share_one_window(world: World) -> None:
    world.x.limit("post", 100, reset_in=900)
    # our own table says two posts per window; two senders (two workers) share it in Redis
    first, second = await world.sender(limits={"post": {"calls": 2}}), await world.sender(
        limits={"post": {"calls": 2}})
    assert first.api.pacer is not second.api.pacer
    posts = [world.x.mention(f"n{i}") for i in range(3)]
    one = await first.send(reply("First", post=posts[0]["id"]))
    two = await second.send(reply("Second", post=posts[1]["id"], n=2))
    world.clock.slept.clear()
    three = await first.send(reply("Third", post=posts[2]["id"], n=3))
    await first.stop()
    await second.stop()
    assert (one.status, two.status, three.status) == ("sent", "sent", "sent")
    assert world.clock.slept == [900.0]  # the third waited for the shared window


async def test_usage_capped_is_refused_and_counted_not_slept(world: World) -> None:
    world.x.usage_cap("dm_send")
    sender = await world.sender()
    labels = {"account": world.x.account, "endpoint": "dm_send"}
    before = REGISTRY.get_sample_value("sb_x_usage_capped_total", labels) or 0.0
    receipt = await sender.send(reply("hello", mode=DM_MODE))
    await sender.stop()
    assert receipt.status == "failed" and (receipt.reason or "").startswith("usage_capped:")
    assert REGISTRY.get_sample_value("sb_x_usage_capped_total", labels) == before + 1
    assert world.clock.slept == []


async def test_a_spent_budget_stops_optional_calls_and_tells_the_agents_once(world: World) -> None:
    posts = [world.x.mention(f"n{i}") for i in range(4)]
    sender = await world.sender(daily_budget_usd=0.02)
    other = await world.sender(daily_budget_usd=0.02)  # another worker, the same account
    first = await sender.send(reply("First answer", post=posts[0]["id"]))
    ack = msgspec.structs.replace(reply("Thanks, we're on it.", post=posts[1]["id"], n=2),
                                  kind="acknowledgement")
    refused = await other.send(ack)
    agents = await other.send(reply("Second answer", post=posts[2]["id"], n=3))
    later = await sender.send(reply("Third answer", post=posts[3]["id"], n=4))
    await sender.stop()
    await other.stop()
    assert first.status == "sent" and first.notice is None
    # the acknowledgement is optional: refused, and its receipt tells the agents, once a day
    assert refused.status == "failed" and (refused.reason or "").startswith("budget:")
    assert refused.notice is not None and "budget of $0.02 is spent" in refused.notice
    # an agent's reply is not optional: it goes, counted; the notice is not repeated
    assert (agents.status, agents.notice, later.status, later.notice) == ("sent", None, "sent", None)
    assert [s.text for s in world.x.sent] == ["First answer", "Second answer", "Third answer"]
    assert await sender.api.budget.spent() == pytest.approx(0.045)


async def test_the_policy_moves_a_reply_to_dm_with_a_public_note(world: World) -> None:
    post = world.x.mention("my invoice is wrong")
    sender = await world.sender()
    private = msgspec.structs.replace(reply("Your invoice INV-7 is corrected.", post=post["id"]),
                                      privately="billing: account details",
                                      public_note="We've sent you a DM.")
    receipt = await sender.send(private)
    await sender.stop()
    assert receipt.status == "sent" and "policy answers privately: billing" in (receipt.reason or "")
    dm, note = world.x.sent
    assert (dm.kind, dm.recipient, dm.text) == ("dm", ADA, "Your invoice INV-7 is corrected.")
    assert (note.kind, note.in_reply_to, note.text) == ("post", post["id"], "We've sent you a DM.")
    assert receipt.provider_id == f"dm:{dm.id}"


async def test_a_spent_budget_keeps_the_private_answer_but_not_its_public_note(world: World) -> None:
    post = world.x.mention("my invoice")
    sender = await world.sender(daily_budget_usd=0.02)
    private = msgspec.structs.replace(reply("Corrected.", post=post["id"]), privately="billing: details",
                                      public_note="We've sent you a DM.")
    receipt = await sender.send(private)
    await sender.stop()
    assert receipt.status == "sent" and "the public note was not posted" in (receipt.reason or "")
    assert [s.kind for s in world.x.sent] == ["dm"]


async def test_a_private_reply_to_closed_dms_is_a_public_invite(world: World) -> None:
    post = world.x.mention("my invoice")
    world.x.dm_closed.add(ADA)
    sender = await world.sender()
    private = msgspec.structs.replace(reply("Details inside.", post=post["id"]), privately="billing: details")
    receipt = await sender.send(private)
    await sender.stop()
    assert receipt.status == "sent" and "DMs are closed" in (receipt.reason or "")
    assert [(s.kind, s.text) for s in world.x.sent] == [("post", DM_INVITE)]


async def test_a_lost_answer_is_uncertain_and_not_repeated(world: World) -> None:
    post = world.x.mention("one")
    world.x.stall("post")  # X made the post, its answer never comes
    sender = await world.sender(timeout_seconds=0.3)
    receipt = await sender.send(reply("Hi", post=post["id"]))
    await sender.stop()
    assert receipt.status == "uncertain" and "not sent again" in (receipt.reason or "")
    assert len(world.x.sent) == 1


async def test_x_out_of_reach_fails_the_send(world: World) -> None:
    post = world.x.mention("one")
    sender = await world.sender()
    await world.x.stop()  # the connection is refused: nothing went out
    receipt = await sender.send(reply("Hi", post=post["id"]))
    await sender.stop()
    assert receipt.status == "failed" and "could not be reached" in (receipt.reason or "")


@pytest.mark.parametrize("text", ["Write to refunds@example.com and we'll sort it",
                                  "Call us on +49 30 1234 5678 any time"])
async def test_private_details_never_go_public(world: World, text: str) -> None:
    post = world.x.mention("refund?")
    sender = await world.sender()
    receipt = await sender.send(reply(text, post=post["id"]))
    await sender.stop()
    assert receipt.status == "sent" and "never posted publicly" in (receipt.reason or "")
    assert [s.kind for s in world.x.sent] == ["dm"]


async def test_a_canned_message_refused_as_a_duplicate_is_varied_once(world: World) -> None:
    first, second = world.x.mention("one"), world.x.mention("two")
    sender = await world.sender()
    ack = msgspec.structs.replace(reply("Thanks, we're on it.", post=first["id"]), kind="acknowledgement")
    assert (await sender.send(ack)).status == "sent"
    again = msgspec.structs.replace(ack, reply_id="ack_0000beef", in_reply_to=second["id"])
    receipt = await sender.send(again)
    await sender.stop()
    assert receipt.status == "sent" and "varied" in (receipt.reason or "")
    assert [s.text for s in world.x.sent] == ["Thanks, we're on it.", "Thanks, we're on it. (beef)"]


async def test_redis_away_pauses_the_send_then_sends_nothing(world: World) -> None:
    post = world.x.mention("one")
    sender = await world.sender(redis_url="redis://127.0.0.1:1/0")  # the shared pacer is away
    receipt = await sender.send(reply("Hi", post=post["id"]))
    await sender.stop()
    assert receipt.status == "failed" and "(Redis) is away" in (receipt.reason or "")
    assert world.x.sent == [] and sum(world.clock.slept) >= 60  # it paused and tried again first
