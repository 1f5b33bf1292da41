"""Exactly once to the customer: a worker killed between claim and send never sends twice.

A real worker sends through a real SMTP server that holds the DATA answer; the worker is
killed (SIGKILL) while the mail is in flight and a new one takes over the same records.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from router.settings import Settings
from schemas import DeliveryReceipt, Identity, OutboundMessage, decode, encode
from schemas.topics import DELIVERY, OUTBOUND
from tests.e2e.test_email import email_env
from tests.integration.email.conftest import Mailbox
from tests.kafka_tools import publish, read_all
from tests.processes import Switchboard, free_port
from tests.waiting import POLL_SECONDS, until

pytestmark = pytest.mark.e2e
Launch = Callable[..., Switchboard]
HOLD_LIMIT_SECONDS = 60


class HoldingInbox:
    """An SMTP server that records each mail, then holds its answer until released."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        # set from the test's thread; the server's loop runs in a thread of its own
        self.release = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(envelope.content)
        await asyncio.to_thread(self.release.wait, HOLD_LIMIT_SECONDS)
        return "250 OK"


@pytest.fixture
def holding_smtp() -> Iterator[tuple[HoldingInbox, int]]:
    inbox, port = HoldingInbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    inbox.release.set()
    controller.stop()




async def test_killed_between_claim_and_result_is_uncertain_never_resent(
        stack: Settings, deployment: Settings, launch: Launch,
        mailbox: Mailbox, holding_smtp: tuple[HoldingInbox, int]) -> None:
    inbox, port = holding_smtp
    env = {**email_env(stack, mailbox, port), "SB_STAGES": '["send"]'}
    first = launch("worker", **env)
    reply = OutboundMessage(
        reply_id=f"rep_{uuid.uuid4().hex[:12]}", conversation_id="con_" + uuid.uuid4().hex[:20],
        channel="email", recipient=Identity(kind="email", value="ada@example.org"),
        kind="agent_reply", text="Your refund left today.", created_at=datetime.now(UTC),
        subject="Refund", customer_id="cus_ada", author="maria")
    await publish(deployment, deployment.topic(OUTBOUND), [(reply.conversation_id.encode(), encode(reply))])
    await until(lambda: inbox.received, "the mail never reached the SMTP server")
    first.stop(signal.SIGKILL)  # mid-DATA: the server has the mail, the worker never heard back
    inbox.release.set()

    launch("worker", **env)

    async def receipts() -> list[DeliveryReceipt]:
        return [decode(r.value, DeliveryReceipt) for r in
                await read_all(deployment, deployment.topic(DELIVERY))]

    deadline = time.monotonic() + 90
    while not (found := await receipts()):
        assert time.monotonic() < deadline, "the restarted worker reported nothing"
        await asyncio.sleep(POLL_SECONDS)
    assert [(r.reply_id, r.status) for r in found] == [(reply.reply_id, "uncertain")]
    assert "not sent again" in (found[0].reason or "")
    assert len(inbox.received) == 1, "the reply reached the customer twice"


async def test_several_replies_in_flight_when_killed_are_each_sent_at_most_once(
        stack: Settings, deployment: Settings, launch: Launch,
        mailbox: Mailbox, holding_smtp: tuple[HoldingInbox, int]) -> None:
    inbox, port = holding_smtp
    replies = [refund(n) for n in range(6)]
    senders_only = {**email_env(stack, mailbox, port), "SB_STAGES": '["send"]'}
    first = launch("worker", **senders_only)
    await publish(deployment, deployment.topic(OUTBOUND),
                  [(r.conversation_id.encode(), encode(r)) for r in replies])
    # a pool of connections: more than one mail is at the server at once (a serial sender stops at one)
    await until(lambda: len(inbox.received) >= 2, "replies never travelled together")
    first.stop(signal.SIGKILL)
    inbox.release.set()

    launch("worker", **senders_only)

    async def receipts() -> list[DeliveryReceipt]:
        found = [decode(r.value, DeliveryReceipt) for r in
                 await read_all(deployment, deployment.topic(DELIVERY))]
        return found if len(found) >= len(replies) else []

    deadline = time.monotonic() + 90
    while not (found := await receipts()):
        assert time.monotonic() < deadline, "the restarted worker did not report every reply"
        await asyncio.sleep(POLL_SECONDS)
    status = {r.reply_id: r.status for r in found}
    assert len(found) == len(status) == len(replies)  # one receipt each
    copies = {r.reply_id: sum(f"marker{n}x".encode() in m for m in inbox.received)
              for n, r in enumerate(replies)}
    for reply in replies:
        # sent: delivered exactly once; uncertain (in flight at the kill): never sent again
        if status[reply.reply_id] == "sent":
            assert copies[reply.reply_id] == 1
        else:
            assert status[reply.reply_id] == "uncertain"
            assert copies[reply.reply_id] <= 1, "a reply reached its customer twice"
    assert list(status.values()).count("uncertain") >= 2  # each in-flight reply had its own claim


def refund(n: int) -> OutboundMessage:
    """Agent Maria's reply to customer n, its text marked so each copy can be counted."""
    return OutboundMessage(
        reply_id=f"rep_{uuid.uuid4().hex[:12]}", conversation_id="con_" + uuid.uuid4().hex[:20],
        channel="email", recipient=Identity(kind="email", value=f"customer{n}@example.org"),
        kind="agent_reply", text=f"Your refund left today (marker{n}x).", created_at=datetime.now(UTC),
        subject="Refund", customer_id=f"cus_{n}", author="maria")
