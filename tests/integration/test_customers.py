"""Customers against the real local Redis: identify, link and unlink, history, directory, HTTP API."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from msgspec.structs import replace
from redis.asyncio import Redis

from processors.intake.identify import KNOWN, LINKED, NEW, Sighting, decide
from processors.stores.client import new_redis
from processors.stores.directory import Directory, ImportCounts, parse_directory_csv
from processors.stores.history import Append, ConversationSummary, HistoryStore, RecentWrite
from processors.stores.identities import IdentityStore, LinkRefused
from router.http.customers import add_routes
from router.http.errors import REJECTED
from router.settings import Settings
from schemas import Decision, HistoryEntry, Identity, IdentityLink, InboundMessage, TransientError
from schemas.ids import customer_id_for
from tests.processes import free_port

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ADA = Identity(kind="email", value="ada@example.com")
ADA_X = Identity(kind="x", value="@ada_x")
CHAT = Identity(kind="chat", value="s_81f3")
BOB = Identity(kind="email", value="bob@example.com")
TIERS = frozenset({"standard", "premium"})
A, X = customer_id_for(ADA), customer_id_for(ADA_X)


@pytest.fixture
async def redis(stack: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(stack.redis_dsn)
    yield client
    await client.aclose()


@dataclass
class Stores:
    namespace: str
    history: HistoryStore
    ids: IdentityStore
    directory: Directory


def stores(cap: int = 50, chunk: int = 500) -> Stores:
    ns = f"t{uuid.uuid4().hex}"
    history = HistoryStore(ns, cap=cap)
    ids = IdentityStore(ns, history)
    return Stores(ns, history, ids, Directory(ids, chunk=chunk))


def message(sender: Identity, event_id: str, minutes: int = 0) -> InboundMessage:
    return InboundMessage(event_id=event_id, channel="api", native_id=event_id, thread_key="t", sender=sender,
                          received_at=T0 + timedelta(minutes=minutes), text="hello")


async def identify(redis: Redis, s: Stores, *messages: InboundMessage) -> list[tuple[str, Decision]]:
    """One batch the way the intake stage runs it: one lookup round trip, one write-back."""
    sightings = [Sighting.of(m) for m in messages]
    pipe = redis.pipeline(transaction=False)
    s.ids.queue_lookup(pipe, sightings)
    [answer] = await pipe.execute()  # one command for the whole batch
    decided = [decide(x, found) for x, found in zip(sightings, s.ids.parse_lookup(answer), strict=True)]
    pipe = redis.pipeline(transaction=False)
    s.ids.queue_register(pipe, [(x.identity, cid) for x, (cid, d) in zip(sightings, decided, strict=True)
                                if d.outcome == NEW])
    await pipe.execute()
    return decided


def entry(minutes: int, summary: str, direction: str = "in") -> HistoryEntry:
    return HistoryEntry(at=T0 + timedelta(minutes=minutes), channel="api", conversation_id="con_1",
                        direction=direction, summary=summary)  # type: ignore[arg-type]


async def append(redis: Redis, s: Stores, customer_id: str, identity: Identity | None,
                 *entries: HistoryEntry) -> None:
    pipe = redis.pipeline(transaction=False)
    s.history.queue_append(pipe, [Append(customer_id, entries, identity)])
    assert len(await pipe.execute()) == 1


async def history(redis: Redis, s: Stores, *customer_ids: str) -> list[list[str]]:
    pipe = redis.pipeline(transaction=False)
    s.history.queue_read(pipe, customer_ids, s.history.cap)
    [answer] = await pipe.execute()
    return [[e.summary for e in entries] for entries in s.history.parse_read(answer)]


async def recent(redis: Redis, s: Stores, *customer_ids: str) -> list[list[str]]:
    pipe = redis.pipeline(transaction=False)
    s.history.queue_read_recent(pipe, customer_ids)
    [answer] = await pipe.execute()
    return [[c.conversation_id for c in cs] for cs in s.history.parse_recent(answer)]


async def test_first_sight_creates_the_customer_and_later_sightings_find_it(redis: Redis) -> None:
    s = stores()
    first = await identify(redis, s, message(ADA, "ev_1"), message(ADA, "ev_2"), message(ADA_X, "ev_3"))
    assert [(cid, d.outcome) for cid, d in first] == [(A, NEW), (A, KNOWN), (X, NEW)]
    again = await identify(redis, s, message(ADA, "ev_4", minutes=5))
    assert again[0][0] == A and "known since 2026-03-01" in again[0][1].reasons[0]
    # the worker died after Redis wrote ev_1's binding: the replay is the same first sight
    [(cid, replayed)] = await identify(redis, s, message(ADA, "ev_1"))
    assert cid == A and replayed.outcome == NEW and "re-read after a restart" in replayed.reasons[0]
    assert await s.ids.identities(redis, A) == (ADA,)


async def test_a_link_moves_the_identity_with_its_history_and_unlink_restores_it(redis: Redis) -> None:
    s = stores()
    await identify(redis, s, message(ADA, "ev_1"), message(ADA_X, "ev_2"))
    await append(redis, s, A, ADA, entry(1, "ada asks about invoice"), entry(3, "ada again"))
    await append(redis, s, A, None, entry(4, "note on A", "note"))
    await append(redis, s, X, ADA_X, entry(2, "tweet from ada_x"))
    pipe = redis.pipeline(transaction=False)
    s.history.queue_write_recent(pipe, [RecentWrite(A, [ConversationSummary(
        conversation_id="con_a", queue="billing", status="open", last_at=T0, identity=str(ADA))])])
    await pipe.execute()

    link = await s.ids.link(redis, ADA, X, evidence="same person, confirmed on call", actor="agent maria")
    assert (link.action, link.customer_id, link.previous_customer_id) == ("link", X, A)
    assert link.event_id and link.event_id.startswith("lnk_")
    assert await history(redis, s, X, A) == [["ada again", "tweet from ada_x", "ada asks about invoice"],
                                             ["note on A"]]
    assert await recent(redis, s, X, A) == [["con_a"], []]
    assert await s.ids.identities(redis, X) == (ADA, ADA_X)
    assert await s.ids.identities(redis, A) == ()
    # a batch that saw ADA first just before the link registers it late: not listed on A
    pipe = redis.pipeline(transaction=False)
    s.ids.queue_register(pipe, [(ADA, A)])
    await pipe.execute()
    assert await s.ids.identities(redis, A) == ()
    [(cid, decision)] = await identify(redis, s, message(ADA, "ev_5", minutes=10))
    assert cid == X and decision.outcome == LINKED
    assert "linked by agent maria on 2026-" in decision.reasons[0]
    assert decision.reasons[0].endswith("'same person, confirmed on call'")

    unlink = await s.ids.unlink(redis, ADA, X, evidence="a different Ada after all", actor="agent tom")
    assert (unlink.action, unlink.customer_id, unlink.previous_customer_id) == ("unlink", A, X)
    assert await history(redis, s, X, A) == [["tweet from ada_x"],
                                             ["note on A", "ada again", "ada asks about invoice"]]
    assert await recent(redis, s, X, A) == [[], ["con_a"]]
    assert await s.ids.identities(redis, A) == (ADA,)
    [(cid, decision)] = await identify(redis, s, message(ADA, "ev_6", minutes=20))
    assert cid == A and decision.outcome == KNOWN and f"unlinked from {X} by agent tom" in decision.reasons[0]


async def test_moved_history_keeps_the_newest_lines_and_replaces_a_shared_conversation(redis: Redis) -> None:
    s = stores(cap=3)
    await identify(redis, s, message(ADA, "ev_1"), message(ADA_X, "ev_2"))
    await append(redis, s, A, ADA, entry(1, "a1"), entry(3, "a3"), entry(5, "a5"))
    await append(redis, s, X, ADA_X, entry(2, "x2"), entry(4, "x4"))
    # a replayed batch appends the same entry again: still one line
    await append(redis, s, X, ADA_X, entry(4, "x4"))
    pipe = redis.pipeline(transaction=False)
    shared = ConversationSummary(conversation_id="con_1", queue="billing", status="open", last_at=T0,
                                 identity=str(ADA_X))
    s.history.queue_write_recent(pipe, [RecentWrite(X, [shared]), RecentWrite(A, [ConversationSummary(
        conversation_id="con_1", queue="returns", status="waiting", last_at=T0 + timedelta(hours=1),
        agent="maria", transfers=1, identity=str(ADA))])])
    assert len(await pipe.execute()) == 1
    await s.ids.link(redis, ADA, X, evidence="same person", actor="maria")
    assert await history(redis, s, X, A) == [["a5", "x4", "a3"], []]
    pipe = redis.pipeline(transaction=False)
    s.history.queue_read_recent(pipe, [X])
    [answer] = await pipe.execute()
    [[summary]] = s.history.parse_recent(answer)
    assert (summary.queue, summary.agent, summary.transfers) == ("returns", "maria", 1)
    pipe = redis.pipeline(transaction=False)
    newer = replace(shared, conversation_id="con_2")
    s.history.queue_write_recent(pipe, [RecentWrite(X, [newer], drop=["con_1"])])
    await pipe.execute()
    assert await recent(redis, s, X) == [["con_2"]]


async def test_a_batch_reads_and_writes_many_customers_in_one_command_each(redis: Redis) -> None:
    ns = f"t{uuid.uuid4().hex}"
    store = HistoryStore(ns, cap=2, ttl_seconds=600)
    pipe = redis.pipeline(transaction=False)
    store.queue_append(pipe, [Append("cus_1", [entry(1, "1a"), entry(2, "1b"), entry(3, "1c")], ADA),
                              Append("cus_2", [entry(1, "2a")]), Append("cus_3", []),
                              Append("cus_1", [entry(4, "1d")], ADA)])
    store.queue_write_recent(pipe, [RecentWrite("cus_2", [ConversationSummary(
        conversation_id="con_2", queue="q", status="open", last_at=T0)])])
    store.queue_read(pipe, ["cus_1", "cus_2", "cus_3"], 50)
    store.queue_read(pipe, [], 50)
    store.queue_read_recent(pipe, ["cus_2", "cus_3"])
    _, _, lines, nothing, conversations = await pipe.execute()
    assert [[e.summary for e in entries] for entries in store.parse_read(lines)] == [["1d", "1c"], ["2a"], []]
    assert store.parse_read(nothing) == []
    assert [[c.conversation_id for c in cs] for cs in store.parse_recent(conversations)] == [["con_2"], []]
    assert 0 < await redis.ttl(store.history_key("cus_1")) <= 600
    assert 0 < await redis.ttl(store.recent_key("cus_2")) <= 600
    pipe = redis.pipeline(transaction=False)
    store.queue_append(pipe, [])
    store.queue_write_recent(pipe, [RecentWrite("cus_9")])
    assert len(pipe) == 0  # nothing to write queues nothing


async def test_links_that_cannot_be_made_say_why(redis: Redis) -> None:
    s = stores()
    await identify(redis, s, message(ADA, "ev_1"), message(ADA_X, "ev_2"))
    with pytest.raises(LinkRefused) as unknown:
        await s.ids.link(redis, ADA, "cus_nobody", evidence="x", actor="maria")
    assert unknown.value.code == "unknown_customer"
    made = await s.ids.link(redis, ADA, X, evidence="same person", actor="maria")
    with pytest.raises(LinkRefused) as again:
        await s.ids.link(redis, ADA, X, evidence="same person", actor="maria")
    assert again.value.code == "already_linked" and again.value.recorded == made
    with pytest.raises(LinkRefused) as own:
        await s.ids.unlink(redis, ADA_X, X, evidence="x", actor="maria")
    assert own.value.code == "not_linked" and own.value.recorded is None
    with pytest.raises(LinkRefused) as elsewhere:
        await s.ids.unlink(redis, ADA, A, evidence="x", actor="maria")
    assert elsewhere.value.code == "not_linked"


async def test_an_identity_never_seen_can_be_linked_and_is_found_there(redis: Redis) -> None:
    s = stores()
    await identify(redis, s, message(ADA, "ev_1"))
    phone = Identity(kind="phone", value="+442079460958")
    link = await s.ids.link(redis, phone, A, evidence="caller gave her order number", actor="maria")
    assert link.previous_customer_id is None
    [(cid, decision)] = await identify(redis, s, message(phone, "ev_2"))
    assert (cid, decision.outcome) == (A, LINKED)


async def test_a_link_racing_with_new_history_loses_no_line(redis: Redis) -> None:
    s = stores(cap=1000)
    await identify(redis, s, message(ADA, "ev_1"), message(ADA_X, "ev_2"))
    written = [f"line {i}" for i in range(150)]

    async def writer() -> None:
        for i, summary in enumerate(written):
            await append(redis, s, A, ADA, entry(i, summary))

    task = asyncio.create_task(writer())
    await asyncio.sleep(0)  # let the writer start: the link must meet it mid-way
    await s.ids.link(redis, ADA, X, evidence="same person", actor="maria")
    await task
    on_x, on_a = await history(redis, s, X, A)
    # lines written before the link moved with it; any written after it by a batch that
    # looked ADA up before the link stay on A — none is lost or doubled
    assert sorted(on_x + on_a) == sorted(written) and on_x


async def test_a_stated_identity_is_only_a_suggestion_until_an_agent_links_it(redis: Redis) -> None:
    s = stores()
    [(chat_customer, _)] = await identify(redis, s, message(CHAT, "ev_1"))
    new_mail = Identity(kind="email", value="ada.new@example.com")
    said = "my email is ada.new@example.com"
    suggested = await s.ids.suggest(redis, new_mail, chat_customer, via=CHAT, evidence=said,
                                    event_id="ev_1", at=T0)
    assert (suggested.action, suggested.customer_id, suggested.evidence) == ("suggest", chat_customer, said)
    assert await s.ids.suggest(redis, new_mail, chat_customer, via=CHAT, evidence=said,
                               event_id="ev_1", at=T0) == suggested  # a replay suggests the same
    # anyone can type anyone's address: the address is still nobody's but its own
    [(cid, decision)] = await identify(redis, s, message(new_mail, "ev_3"))
    assert cid == customer_id_for(new_mail) and decision.outcome == NEW
    [(address, kept)] = (await s.ids.suggestions(redis, chat_customer)).items()
    assert (address, kept.evidence, kept.via) == (str(new_mail), said, str(CHAT))
    # an agent confirms it: linked with their evidence, and no longer a suggestion
    await s.ids.link(redis, new_mail, chat_customer, evidence="verified by a code we mailed", actor="maria")
    assert await s.ids.suggestions(redis, chat_customer) == {}
    assert new_mail in await s.ids.identities(redis, chat_customer)


async def profiles(redis: Redis, s: Stores, *customer_ids: str) -> list[tuple[str | None, str | None]]:
    pipe = redis.pipeline(transaction=False)
    s.directory.queue_read_profiles(pipe, customer_ids)
    [answer] = await pipe.execute()
    found = s.directory.parse_profiles(customer_ids, answer)
    return [(p.tier, p.name) for p in found]


async def test_a_csv_import_sets_tiers_on_each_identitys_customer(redis: Redis) -> None:
    s = stores(chunk=2)
    await identify(redis, s, message(ADA, "ev_1"), message(ADA_X, "ev_2"))
    await s.ids.link(redis, ADA, X, evidence="same person", actor="maria")
    rows = parse_directory_csv(
        "identity,tier,name\nada@example.com,premium,Ada Lovelace\nbob@example.com,standard,Bob\n"
        "+442079460958,,Carol\nchat:s_81f3,standard,\n@dave,premium,\n", TIERS)
    counts = await s.directory.import_rows(redis, rows, "crm sync")
    assert counts == ImportCounts(rows=5, customers_created=4, tiers_set=4, names_set=3)
    bob, carol = customer_id_for(BOB), customer_id_for(Identity(kind="phone", value="+442079460958"))
    # ada is linked to X: the tier lands on the customer she belongs to
    assert await profiles(redis, s, X, A, bob, carol) == [
        ("premium", "Ada Lovelace"), (None, None), ("standard", "Bob"), (None, "Carol")]
    assert await s.ids.identities(redis, bob) == (BOB,)
    again = await s.directory.import_rows(redis, rows, "crm sync")
    assert again.customers_created == 0
    [(cid, decision)] = await identify(redis, s, message(BOB, "ev_9"))
    assert (cid, decision.outcome) == (bob, KNOWN)
    await s.directory.set_tier(redis, bob, "premium", "maria")
    await s.directory.set_name(redis, bob, "Robert", "maria")
    assert await profiles(redis, s, bob) == [("premium", "Robert")]


# --- the HTTP API ---------------------------------------------------------------------

TOKEN = {"Authorization": "Bearer secret-token"}
CSV = {"Content-Type": "text/csv"}
LINK = f"/v1/customers/{X}/identities"


def allowed(request: web.Request) -> bool:
    return request.headers.get("Authorization") == TOKEN["Authorization"]


def linking(identity: str = "ada@example.com", **body: Any) -> dict[str, Any]:
    return {"json": {"identity": identity, **body}}


class Published:
    """Records every link event the API publishes; can be told to fail once."""

    def __init__(self) -> None:
        self.events: list[IdentityLink] = []
        self.fail_next = False

    async def __call__(self, link: IdentityLink) -> None:
        if self.fail_next:
            self.fail_next = False
            raise TransientError("kafka is away")
        self.events.append(link)


@dataclass
class Api:
    client: TestClient[web.Request, web.Application]
    stores: Stores
    published: Published


@pytest.fixture
async def api(redis: Redis) -> AsyncIterator[Api]:
    s = stores()
    published = Published()
    app = web.Application()
    add_routes(app, lambda: redis, published, TIERS, allowed, namespace=s.namespace)
    async with TestClient(TestServer(app)) as client:
        yield Api(client, s, published)


async def call(api: Api, method: str, path: str, status: int, **kwargs: Any) -> Any:
    headers = {**TOKEN, **kwargs.pop("headers", {})}
    response = await api.client.request(method, path, headers=headers, **kwargs)
    body = await response.json()
    assert response.status == status, body
    return body


def error(body: Any) -> tuple[str, str | None]:
    return body["error"]["code"], body["error"]["field"]


@pytest.mark.parametrize(("method", "path"), [
    ("GET", f"/v1/customers/{A}"), ("POST", f"/v1/customers/{A}/identities"),
    ("DELETE", f"/v1/customers/{A}/identities/ada@example.com"), ("PUT", f"/v1/customers/{A}/tier"),
    ("POST", "/v1/customers/import"),
])
async def test_every_route_wants_a_token(api: Api, method: str, path: str) -> None:
    response = await api.client.request(method, path, headers={"Authorization": "Bearer wrong"})
    assert response.status == 401 and error(await response.json()) == ("unauthorized", None)


async def test_link_view_tier_and_unlink_over_http(api: Api, redis: Redis) -> None:
    s = api.stores
    await identify(redis, s, message(ADA, "ev_1"), message(ADA_X, "ev_2"))
    await append(redis, s, A, ADA, entry(1, "ada by mail"))
    await append(redis, s, X, ADA_X, entry(2, "ada on x"))
    body = {"identity": "ada@example.com", "evidence": "same person, confirmed on call",
            "actor": "agent maria"}
    made = await call(api, "POST", f"/v1/customers/{X}/identities", 201, json=body)
    assert (made["action"], made["customer_id"], made["previous_customer_id"]) == ("link", X, A)
    assert made["identity"] == {"kind": "email", "value": "ada@example.com"}
    repeated = await call(api, "POST", f"/v1/customers/{X}/identities", 200, json=body)
    assert repeated == made
    assert [e.event_id for e in api.published.events] == [made["event_id"]] * 2

    assert await call(api, "PUT", f"/v1/customers/{X}/tier", 200, json={"tier": "premium"}) == {
        "customer_id": X, "tier": "premium"}
    view = await call(api, "GET", f"/v1/customers/{X}", 200)
    assert view["tier"] == "premium" and view["identities"] == ["email:ada@example.com", "x:@ada_x"]
    assert [(h["identity"], h["summary"]) for h in view["history"]] == [
        ("x:@ada_x", "ada on x"), ("email:ada@example.com", "ada by mail")]
    assert [h["summary"] for h in (await call(api, "GET", f"/v1/customers/{X}?limit=1", 200))["history"]] == [
        "ada on x"]

    parted = await call(api, "DELETE", f"/v1/customers/{X}/identities/email:ada@example.com", 200,
                        params={"actor": "agent tom", "evidence": "two different Adas"})
    assert (parted["action"], parted["customer_id"], parted["previous_customer_id"]) == ("unlink", A, X)
    assert (await call(api, "GET", f"/v1/customers/{A}", 200))["identities"] == ["email:ada@example.com"]
    assert [e.action for e in api.published.events] == ["link", "link", "unlink"]


async def test_a_link_whose_event_was_not_published_is_published_on_retry(api: Api, redis: Redis) -> None:
    await identify(redis, api.stores, message(ADA, "ev_1"), message(ADA_X, "ev_2"))
    body = {"identity": "@ada_x", "evidence": "same person", "actor": "maria"}
    api.published.fail_next = True
    failed = await call(api, "POST", f"/v1/customers/{A}/identities", 503, json=body)
    assert error(failed) == ("unavailable", None)
    assert api.published.events == []
    made = await call(api, "POST", f"/v1/customers/{A}/identities", 200, json=body)
    assert [e.event_id for e in api.published.events] == [made["event_id"]]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "code", "field"), [
    ("GET", "/v1/customers/nobody", {}, 400, "bad_customer_id", "id"),
    ("GET", "/v1/customers/cus_nobody", {}, 404, "not_found", "id"),
    ("GET", f"/v1/customers/{A}?limit=0", {}, 400, "bad_limit", "limit"),
    ("POST", LINK, {"data": b"{"}, 400, "bad_json", None),
    ("POST", LINK, linking(actor="m"), 422, "invalid", "evidence"),
    ("POST", LINK, linking(evidence="e"), 422, "invalid", "actor"),
    ("POST", LINK, linking(evidence="e", actor="m", why=1), 422, "invalid", "why"),
    ("POST", LINK, linking("not one", evidence="e", actor="m"), 422, "invalid", "identity"),
    ("POST", "/v1/customers/cus_nobody/identities", linking(evidence="e", actor="m"),
     404, "unknown_customer", "identity"),
    ("POST", LINK, linking("@ada_x", evidence="e", actor="m"), 409, "already_linked", "identity"),
    ("DELETE", f"/v1/customers/{X}/identities/@ada_x", {"params": {"actor": "m", "evidence": "e"}},
     409, "not_linked", "identity"),
    ("DELETE", f"/v1/customers/{X}/identities/ada@example.com", {"params": {"actor": "m"}},
     422, "invalid", "evidence"),
    ("PUT", f"/v1/customers/{X}/tier", {"json": {"tier": "gold"}}, 422, "invalid", "tier"),
    ("PUT", f"/v1/customers/{X}/tier", {"json": {}}, 422, "invalid", "tier"),
    ("PUT", "/v1/customers/cus_nobody/tier", {"json": {"tier": "premium"}}, 404, "not_found", "id"),
    ("POST", "/v1/customers/import", {"data": b"identity,tier\n", "headers": {"Content-Type": "text/json"}},
     415, "unsupported_media_type", None),
    ("POST", "/v1/customers/import", {"data": b"identity,tier\n\xff,premium\n", "headers": CSV},
     400, "bad_encoding", None),
    ("POST", "/v1/customers/import", {"data": b"identity,tier\nada@example.com,premium\nb@x.com,gold\n",
                                      "headers": CSV}, 422, "invalid_csv", "customers.csv:3 tier"),
])
async def test_bad_requests_get_clear_errors(api: Api, redis: Redis, method: str, path: str,
                                             kwargs: dict[str, Any], status: int, code: str,
                                             field: str | None) -> None:
    await identify(redis, api.stores, message(ADA, "ev_1"), message(ADA_X, "ev_2"))
    assert error(await call(api, method, path, status, **kwargs)) == (code, field)
    assert api.published.events == []


async def test_a_csv_import_over_http(api: Api, redis: Redis) -> None:
    csv = b"identity,tier,name\nada@example.com,premium,Ada\n@ada_x,standard,\n"
    counts = await call(api, "POST", "/v1/customers/import", 200, data=csv, params={"actor": "crm"},
                        headers={"Content-Type": "text/csv; charset=utf-8"})
    assert counts == {"rows": 2, "customers_created": 2, "tiers_set": 2, "names_set": 1}
    view = await call(api, "GET", f"/v1/customers/{A}", 200)
    assert (view["tier"], view["name"], view["identities"]) == ("premium", "Ada", ["email:ada@example.com"])
    assert await profiles(redis, api.stores, X) == [("standard", None)]



@pytest.mark.parametrize("cluster", [False, True], ids=["one node", "cluster"])
async def test_redis_away_is_a_counted_503_that_names_no_host(cluster: bool) -> None:
    port = free_port()
    # a Cluster client that reaches no node raises RedisClusterException, not a RedisError
    away = new_redis(f"redis://127.0.0.1:{port}/0", cluster=cluster, socket_connect_timeout=1)
    s = stores()
    app = web.Application()
    add_routes(app, lambda: away, Published(), TIERS, allowed, namespace=s.namespace)
    before = REJECTED.labels("unavailable")._value.get()
    async with TestClient(TestServer(app)) as client:
        response = await client.get(f"/v1/customers/{A}", headers=TOKEN)
        body = await response.json()
    await away.aclose()
    assert (response.status, response.headers["Retry-After"]) == (503, "1")
    assert body["error"]["code"] == "unavailable"
    assert str(port) not in str(body) and "127.0.0.1" not in str(body)
    assert REJECTED.labels("unavailable")._value.get() == before + 1
