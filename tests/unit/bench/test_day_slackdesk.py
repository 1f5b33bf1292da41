"""The simulated agents read the bot's real Slack posts: a conversation's first post is work, nothing else."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import msgspec

from bench.day.slackdesk import follow_up_of, item_of
from connectors.slack.blocks import follow_up_message, receipt_message, routed_message
from schemas.conversation import ConversationCard
from schemas.identity import Identity
from schemas.inbound import InboundMessage
from schemas.outbound import DeliveryReceipt
from schemas.routed import CallbackTask, RoutedConversation
from tests.emulators.slack import Post

T0 = datetime(2026, 11, 30, 9, tzinfo=UTC)
DUE = T0 + timedelta(hours=2)


def conversation(callback: bool) -> tuple[RoutedConversation, ConversationCard]:
    caller = Identity(kind="phone", value="+4915100000001")
    message = InboundMessage(event_id="ev_1", channel="phone", native_id="CA1", thread_key=str(caller),
                             sender=caller, received_at=T0, text="The router is dead, call me.")
    routed = RoutedConversation(
        event_id="ev_1", conversation_id="con_0123456789abcdef0123", customer_id="cus_1", queue="social",
        priority=42, tier="premium", urgency="high", message=message, routed_at=T0, first_response_due=DUE,
        decisions=(),
        reply_mode="callback" if callback else "text",
        callback=CallbackTask(number=caller.value, due=DUE) if callback else None)
    card = ConversationCard(conversation_id=routed.conversation_id, customer_id="cus_1", channel="phone",
                            recipient=caller, queue="social", tier="premium", urgency="high", priority=42,
                            status="open", opened_at=T0, updated_at=T0, first_response_due=DUE)
    return routed, card


def posted(blocks: object, text: str, thread_ts: str | None = None) -> Post:
    """The post as the emulator keeps it: the blocks as JSON sent them."""
    return Post(channel="C0SOCIAL", ts="1700000000.000100", text=text,
                blocks=msgspec.json.decode(msgspec.json.encode(blocks)), thread_ts=thread_ts)


def test_a_routed_post_is_an_item_with_its_conversation_priority_due_and_thread() -> None:
    message = routed_message(*conversation(callback=False))
    item = item_of(posted(message.blocks, message.text), T0)
    assert item is not None
    assert (item.conversation_id, item.priority, item.due, item.kind) == (
        "con_0123456789abcdef0123", 42, DUE, "answer")
    assert item.thread == ("C0SOCIAL", "1700000000.000100")


def test_a_call_back_post_asks_for_a_call_and_posts_in_threads_are_not_work() -> None:
    message = routed_message(*conversation(callback=True))
    item = item_of(posted(message.blocks, message.text), T0)
    assert item is not None and item.kind == "callback"
    receipt = receipt_message(DeliveryReceipt(reply_id="rep_1", conversation_id="con_0123456789abcdef0123",
                                              channel="phone", status="sent", at=T0))
    assert item_of(posted(receipt.blocks, receipt.text, thread_ts="1700000000.000100"), T0) is None
    assert item_of(replace(posted(message.blocks, message.text), blocks=[]), T0) is None


def test_the_customer_writing_again_in_the_thread_is_work_in_that_thread() -> None:
    routed, card = conversation(callback=False)
    first = routed_message(routed, card)
    root = item_of(posted(first.blocks, first.text), T0)
    assert root is not None
    later = msgspec.structs.replace(routed, event_id="ev_2", priority=60,
                                    first_response_due=DUE + timedelta(hours=1))
    again = follow_up_message(later, card)
    post = replace(posted(again.blocks, again.text, thread_ts=root.thread[1] if root.thread else None),
                   ts="1700000100.000200")
    item = follow_up_of(post, root)
    assert item is not None
    assert (item.conversation_id, item.priority, item.due, item.thread) == (
        root.conversation_id, 60, DUE + timedelta(hours=1), root.thread)
    assert item.key != root.key
    receipt = receipt_message(DeliveryReceipt(reply_id="rep_1", conversation_id=root.conversation_id,
                                              channel="phone", status="sent", at=T0))
    assert follow_up_of(posted(receipt.blocks, receipt.text, thread_ts="1700000000.000100"), root) is None
