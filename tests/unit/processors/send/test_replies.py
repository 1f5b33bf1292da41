"""reply_reference: the one answer to "what does our reply cite to stay in the thread"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from processors.brain.stage import acknowledgement_message
from processors.dispatch.plan import card_for
from processors.send.replies import MAX_REFERENCES, reply_reference
from schemas import Identity, InboundMessage, ReplyRef, RoutedConversation

NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


def message(channel: str = "email", ref: ReplyRef | None = None) -> InboundMessage:
    return InboundMessage(event_id="ev_1", channel=channel, native_id="n-1", thread_key="t",
                          sender=Identity(kind="email", value="ada@example.com"), received_at=NOW,
                          text="Where is my parcel?", subject="Parcel", reply_ref=ref)


def routed(m: InboundMessage) -> RoutedConversation:
    return RoutedConversation(event_id=m.event_id, conversation_id="con_1", customer_id="cus_ada",
                              queue="general", priority=3, tier="standard", urgency="normal",
                              first_response_due=NOW + timedelta(hours=8), routed_at=NOW, message=m,
                              decisions=())


def test_without_a_channel_reference_a_reply_cites_the_native_id() -> None:
    assert reply_reference(message()) == ReplyRef(in_reply_to="n-1", references=())


@pytest.mark.parametrize("channel", ["email", "x", "phone", "chat"])
def test_the_channels_reference_is_cited_whatever_the_channel(channel: str) -> None:
    ref = ReplyRef(in_reply_to="post-7", references=("post-1", "post-7"))
    assert reply_reference(message(channel, ref)) == ref


def test_repeated_references_are_cited_once_in_first_order() -> None:
    ref = ReplyRef(in_reply_to="m2", references=("m0", "m1", "m0", "m2"))
    assert reply_reference(message(ref=ref)).references == ("m0", "m1", "m2")


def test_a_long_chain_keeps_its_newest_references() -> None:
    chain = tuple(f"m{i}" for i in range(50))
    got = reply_reference(message(ref=ReplyRef(in_reply_to="m49", references=chain))).references
    assert got == chain[-MAX_REFERENCES:]
    assert got[-1] == "m49"


@pytest.mark.parametrize("ref", [None, ReplyRef(in_reply_to="m2", references=("m0", "m1", "m0", "m2"))])
def test_acknowledgement_and_card_cite_the_same_reference(ref: ReplyRef | None) -> None:
    m = message(ref=ref)
    expected = reply_reference(m)
    ack = acknowledgement_message(routed(m), "Thanks, we are on it.")
    card = card_for(routed(m), None, NOW)
    assert (ack.in_reply_to, ack.references) == (expected.in_reply_to, expected.references)
    assert (card.in_reply_to, card.references) == (expected.in_reply_to, expected.references)
