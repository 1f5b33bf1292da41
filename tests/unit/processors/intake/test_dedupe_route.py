from __future__ import annotations

from datetime import UTC, datetime

from processors.intake import dedupe
from processors.stores.claims import Claim
from schemas import Identity, InboundMessage
from schemas.ids import customer_id_for

CLAIM = Claim("ev_1", "sb.inbound.v1/0/42")


def test_first_claim_is_new() -> None:
    verdict, reason = dedupe.decide(CLAIM, None)
    assert verdict is dedupe.Novelty.NEW and "first seen" in reason


def test_same_record_read_again_is_a_replay_not_a_duplicate() -> None:
    verdict, reason = dedupe.decide(CLAIM, b"sb.inbound.v1/0/42")
    assert verdict is dedupe.Novelty.REPLAY and "after a restart" in reason


def test_other_record_with_same_event_id_is_a_duplicate() -> None:
    verdict, reason = dedupe.decide(CLAIM, b"sb.inbound.v1/3/7")
    assert verdict is dedupe.Novelty.DUPLICATE and "sb.inbound.v1/3/7" in reason


def message(sender: str = "ada@example.com", thread: str = "t1", channel: str = "api") -> InboundMessage:
    return InboundMessage(
        event_id="ev_1", channel=channel, native_id="1", thread_key=thread,
        sender=Identity(kind="email", value=sender),
        received_at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC), text="help",
    )


def test_customer_ids_are_stable_per_identity() -> None:
    assert customer_id_for(message().sender) == customer_id_for(message(thread="t2").sender)
    assert customer_id_for(message().sender) != customer_id_for(message("bob@example.com").sender)
