"""The item ledger's pure parts: what the script is told of a policy, and how its answers read."""

from __future__ import annotations

import dataclasses

import msgspec

from processors.dispatch.ledger import Answer, Ledger, policy_blob
from processors.policy.load import load_policy
from processors.policy.model import Destination, Queue
from processors.stores.cards import CardStore
from processors.stores.tags import UNTAGGED, Tags, hash_tag
from router.vocabulary import VOCABULARY
from tests.paths import FIXTURES


def test_the_script_knows_each_queues_destinations_the_default_and_every_name() -> None:
    policy = dataclasses.replace(
        load_policy(FIXTURES / "policy" / "valid_minimal.yaml", VOCABULARY), default_queue="general",
        queues={"general": Queue("general", None, ("hook",)), "empty": Queue("empty", None, ())},
        destinations={"pager": Destination("pager", "webhook")})
    assert msgspec.json.decode(policy_blob(policy)) == {
        "q": {"general": ["hook"], "empty": []}, "d": "general", "k": ["hook", "pager"]}


def test_answers_read_as_the_claims_plan_batch_knows() -> None:
    assert Answer("new", plan=("hook",)).saved_plan() is None
    assert Answer("later").saved_plan() is None
    seen = Answer("seen", plan=("hook", "we,ird"), deliveries={"hook": b"delivering:t/0/1"})
    assert seen.saved_plan() == ("hook", "we,ird")
    assert Answer("seen", plan=()).saved_plan() == ()
    # a ledger whose plan is gone is planned afresh
    assert Answer("seen", deliveries={}).saved_plan() is None


def test_a_ledger_claims_every_destination_of_its_plan_for_its_record() -> None:
    ledger = Ledger("ns", UNTAGGED, 600, 3600)
    assert ledger.key("con_1", "routed:ev_1") == "ns:ledger:con_1|routed:ev_1"
    # tagged, it shares its conversation's tag with the card
    tags = Tags(12)
    assert hash_tag(Ledger("ns", tags, 600, 3600).key("con_1", "routed:ev_1")) == \
        hash_tag(CardStore("ns", 600, tags).key("con_1"))
    assert ledger.claims(("hook", "mailbox"), "t/0/7") == {
        "plan": b'["hook","mailbox"]', "d:hook": "delivering:t/0/7", "d:mailbox": "delivering:t/0/7"}
    assert Ledger.parse([[[]], [None], [[b"seen", [b"plan", b"[]", b"d:hook", b"failed:t/0/1|x"]]]])[2] == [
        Answer("seen", plan=(), deliveries={"hook": b"failed:t/0/1|x"})]
