"""Identity links and unlinks on a real Redis Cluster, across three hash tags (decision 0022).

The identity's binding, the customer it leaves and the one it joins sit in three slots,
so a link is four steps, each in one slot. A crash between two steps is played here by
calling the steps directly and stopping; the same request replayed finishes the move,
losing no history line and copying none twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio.cluster import RedisCluster

from processors.intake.identify import LINKED, NEW, Binding, Sighting, decide
from processors.stores.history import Append, ConversationSummary, HistoryStore, RecentWrite
from processors.stores.identities import IdentityStore, LinkRefused
from processors.stores.tags import Tags, pipeline
from router.http.customers import add_routes
from schemas import HistoryEntry, Identity, IdentityLink
from schemas.ids import customer_id_for

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ADA = Identity(kind="email", value="ada@example.com")
ADA_X = Identity(kind="x", value="@ada_x")
A, X = customer_id_for(ADA), customer_id_for(ADA_X)
TAGS = Tags(12)


@dataclass
class Stores:
    history: HistoryStore
    ids: IdentityStore


def stores() -> Stores:
    ns = f"t{uuid.uuid4().hex}"
    history = HistoryStore(ns, tags=TAGS)
    return Stores(history, IdentityStore(ns, history))


def entry(minutes: int, summary: str, direction: str = "in") -> HistoryEntry:
    return HistoryEntry(at=T0 + timedelta(minutes=minutes), channel="api", conversation_id="con_1",
                        direction=direction, summary=summary)  # type: ignore[arg-type]


async def seed(cluster: RedisCluster, s: Stores) -> None:
    """Ada by mail and Ada on X as two customers, each with history; Ada's mail has a conversation."""
    sightings = [Sighting(identity=i, event_id=f"ev_{n}", at=T0) for n, i in enumerate((ADA, ADA_X))]
    pipe = pipeline(cluster)
    s.ids.queue_lookup(pipe, sightings)
    [answer] = await pipe.execute()
    found = s.ids.parse_lookup(answer)
    assert [decide(x, f)[1].outcome for x, f in zip(sightings, found, strict=True)] == [NEW, NEW]
    pipe = pipeline(cluster)
    s.ids.queue_register(pipe, [(ADA, A), (ADA_X, X)])
    s.history.queue_append(pipe, [Append(A, (entry(1, "ada asks about invoice"), entry(3, "ada again")), ADA),
                                  Append(A, (entry(4, "note on A", "note"),), None),
                                  Append(X, (entry(2, "tweet from ada_x"),), ADA_X)])
    s.history.queue_write_recent(pipe, [RecentWrite(A, [ConversationSummary(
        conversation_id="con_a", queue="billing", status="open", last_at=T0, identity=str(ADA))])])
    await pipe.execute()


async def state(cluster: RedisCluster, s: Stores) -> tuple[list[list[str]], list[list[str]], str]:
    """Both customers' history and conversations, and the customer Ada's mail is bound to."""
    pipe = pipeline(cluster)
    s.history.queue_read(pipe, [X, A], 50)
    s.history.queue_read_recent(pipe, [X, A])
    history, recent = await pipe.execute()
    [bound] = s.ids.parse_lookup([await cluster.get(s.ids.identity_key(ADA))])
    assert bound is not None
    return ([[e.summary for e in lines] for lines in s.history.parse_read(history)],
            [[c.conversation_id for c in cs] for cs in s.history.parse_recent(recent)], bound.customer_id)


ADA_LINES = ["ada again", "ada asks about invoice"]
LINKED_STATE = ([["ada again", "tweet from ada_x", "ada asks about invoice"], ["note on A"]],
                [["con_a"], []], X)
UNLINKED_STATE = ([["tweet from ada_x"], ["note on A", *ADA_LINES]], [[], ["con_a"]], A)


def test_the_identity_and_both_customers_sit_in_three_tags() -> None:
    assert len({TAGS.of(str(ADA)), TAGS.of(A), TAGS.of(X)}) == 3


async def test_a_link_and_an_unlink_across_three_slots_move_history_and_conversations(
        cluster: RedisCluster) -> None:
    s = stores()
    await seed(cluster, s)
    link = await s.ids.link(cluster, ADA, X, evidence="same person", actor="agent maria")  # type: ignore[arg-type]
    assert (link.action, link.customer_id, link.previous_customer_id) == ("link", X, A)
    assert await state(cluster, s) == LINKED_STATE
    assert await s.ids.identities(cluster, X) == (ADA, ADA_X)  # type: ignore[arg-type]
    assert await s.ids.identities(cluster, A) == ()  # type: ignore[arg-type]
    assert await cluster.get(s.ids.moving_key(ADA)) is None

    unlink = await s.ids.unlink(cluster, ADA, X, evidence="not her", actor="agent tom")  # type: ignore[arg-type]
    assert (unlink.action, unlink.customer_id, unlink.previous_customer_id) == ("unlink", A, X)
    assert await state(cluster, s) == UNLINKED_STATE
    assert await s.ids.identities(cluster, A) == (ADA,)  # type: ignore[arg-type]
    with pytest.raises(LinkRefused) as refused:
        await s.ids.link(cluster, ADA, "cus_nobody", evidence="", actor="agent tom")  # type: ignore[arg-type]
    assert refused.value.code == "unknown_customer"
    assert await state(cluster, s) == UNLINKED_STATE


async def test_a_link_cut_after_the_binding_is_finished_by_its_replay(cluster: RedisCluster) -> None:
    s = stores()
    await seed(cluster, s)
    redis = cluster  # typed as the stores take it
    read = await cluster.get(s.ids.identity_key(ADA))
    new = Binding(customer_id=X, since=T0, how="link", event_id="lnk_cut", actor="agent maria", previous=A,
                  evidence="same person")
    plan = await s.ids.begin(redis, ADA, read, new, must_exist=True)  # type: ignore[arg-type]
    assert plan is not None
    # the process died here: Ada's mail is X's, her lines are still A's, the plan says so
    history, _, bound = await state(cluster, s)
    assert bound == X and history == [["tweet from ada_x"], ["note on A", *ADA_LINES]]
    assert await cluster.get(s.ids.moving_key(ADA)) is not None
    [(customer, decision)] = [decide(Sighting(identity=ADA, event_id="ev_9", at=T0), f)
                              for f in s.ids.parse_lookup([await cluster.get(s.ids.identity_key(ADA))])]
    assert (customer, decision.outcome) == (X, LINKED)

    with pytest.raises(LinkRefused) as again:  # the agent's request, repeated
        await s.ids.link(redis, ADA, X, evidence="same person", actor="agent maria")  # type: ignore[arg-type]
    assert again.value.code == "already_linked" and again.value.recorded is not None
    assert again.value.recorded.event_id == "lnk_cut"
    assert await state(cluster, s) == LINKED_STATE
    assert await s.ids.identities(cluster, A) == ()  # type: ignore[arg-type]
    assert await cluster.get(s.ids.moving_key(ADA)) is None


async def test_an_unlink_cut_after_the_copy_doubles_nothing_when_replayed(cluster: RedisCluster) -> None:
    s = stores()
    await seed(cluster, s)
    await s.ids.link(cluster, ADA, X, evidence="same person", actor="agent maria")  # type: ignore[arg-type]
    read = await cluster.get(s.ids.identity_key(ADA))
    new = Binding(customer_id=A, since=T0, how="unlink", event_id="lnk_undo", actor="agent tom", previous=X,
                  evidence="not her")
    plan = await s.ids.begin(cluster, ADA, read, new, must_exist=False)  # type: ignore[arg-type]
    assert plan is not None
    await s.ids.copy(cluster, plan)  # type: ignore[arg-type]
    await s.ids.copy(cluster, plan)  # type: ignore[arg-type]  # a step repeated is the same step
    # died before the old customer let go: Ada's lines are on both sides for now, none lost
    history, recent, bound = await state(cluster, s)
    assert bound == A and recent == [["con_a"], ["con_a"]]
    assert history == [["ada again", "tweet from ada_x", "ada asks about invoice"],
                       ["note on A", "ada again", "ada asks about invoice"]]

    with pytest.raises(LinkRefused) as again:
        await s.ids.unlink(cluster, ADA, X, evidence="not her", actor="agent tom")  # type: ignore[arg-type]
    assert again.value.code == "not_linked" and again.value.recorded is not None
    assert again.value.recorded.event_id == "lnk_undo"
    assert await state(cluster, s) == UNLINKED_STATE
    assert await s.ids.identities(cluster, X) == (ADA_X,)  # type: ignore[arg-type]
    assert await cluster.get(s.ids.moving_key(ADA)) is None
    # and a later link runs from a clean slate
    await s.ids.link(cluster, ADA, X, evidence="same person after all", actor="agent maria")  # type: ignore[arg-type]
    assert await state(cluster, s) == LINKED_STATE


async def test_the_customers_api_imports_links_and_shows_customers_on_a_cluster(
        cluster: RedisCluster) -> None:
    ns = f"t{uuid.uuid4().hex}"
    published: list[IdentityLink] = []

    async def publish(link: IdentityLink) -> None:
        published.append(link)
    app = web.Application()
    add_routes(app, lambda: cluster, publish, {"standard", "premium"},  # type: ignore[arg-type,return-value]
               lambda r: r.headers.get("Authorization") == "Bearer t", namespace=ns, tags=TAGS)
    async with TestClient(TestServer(app)) as client:
        async def call(method: str, path: str, status: int, **kwargs: Any) -> Any:
            headers = {"Authorization": "Bearer t", **kwargs.pop("headers", {})}
            response = await client.request(method, path, headers=headers, **kwargs)
            body = await response.json()
            assert response.status == status, body
            return body
        # many customers in one import: their keys in many slots, one call per slot
        rows = "".join(f"c{n}@example.com,standard,\n" for n in range(40))
        csv = f"identity,tier,name\nada@example.com,premium,Ada\n@ada_x,standard,\n{rows}"
        counts = await call("POST", "/v1/customers/import", 200, data=csv.encode(), params={"actor": "crm"},
                            headers={"Content-Type": "text/csv"})
        assert counts == {"rows": 42, "customers_created": 42, "tiers_set": 42, "names_set": 1}
        body = {"identity": "ada@example.com", "evidence": "same person", "actor": "agent maria"}
        made = await call("POST", f"/v1/customers/{X}/identities", 201, json=body)
        assert (made["customer_id"], made["previous_customer_id"]) == (X, A)
        assert await call("POST", f"/v1/customers/{X}/identities", 200, json=body) == made
        view = await call("GET", f"/v1/customers/{X}", 200)
        assert (view["tier"], view["identities"]) == ("standard", ["email:ada@example.com", "x:@ada_x"])
        c7 = customer_id_for(Identity(kind="email", value="c7@example.com"))
        assert (await call("GET", f"/v1/customers/{c7}", 200))["tier"] == "standard"
        await call("DELETE", f"/v1/customers/{X}/identities/email:ada@example.com", 200,
                   params={"actor": "agent tom", "evidence": "two Adas"})
        assert (await call("GET", f"/v1/customers/{A}", 200))["identities"] == ["email:ada@example.com"]
    assert [e.action for e in published] == ["link", "link", "unlink"]
