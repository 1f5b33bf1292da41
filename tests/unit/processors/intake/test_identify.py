from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from processors.intake.identify import (
    KNOWN,
    LINKED,
    NEW,
    Binding,
    Sighting,
    decide,
    identity_of,
    parse_identity,
)
from schemas import Identity, InboundMessage, ParseError
from schemas.ids import customer_id_for

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ADA = Identity(kind="email", value="ada@example.com")
ADA_X = Identity(kind="x", value="@ada_x")
SEEN = Sighting(ADA, "ev_1", T0)


def test_customer_ids_are_deterministic_per_identity() -> None:
    assert customer_id_for(ADA) == customer_id_for(Identity(kind="email", value="ada@example.com"))
    assert customer_id_for(ADA) != customer_id_for(ADA_X)
    assert customer_id_for(ADA).startswith("cus_") and len(customer_id_for(ADA)) == 24


def test_a_replayed_message_writes_the_same_first_binding() -> None:
    message = InboundMessage(event_id="ev_1", channel="api", native_id="1", thread_key="t", sender=ADA,
                             received_at=T0, text="hi")
    first, again = Sighting.of(message).first_binding(), Sighting.of(message).first_binding()
    assert msgspec.json.encode(first) == msgspec.json.encode(again)
    assert first.customer_id == customer_id_for(ADA)


@pytest.mark.parametrize(("raw", "kind", "value"), [
    ("ada@example.com", "email", "ada@example.com"),
    ("  Ada@Example.COM ", "email", "ada@example.com"),
    ("email:ada@example.com", "email", "ada@example.com"),
    ("+442079460958", "phone", "+442079460958"),
    ("phone:+442079460958", "phone", "+442079460958"),
    ("@Ada_X", "x", "@ada_x"),
    ("x:ada_x", "x", "@ada_x"),
    ("x:@ada_x", "x", "@ada_x"),
    ("chat:s_81f3", "chat", "s_81f3"),
])
def test_identities_are_read_in_every_form(raw: str, kind: str, value: str) -> None:
    identity = parse_identity(raw)
    assert (identity.kind, identity.value) == (kind, value)
    assert identity_of(str(identity)) == identity


@pytest.mark.parametrize("raw", [
    "", "ada", "chat:", "chat:has space", "chat:" + "s" * 201, "phone:ada@example.com",
    "email:+442079460958", "x:ada@example.com", "020 7946 0958", "fax:+442079460958",
])
def test_what_is_not_an_identity_is_refused(raw: str) -> None:
    with pytest.raises(ParseError):
        parse_identity(raw)


OTHER = "cus_00000000000000000001"


@pytest.mark.parametrize(("lookup", "customer", "outcome", "reason"), [
    (None, customer_id_for(ADA), NEW, f"customer {customer_id_for(ADA)}: email:ada@example.com first seen"),
    # the first attempt died after Redis wrote the binding: this is still the first sight
    (SEEN.first_binding(), customer_id_for(ADA), NEW, "first seen (re-read after a restart)"),
    (Binding(customer_id=customer_id_for(ADA), since=T0, event_id="ev_0"), customer_id_for(ADA), KNOWN,
     "email:ada@example.com known since 2026-03-01"),
    (Binding(customer_id=OTHER, since=T0, how="import", actor="crm"), OTHER, KNOWN, "known since 2026-03-01"),
    (Binding(customer_id=OTHER, since=T0, how="link", actor="agent maria", previous=customer_id_for(ADA),
             evidence="same person, confirmed on call"), OTHER, LINKED,
     f"customer {OTHER}: email:ada@example.com linked by agent maria on 2026-03-01: "
     "'same person, confirmed on call'"),
    (Binding(customer_id=OTHER, since=T0, how="stated", actor="message ev_9", via="x:@ada_x",
             evidence="my email is ada@example.com"), OTHER, LINKED,
     "linked from x:@ada_x by message ev_9 on 2026-03-01: 'my email is ada@example.com'"),
    (Binding(customer_id=customer_id_for(ADA), since=T0, how="unlink", previous=OTHER, actor="maria",
             evidence="wrong person"), customer_id_for(ADA), KNOWN,
     f"unlinked from {OTHER} by maria: 'wrong person'"),
])
def test_decide_names_the_customer_and_why(lookup: Binding | None, customer: str, outcome: str,
                                           reason: str) -> None:
    got, decision = decide(SEEN, lookup)
    assert got == customer
    assert decision.stage == "identify" and decision.outcome == outcome
    [said] = decision.reasons
    assert reason in said


def test_long_evidence_is_quoted_short() -> None:
    lookup = Binding(customer_id=OTHER, since=T0, how="link", actor="maria", evidence="x " * 300)
    [reason] = decide(SEEN, lookup)[1].reasons
    assert len(reason) < 200 and reason.endswith("…'")
