"""The dashboard's read model on a busy day: how fast it folds records and draws a snapshot.

    python -m bench.dashboard [--conversations 50000]

Offline (no Kafka, no Redis): encoded routed messages, replies to half of them and their
acknowledgements' receipts, applied the way the feed applies records, then one snapshot.
The snapshot is what each viewer's stream asks for, at most five times a second (viewers
within 0.2 s share one).
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from router.dashboard.board import Board
from router.dashboard.feed import apply
from router.dashboard.view import snapshot
from schemas.codec import encode
from schemas.conversation import ConversationEvent
from schemas.identity import Identity
from schemas.ids import automatic_reply_id
from schemas.inbound import InboundMessage
from schemas.outbound import DeliveryReceipt
from schemas.routed import RoutedConversation

NOW = datetime(2026, 3, 3, 17, 0, tzinfo=UTC)
CHANNELS = ("email", "api", "x")
TIERS = ("standard", "premium", "enterprise")


def day_of_records(n: int) -> list[tuple[str, bytes]]:
    """`n` conversations over the last `n` seconds: message, ack receipt, every other one answered."""
    out = []
    for i in range(n):
        at = NOW - timedelta(seconds=i)
        event, conversation = f"ev_{i}", f"con_{i}"
        message = InboundMessage(event_id=event, channel=CHANNELS[i % 3], native_id=event, thread_key=event,
                                 sender=Identity(kind="email", value=f"c{i % 5000}@example.com"),
                                 received_at=at, text="Where is my parcel?")
        routed = RoutedConversation(
            event_id=event, conversation_id=conversation, customer_id=f"cus_{i % 5000}",
            queue=("general", "billing")[i % 2], priority=3, tier=TIERS[i % 3], urgency="normal",
            first_response_due=at + timedelta(hours=8), routed_at=at, message=message, decisions=())
        out.append(("sb.routed.v1", encode(routed)))
        out.append(("sb.delivery.v1", encode(DeliveryReceipt(
            reply_id=automatic_reply_id("acknowledgement", event), conversation_id=conversation,
            channel=message.channel, status="sent", at=at + timedelta(seconds=2), kind="acknowledgement"))))
        if i % 2:
            out.append(("sb.conversation.v1", encode(ConversationEvent(
                event_id=f"rep_{i}", conversation_id=conversation, customer_id=routed.customer_id,
                kind="agent_reply", at=at + timedelta(minutes=5), author=f"agent{i % 40}"))))
    return out


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=50_000)
    args = parser.parse_args()
    records = day_of_records(args.conversations)
    board = Board(zone=ZoneInfo("Europe/Berlin"))
    started = time.perf_counter()
    for topic, value in records:
        apply(board, topic, value)
    took = time.perf_counter() - started
    print(f"fold: {len(records):,} records in {took:.2f} s = {len(records) / took:,.0f} records/s")
    times = []
    for _ in range(5):
        started = time.perf_counter()
        view = snapshot(board, NOW, {"general": args.conversations // 4, "billing": args.conversations // 4})
        times.append(time.perf_counter() - started)
    owed = sum(r["waiting"] for r in view["segments"])
    print(f"snapshot: {args.conversations:,} conversations ({owed:,} owed a response): "
          f"best {min(times) * 1000:.0f} ms of 5")


if __name__ == "__main__":
    main()
