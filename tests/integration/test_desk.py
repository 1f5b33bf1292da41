"""The local agents' desk on real ports: signed deliveries printed once, bad signatures refused."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import msgspec
import pytest
from pydantic import SecretStr

from connectors.webhook import WebhookEndpoint, WebhookSettings, WebhookTool
from connectors.webhook.sign import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign
from connectors.webhook.tool import body_of
from devtools.desk import Desk, DeskEndpoint, endpoints_for
from router.cli.commands import main
from router.settings import load
from schemas import Decision, Identity, InboundMessage, RoutedConversation
from schemas.conversation import ConversationCard
from schemas.errors import ConfigError, SwitchboardError
from schemas.handoff import Handoff
from schemas.outbound import DeliveryReceipt, GuardFlag
from schemas.routed import CallbackTask, TransferNote

pytestmark = pytest.mark.integration

SECRET, PAGER = "desk-test-secret", "desk-test-pager"
NOW = datetime.now(UTC).replace(microsecond=0)
ADA = Identity(kind="email", value="ada@example.com")
ANSWER = ("curl -s -H 'Authorization: Bearer demo-token' -H 'Content-Type: application/json' "
          "-d '{\"text\": \"...\"}' http://127.0.0.1:18080/v1/conversations/con_desk1/replies")
RESOLVE = ("curl -s -H 'Authorization: Bearer demo-token' -H 'Content-Type: application/json' "
           "-d '{}' http://127.0.0.1:18080/v1/conversations/con_desk1/resolve")


@dataclass
class Running:
    desk: Desk
    out: io.StringIO
    session: aiohttp.ClientSession

    @property
    def helpdesk(self) -> str:
        return self.desk.urls[0]

    @property
    def pager(self) -> str:
        return self.desk.urls[1]

    async def post(self, url: str, handoff: Handoff, *, secret: str = SECRET,
                   signed_at: float | None = None) -> tuple[int, Any]:
        body = body_of(handoff)
        at = time.time() if signed_at is None else signed_at
        headers = {"Content-Type": "application/json", DELIVERY_HEADER: handoff.delivery_id,
                   EVENT_HEADER: handoff.event, SIGNATURE_HEADER: sign(secret.encode(), body, at)}
        async with self.session.post(url, data=body, headers=headers) as response:
            return response.status, await response.json()


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    out = io.StringIO()
    desk = Desk([DeskEndpoint("helpdesk-webhook", 0, "/switchboard", SecretStr(SECRET)),
                 DeskEndpoint("pager-webhook", 0, "/page", SecretStr(PAGER))], out=out)
    await desk.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Running(desk, out, session)
    finally:
        await desk.stop()


def card(**changes: Any) -> ConversationCard:
    fields: dict[str, Any] = {
        "conversation_id": "con_desk1", "customer_id": "cus_ada", "channel": "email", "recipient": ADA,
        "queue": "general", "tier": "premium", "urgency": "high", "priority": 2, "status": "open",
        "opened_at": NOW, "updated_at": NOW, "customer_name": "Ada Lovelace",
    }
    return ConversationCard(**(fields | changes))


def routed(text: str) -> RoutedConversation:
    now = datetime.now(UTC)  # the desk shows how long is left, by its own clock
    message = InboundMessage(event_id="ev_desk1", channel="email", native_id="m-1@example.com",
                             thread_key="m-1", sender=ADA, received_at=NOW, text=text,
                             subject="Order 1234 never arrived")
    reasons = [Decision(stage="dedupe", outcome="new", reasons=("event ev_desk1 first seen",)),
               Decision(stage="enrich", outcome="premium",
                        reasons=("tier=premium: from the customer directory",)),
               Decision(stage="classify", outcome="high",
                        reasons=("urgency=high: keyword 'never arrived'",)),
               Decision(stage="route", outcome="general",
                        reasons=tuple(f"queue=general: rule {n}" for n in range(1, 7)))]
    return RoutedConversation(
        event_id="ev_desk1", conversation_id="con_desk1", customer_id="cus_ada", queue="general", priority=2,
        tier="premium", urgency="high", first_response_due=now + timedelta(hours=2, minutes=1), routed_at=NOW,
        message=message, customer_name="Ada Lovelace", decisions=tuple(reasons))


def handoff(delivery_id: str = "dlv_desk1", **items: Any) -> Handoff:
    if not items:
        items = {"routed": routed("My order never arrived.\nIt was due Monday.")}
    event = ("conversation.routed" if "routed" in items else
             "reply.receipt" if "receipt" in items else "conversation.event")
    return Handoff(delivery_id=delivery_id, destination="helpdesk-webhook", event=event, card=card(), **items)


async def test_a_routed_conversation_prints_who_why_and_how_to_answer(running: Running) -> None:
    text = "\n".join(["My order never arrived.", "It was due Monday.", *(f"line {n}" for n in range(3, 10))])
    status, answer = await running.post(running.helpdesk, handoff(routed=routed(text)))
    assert (status, answer) == (200, {"ok": True})
    block = running.out.getvalue()
    lines = block.splitlines()
    assert lines[0].startswith("── conversation.routed · con_desk1 · helpdesk-webhook · dlv_desk1 ")
    assert "  queue    general · P2 · premium · high urgency" in lines
    assert any(line.startswith("  due      first response by ") and line.endswith("UTC (in 2h 01m)")
               for line in lines)
    assert "  customer Ada Lovelace <email:ada@example.com> (cus_ada) on email" in lines
    assert "  subject  Order 1234 never arrived" in lines
    at = lines.index("  message  My order never arrived.")
    # six lines of nine, then how many more
    more = ["It was due Monday.", *(f"line {n}" for n in range(3, 7)), "(+3 more lines)"]
    assert lines[at + 1:at + 7] == [" " * 11 + line for line in more]
    # the routing stages' reasons first, bookkeeping last: nine reasons, eight shown
    at = lines.index("  why      tier=premium: from the customer directory")
    assert lines[at + 1:at + 4] == ["           urgency=high: keyword 'never arrived'",
                                    "           queue=general: rule 1", "           queue=general: rule 2"]
    assert lines[at + 8] == "           (+1 more)"
    assert "event ev_desk1 first seen" not in block
    assert f"  answer   {ANSWER}" in lines
    assert f"  resolve  {RESOLVE}" in lines
    read = ".venv/bin/switchboard mail read ada@example.com"
    assert f"  read     {read}  (the customer's mailbox on the local stack)" in lines
    assert block.endswith("\n\n")


async def test_a_transfer_prints_who_moved_it_and_the_conversations_own_subject(running: Running) -> None:
    note = TransferNote(from_queue="billing", at=NOW, by="maria", note="a login fault")
    moved = msgspec.structs.replace(routed("unused"), message=None, transfer=note)
    status, _ = await running.post(running.helpdesk, Handoff(
        delivery_id="dlv_move1", destination="helpdesk-webhook", event="conversation.transferred",
        card=card(subject="Cannot log in"), routed=moved))
    assert status == 200
    lines = running.out.getvalue().splitlines()
    assert lines[0].startswith("── conversation.transferred · con_desk1 · helpdesk-webhook · dlv_move1 ")
    assert "  customer Ada Lovelace <email:ada@example.com> (cus_ada) on email" in lines
    assert "  subject  Cannot log in" in lines
    assert "  transfer Transferred from billing by maria: a login fault" in lines
    assert not any(line.startswith("  message") for line in lines)
    assert f"  answer   {ANSWER}" in lines


async def test_a_bad_signature_is_401_and_prints_no_delivery(running: Running) -> None:
    cases: dict[str, dict[str, Any]] = {
        "another secret": {"secret": "not-the-secret"},
        "the pager's secret on the helpdesk path": {"secret": PAGER},
        "stale: a replay": {"signed_at": time.time() - 600},
    }
    for case, how in cases.items():
        status, answer = await running.post(running.helpdesk, handoff(f"dlv_bad_{len(case)}"), **how)
        assert status == 401, case
        assert answer["error"], case
    async with running.session.post(running.helpdesk, data=b"{}") as bare:
        assert bare.status == 401
    printed = running.out.getvalue()
    assert "conversation.routed" not in printed
    assert printed.count("!! helpdesk-webhook: refused a request") == 4


async def test_the_same_delivery_twice_is_printed_once(running: Running) -> None:
    first = await running.post(running.helpdesk, handoff("dlv_twice"))
    again = await running.post(running.helpdesk, handoff("dlv_twice"))
    other = await running.post(running.helpdesk, handoff("dlv_other"))
    assert first == (200, {"ok": True})
    assert again == (200, {"ok": True, "duplicate": True})
    assert other == (200, {"ok": True})
    printed = running.out.getvalue()
    assert printed.count("· dlv_twice ") == 1 and printed.count("· dlv_other ") == 1
    assert printed.count(ANSWER) == 2


async def test_a_receipt_shows_status_reason_and_guard_flags(running: Running) -> None:
    flag = GuardFlag(rule="telling-feelings", action="hold", matched=("calm down",),
                     reason="never tell a customer how to feel")
    receipt = DeliveryReceipt(reply_id="rep_1", conversation_id="con_desk1", channel="email", status="held",
                              at=NOW, reason="held by the reply guard", kind="agent_reply", flags=(flag,))
    assert (await running.post(running.helpdesk, handoff("dlv_receipt", receipt=receipt)))[0] == 200
    lines = running.out.getvalue().splitlines()
    assert lines[0].startswith("── reply.receipt · con_desk1 · helpdesk-webhook · dlv_receipt ")
    assert lines[1:4] == ["  status   held · agent_reply rep_1 on email",
                          "  reason   held by the reply guard",
                          "  flags    hold telling-feelings: “calm down” - never tell a customer how to feel"]


async def test_a_page_arrives_on_the_pager_path_with_its_own_secret(running: Running) -> None:
    page = handoff("dlv_page", text="Escalation step 4: page support-on-call (first response due 09:00)")
    assert (await running.post(running.pager, page, secret=PAGER))[0] == 200
    assert (await running.post(running.pager, handoff("dlv_page_2", text="x"), secret=SECRET))[0] == 401
    lines = running.out.getvalue().splitlines()
    assert lines[0].startswith("── conversation.event · con_desk1 · pager-webhook · dlv_page ")
    assert lines[1] == "  text     Escalation step 4: page support-on-call (first response due 09:00)"


async def test_the_router_webhook_tool_delivers_to_the_desk(running: Running) -> None:
    tool = WebhookTool(WebhookSettings(timeout_seconds=5), {
        "helpdesk-webhook": WebhookEndpoint(url=running.helpdesk, secret=SecretStr(SECRET))})
    await tool.start()
    try:
        assert await tool.deliver(handoff("dlv_tool")) == ""
        assert await tool.deliver(handoff("dlv_tool")) == ""  # a retry: answered, not printed again
    finally:
        await tool.stop()
    assert running.out.getvalue().count("· dlv_tool ") == 1


async def test_customer_text_cannot_drive_the_terminal(running: Running) -> None:
    hostile = handoff("dlv_hostile", routed=routed("clear \x1b[2J screen\x07 \u202egnirts 👩\u200d💻"))
    assert (await running.post(running.helpdesk, hostile))[0] == 200
    printed = running.out.getvalue()
    assert "\x1b" not in printed and "\x07" not in printed and "\u202e" not in printed
    assert "  message  clear ·[2J screen· ·gnirts 👩\u200d💻" in printed.splitlines()


async def test_a_port_in_use_is_a_clear_error(running: Running) -> None:
    port = int(running.helpdesk.split(":")[2].split("/")[0])
    second = Desk([DeskEndpoint("helpdesk-webhook", port, "/switchboard", SecretStr(SECRET))],
                  out=io.StringIO())
    with pytest.raises(SwitchboardError, match=rf"cannot listen on 127\.0\.0\.1:{port} for helpdesk-webhook"):
        await second.start()
    await second.stop()


def test_the_desk_needs_the_webhook_secret_and_the_pager_is_optional(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("SB_WEBHOOK_SECRET", raising=False)
    monkeypatch.delenv("SB_PAGER_SECRET", raising=False)
    assert main(["desk", "--port", "0"]) == 2
    assert "switchboard desk: SB_WEBHOOK_SECRET is not set" in capsys.readouterr().err
    monkeypatch.setenv("SB_WEBHOOK_SECRET", "")
    with pytest.raises(ConfigError, match="SB_WEBHOOK_SECRET is not set"):
        endpoints_for(load())
    monkeypatch.setenv("SB_WEBHOOK_SECRET", "from-the-environment")
    [only] = endpoints_for(load())
    assert (only.name, only.port, only.path, only.secret.get_secret_value()) == (
        "helpdesk-webhook", 18090, "/switchboard", "from-the-environment")
    assert "from-the-environment" not in repr(only)
    monkeypatch.setenv("SB_PAGER_SECRET", "pager-secret")
    assert [(e.name, e.port, e.path) for e in endpoints_for(load(), port=1, pager_port=2)] == [
        ("helpdesk-webhook", 1, "/switchboard"), ("pager-webhook", 2, "/page")]


async def test_a_call_back_task_prints_the_number_the_due_time_and_how_to_mark_it(running: Running) -> None:
    plain = routed("Please call me about my order.")
    task = CallbackTask(number="+4915123456789", due=plain.first_response_due)
    status, _ = await running.post(running.helpdesk, handoff(routed=msgspec.structs.replace(
        plain, reply_mode="callback", callback=task)))
    assert status == 200
    lines = running.out.getvalue().splitlines()
    assert any(line.startswith("  callback +4915123456789 · first response by ") for line in lines)
    [called] = [line for line in lines if line.startswith("  called   curl ")]
    assert called.endswith("-d '{\"author\": \"you\"}' http://127.0.0.1:18080/v1/conversations/con_desk1/callback")
