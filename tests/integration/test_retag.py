"""`switchboard redis retag` on a real Redis: untagged keys to tags, then to more partitions."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from bench.chain import chain
from bench.workload import Workload
from processors.brain.stage import Brain
from processors.intake.stage import Intake
from processors.policy.load import load_policy
from processors.send.stage import SendStage
from processors.stage import Record
from processors.stores.cards import CardStore
from processors.stores.clocks import ClockStore
from processors.stores.history import HistoryStore
from processors.stores.identities import IdentityStore
from processors.stores.retag import FAMILIES, check_layout, retag
from processors.stores.tags import UNTAGGED, Batch, Tags, hash_tag, partition_of
from router.cli.commands import main
from router.settings import Settings
from router.vocabulary import VOCABULARY
from schemas.codec import encode
from schemas.errors import ConfigError
from schemas.topics import IDENTIFIED, INBOUND, OUTBOUND, ROUTED
from tests.integration.handing import AT, Channel, Desk, dispatch_batch, dispatch_stage, handoffs, reply
from tests.paths import ROOT

pytestmark = pytest.mark.integration

POLICY = load_policy(ROOT / "deploy" / "policy.example.yaml", VOCABULARY)
TOKEN_KEY = b"retag-test-key"


def _own_db(stack: Settings) -> str:
    """The stack's Redis, database 7: a migration scans every key, the shared database holds millions."""
    return stack.redis_dsn.rsplit("/", 1)[0] + "/7"


@pytest.fixture
async def redis(stack: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(_own_db(stack), socket_timeout=10)
    yield client
    await client.aclose()


def _stages(redis: Redis, ns: str, tags: Tags) -> tuple[Intake, Brain, HistoryStore, IdentityStore]:
    made = chain(redis, ns, tags, POLICY, TOKEN_KEY, clock=lambda: AT)
    return made.intake, made.brain, made.history, made.identities


async def _route(redis: Redis, ns: str, tags: Tags, work: Workload, offset: int, n: int = 60) -> list[str]:
    """Run a batch through intake and brain as a worker tagging by `tags` would; the customers routed."""
    intake, brain, _, _ = _stages(redis, ns, tags)
    inbound = [Record(f"{ns}-{INBOUND.name}", 0, offset + i, work.next()[1]) for i in range(n)]
    identified = [Record(f"{ns}-{IDENTIFIED.name}", 0, offset + i, o.value)
                  for i, o in enumerate(o for o in await intake.process(inbound) if o.topic is IDENTIFIED)]
    routed = await brain.process(identified)
    await brain.confirm(identified)
    return sorted({o.key.decode() for o in routed if o.topic is ROUTED})


async def _state(redis: Redis, ns: str, tags: Tags, customers: list[str]) -> list[Any]:
    """What the brain and the API would read of each customer: history, recent, clocks, identities."""
    _, _, history, identities = _stages(redis, ns, tags)
    pipe = Batch(redis.pipeline(transaction=False))  # on a cluster too
    history.queue_read(pipe, customers, 50)
    history.queue_read_recent(pipe, customers)
    ClockStore(ns, tags).queue_read(pipe, customers)
    lines, recent, clocks = await pipe.execute()
    return [history.parse_read(lines), history.parse_recent(recent), ClockStore(ns, tags).parse_read(clocks),
            [await identities.identities(redis, c) for c in customers]]


async def _keys(redis: Redis, ns: str) -> list[str]:
    return sorted([k.decode() async for k in redis.scan_iter(match=f"{ns}:*", count=1000)])


def _family_id(key: str, ns: str) -> tuple[str, str] | None:
    rest = key.removeprefix(f"{ns}:").removeprefix("routed:")
    if rest.startswith("{"):
        rest = rest.split(":", 1)[1]
    family, _, ident = rest.partition(":")
    return (family, ident) if family in FAMILIES and ident else None


async def test_untagged_keys_move_to_tags_then_to_more_partitions(redis: Redis) -> None:
    ns = f"rt{uuid.uuid4().hex[:10]}"
    work = Workload(ns, customers=30, clock=lambda: AT)
    customers = await _route(redis, ns, UNTAGGED, work, 0)
    before = await _state(redis, ns, UNTAGGED, customers)
    assert all(before[0]) and all(before[3])  # every customer has history and identities
    claim = next(k for k in await _keys(redis, ns) if ":claim:" in k)
    # a worker that tags refuses the untagged keys until they are moved
    with pytest.raises(ConfigError, match="retag --partitions 4"):
        await check_layout(redis, ns, Tags(4))

    first = await retag(redis, ns, Tags(4))
    assert first.moved > 3 * len(customers) and first.due_moved == len(customers) and not first.conflicts
    assert await _state(redis, ns, Tags(4), customers) == before
    await check_layout(redis, ns, Tags(4))
    with pytest.raises(ConfigError, match="tagged for 4 partitions"):
        await check_layout(redis, ns, Tags(12))
    # the same run again finds everything in place
    again = await retag(redis, ns, Tags(4))
    assert (again.moved, again.due_moved, again.conflicts) == (0, 0, 0)
    assert again.in_place == first.moved

    # partitions added: every key follows its id to the new count, TTLs kept
    grown = await retag(redis, ns, Tags(12))
    assert grown.moved > 0 and not grown.conflicts
    assert await _state(redis, ns, Tags(12), customers) == before
    keys = await _keys(redis, ns)
    for key in keys:
        found = _family_id(key, ns)
        if found is not None:
            assert hash_tag(key) == f"p{partition_of(found[1], 12)}", key
    moved_claim = next(k for k in keys if k.endswith(claim.rsplit(":claim:", 1)[1]) and ":claim:" in k)
    assert 0 < await redis.ttl(moved_claim) <= 600
    dues = [k for k in keys if k.endswith("sla-due")]
    for due in dues:
        for member in await redis.zrange(due, 0, -1):
            assert hash_tag(due) == f"p{partition_of(member.decode().split('|')[0], 12)}"
    # and the workers carry on with the state: known customers are not new
    again_seen = sorted(set(await _route(redis, ns, Tags(12), work, 100)) & set(customers))
    assert again_seen
    grew = await _state(redis, ns, Tags(12), again_seen)
    had = dict(zip(customers, before[0], strict=True))
    assert all(len(lines) > len(had[c]) for c, lines in zip(again_seen, grew[0], strict=True))


async def test_a_conflict_is_left_alone_and_a_move_cut_short_is_finished(redis: Redis) -> None:
    ns = f"rt{uuid.uuid4().hex[:10]}"
    tags = Tags(4)
    await redis.zadd(f"{ns}:history:cus_a", {"old": 1})
    await redis.zadd(f"{ns}:{tags.of('cus_a')}history:cus_a", {"new": 2})  # written since: differs
    await redis.sadd(f"{ns}:identities:cus_b", "email:b@example.org")
    target = f"{ns}:{tags.of('cus_b')}identities:cus_b"
    await redis.restore(target, 0, await redis.dump(f"{ns}:identities:cus_b"))  # restored, not deleted
    await redis.hset(f"{ns}:backlog", "general", 1)
    done = await retag(redis, ns, tags)
    assert (done.moved, done.conflicts, done.conflicting) == (1, 1, [f"{ns}:history:cus_a"])
    assert await redis.zrange(f"{ns}:history:cus_a", 0, -1) == [b"old"]
    assert await redis.zrange(f"{ns}:{tags.of('cus_a')}history:cus_a", 0, -1) == [b"new"]
    assert not await redis.exists(f"{ns}:identities:cus_b")
    assert await redis.smembers(target) == {b"email:b@example.org"}
    assert await redis.hgetall(f"{ns}:backlog") == {b"general": b"1"}  # not a tagged family
    # no layout is recorded while a conflict stands: the workers still refuse to start
    with pytest.raises(ConfigError):
        await check_layout(redis, ns, tags)


def test_the_command_line_retags_the_settings_namespace(
        stack: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = f"rt{uuid.uuid4().hex[:10]}."
    ns = f"{prefix}sb"
    redis = SyncRedis.from_url(_own_db(stack), socket_timeout=10)
    redis.zadd(f"{ns}:sla-due", {"cus_a|con_1": 5.0})
    redis.hset(f"{ns}:sla:cus_a", "con_1", "{}")
    redis.hset(f"{ns}:handoff:item:routed:ev_1", "plan", "[]")
    monkeypatch.setenv("SB_TOPIC_PREFIX", prefix)
    monkeypatch.setenv("SB_REDIS_URL", _own_db(stack))
    assert main(["redis", "retag", "--partitions", "8"]) == 0
    out = capsys.readouterr().out
    assert "1 keys moved, 1 SLA due times moved" in out
    assert "1 dispatch ledgers from before the tags" in out
    tag = Tags(8).of("cus_a")
    assert redis.zscore(f"{ns}:{tag}sla-due", "cus_a|con_1") == 5.0
    assert redis.hget(f"{ns}:{tag}sla:cus_a", "con_1") == b"{}"
    assert redis.get(f"{ns}:layout") == b"8"
    redis.close()


async def test_dispatch_and_send_keys_move_and_a_replay_after_the_move_hands_over_nothing_twice(
        redis: Redis) -> None:
    ns = f"rt{uuid.uuid4().hex[:10]}"
    desk, chat, pager = Desk(), Desk(), Desk()
    tools = {"desk": desk, "chat": chat, "pager": pager}
    channel = Channel(AT + timedelta(hours=1))

    def send(tags: Tags) -> SendStage:
        return SendStage(redis, {"email": channel.send}, namespace=ns, ttl_seconds=600, policy=lambda: POLICY,
                         cards=CardStore(ns, 600, tags), clock=lambda: AT)

    batch = dispatch_batch(ns, 0)
    first = handoffs(await dispatch_stage(redis, ns, tools, UNTAGGED).process(batch))
    messages = [reply(f"rep_{i}", f"con_{i % 5}") for i in range(10)] + [reply("rep_later", "con_1")]
    replies = [Record(f"{ns}-{OUTBOUND.name}", 0, i, encode(m)) for i, m in enumerate(messages)]
    await send(UNTAGGED).process(replies)
    # a ledger from before the tags: no conversation in its name, so it cannot be placed
    await redis.hset(f"{ns}:handoff:item:routed:ev_old", "plan", "[]")
    families = {k.split(":")[1] for k in await _keys(redis, ns)}
    assert families >= {"ledger", "tool-thread", "reply", "card", "handoff"}

    done = await retag(redis, ns, Tags(4))
    assert done.moved > 0 and done.stranded == 1 and not done.conflicts
    placed = set()
    for key in await _keys(redis, ns):
        found = re.fullmatch(r"[^:]+:\{p\d+\}:([^:]+):(.*)", key)
        family, ident = found.groups() if found else ("", "")
        placed.add(family)
        if family == "ledger":  # tagged by its conversation, the card's tag
            assert hash_tag(key) == f"p{partition_of(ident.split('|')[0], 4)}", key
        elif family in ("tool-thread", "reply"):
            assert hash_tag(key) == f"p{partition_of(ident, 4)}", key
    assert placed >= {"ledger", "tool-thread", "reply", "card"}
    assert await redis.exists(f"{ns}:{{deferred}}:due", f"{ns}:{{deferred}}:messages") == 2
    assert 0 < await redis.ttl(next(k for k in await _keys(redis, ns) if ":reply:" in k)) <= 600
    assert (await retag(redis, ns, Tags(4))).moved == 0

    # the workers, now tagging: the same records give their receipts again, nothing twice
    assert handoffs(await dispatch_stage(redis, ns, tools, Tags(4)).process(batch)) == first
    assert (len(desk.seen), len(chat.seen), len(pager.seen)) == (62, 20, 1)
    copies = [Record(r.topic, 1, r.offset, r.value) for r in replies]
    assert await send(Tags(4)).process(copies) == []
    assert len(channel.sent) == 11
    assert await CardStore(ns, 600, Tags(4)).conversation_of(redis, "chat", "ts-con_3") == "con_3"
    assert await send(Tags(4)).deferrals.pending(redis) == 1
