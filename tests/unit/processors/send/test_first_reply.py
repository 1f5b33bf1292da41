"""Time to first reply counts the team's open hours only, and only the first agent reply."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from processors.policy.load import load_policy
from processors.send.first_reply import first_reply_seconds
from router.vocabulary import VOCABULARY
from schemas.conversation import ConversationCard
from schemas.identity import Identity
from schemas.outbound import DeliveryReceipt
from tests.paths import EXAMPLE_POLICY

POLICY = load_policy(EXAMPLE_POLICY, VOCABULARY)
FRIDAY_1730_BERLIN = datetime(2026, 3, 6, 16, 30, tzinfo=UTC)
MONDAY_0830_BERLIN = datetime(2026, 3, 9, 7, 30, tzinfo=UTC)
CARD = ConversationCard(conversation_id="con_1", customer_id="cus_1", channel="x",
                        recipient=Identity(kind="xid", value="750362064426721281"), queue="social",
                        tier="standard", urgency="normal", priority=2, status="open",
                        opened_at=FRIDAY_1730_BERLIN, updated_at=FRIDAY_1730_BERLIN)
SENT = DeliveryReceipt(reply_id="rep_1", conversation_id="con_1", channel="x", status="sent",
                       at=MONDAY_0830_BERLIN, kind="agent_reply")


def test_only_open_hours_count() -> None:
    # 30 minutes on Friday before 18:00, Saturday's 10:00-14:00, 30 on Monday after 08:00
    assert first_reply_seconds(CARD, SENT, POLICY) == 5 * 3600.0


@pytest.mark.parametrize(("card", "receipt"), [
    (msgspec.structs.replace(CARD, agent="maria"), SENT),  # someone answered before
    (CARD, msgspec.structs.replace(SENT, status="failed")),
    (CARD, msgspec.structs.replace(SENT, kind="acknowledgement")),
    (msgspec.structs.replace(CARD, queue="gone"), SENT),
    (None, SENT)])
def test_only_a_first_sent_agent_reply_is_measured(card: ConversationCard | None,
                                                    receipt: DeliveryReceipt) -> None:
    assert first_reply_seconds(card, receipt, POLICY) is None
