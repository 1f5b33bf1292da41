"""`make run` as a newcomer meets it: mail in, routed, answered from the desk's curl line, read back.

The router runs as `make run` configures it (the example policy, the email channel on the
stack's Dovecot and SMTP relay, no Slack) against a mail system of the test's own, and
the agents' desk is the real `switchboard desk` code, printing its curl lines.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import io
import json
import re
import shlex
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from pydantic import SecretStr

from devtools.desk import Desk, DeskEndpoint
from router.settings import Settings
from schemas import DeliveryReceipt, RoutedConversation, decode
from schemas.topics import DELIVERY, ROUTED
from tests.e2e.mail_stack import MailStack, mail_stack  # noqa: F401 - the fixture
from tests.kafka_tools import read_all
from tests.policies import example_policy
from tests.processes import Switchboard, free_port
from tests.waiting import POLL_SECONDS, until

pytestmark = pytest.mark.e2e
Launch = Callable[..., Switchboard]
SECRET = "newcomer-webhook-secret"
ANSWER = re.compile(r"answer\s+(curl .*/replies)")
T = TypeVar("T")


class AgentsDesk:
    """The agents' desk on a port chosen now, started once the router (its curl lines' target) runs."""

    def __init__(self) -> None:
        self.port, self.out = free_port(), io.StringIO()
        self.desk: Desk | None = None

    async def start(self, api_url: str) -> None:
        endpoint = DeskEndpoint("helpdesk-webhook", self.port, "/switchboard", SecretStr(SECRET))
        self.desk = Desk([endpoint], out=self.out, api_url=api_url)
        await self.desk.start()


@pytest.fixture
async def desk() -> AsyncIterator[AgentsDesk]:
    agents = AgentsDesk()
    yield agents
    if agents.desk is not None:
        await agents.desk.stop()


def make_run_env(mail: MailStack, tmp_path: Path, desk_port: int) -> dict[str, str]:
    """What `make run` exports, with this test's ports and topics."""
    policy = example_policy(tmp_path, {
        "url: http://127.0.0.1:18090/switchboard": f"url: http://127.0.0.1:{desk_port}/switchboard"})
    return {**mail.channel(), "SB_POLICY_FILE": str(policy), "SB_API_TOKENS": json.dumps(["demo-token"]),
            "SB_WEBHOOK_SECRET": SECRET, "SB_PAGER_SECRET": "newcomer-pager-secret",
            "SB_STATE_DIR": str(mail.settings.state_dir), "SB_PROBE_INTERVAL_SECONDS": "0"}


def answer_line(out: io.StringIO, customer: str) -> list[str]:
    """The desk's curl line answering `customer`'s conversation, split like a shell would."""
    blocks = out.getvalue().split("── conversation.routed")
    mine = [b for b in blocks if customer in b and ANSWER.search(b)]
    if not mine:
        return []
    match = ANSWER.search(mine[-1])
    assert match is not None
    return shlex.split(match.group(1))


def bodies(raw: list[bytes]) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(r, policy=email.policy.default) for r in raw]  # type: ignore[misc]


def text_of(mail: email.message.EmailMessage) -> str:
    body = mail.get_body(("plain",))
    assert body is not None
    return str(body.get_content())  # type: ignore[attr-defined]


@pytest.fixture
async def router(launch: Launch, mail_stack: MailStack, tmp_path: Path,  # noqa: F811
                 desk: AgentsDesk) -> Switchboard:
    """`switchboard run` as `make run` starts it, and the desk beside it."""
    started = launch("run", **make_run_env(mail_stack, tmp_path, desk.port))
    await desk.start(started.url)
    return started


async def test_mail_in_routed_answered_from_the_desk_read_in_the_customers_mailbox(
    deployment: Settings, router: Switchboard, mail_stack: MailStack, desk: AgentsDesk,  # noqa: F811
) -> None:
    out = desk.out
    ada = f"ada-{uuid.uuid4().hex[:8]}@example.com"

    # 1. a newcomer mails support through the stack's SMTP server
    mail_stack.mail(ada, "Order 1234", "My order never arrived")
    curl = await until(lambda: answer_line(out, ada), "the desk never showed the mail routed", timeout=90)

    # 2. the desk's curl line, pasted as printed (only the text filled in)
    curl[curl.index("-d") + 1] = json.dumps({"text": "Sorry Ada, a new parcel left today."})
    done = await asyncio.to_thread(subprocess.run, curl, capture_output=True, text=True, timeout=30,
                                   check=True)
    assert json.loads(done.stdout)["status"] == "queued", done.stdout

    # 3. the answer lands in Ada's own mailbox, in her thread; the acknowledgement came first
    def answered() -> list[email.message.EmailMessage]:
        found = bodies(mail_stack.inbox(ada))
        return found if any("new parcel" in text_of(m) for m in found) else []

    mails = await until(answered, "the answer never reached Ada's mailbox", timeout=60)
    reply = next(m for m in mails if "new parcel" in text_of(m))
    assert reply["Subject"] == "Re: Order 1234"
    assert reply["From"].addresses[0].addr_spec == "support@example.com"
    assert any(m["Auto-Submitted"] == "auto-replied" for m in mails), "no acknowledgement"
    [routed] = [decode(r.value, RoutedConversation) for r in
                await read_all(deployment, deployment.topic(ROUTED))]
    assert (routed.message.channel, routed.queue) == ("email", "general")
    assert_clean_log(router)


async def test_an_api_message_from_an_email_address_is_answered_by_email(
    deployment: Settings, router: Switchboard, mail_stack: MailStack, desk: AgentsDesk,  # noqa: F811
) -> None:
    out = desk.out
    bob = f"bob-{uuid.uuid4().hex[:8]}@example.com"
    status, accepted = router.post("/v1/messages", json.dumps({"sender": bob, "text": "Where is my parcel?"})
                                   .encode(), token="demo-token")
    assert status == 202, accepted

    # the agent answers once the desk shows it, the way the conversations API is used
    curl = await until(lambda: answer_line(out, bob), "the desk never showed the message routed", timeout=90)
    status, queued = router.post(curl[-1].removeprefix(router.url),
                                 json.dumps({"text": "Bob, it arrives tomorrow."}).encode(),
                                 token="demo-token")
    assert status == 202, queued

    # the acknowledgement came first, by email too (the API's own template), then the answer
    mails = await until(lambda: found if len(found := bodies(mail_stack.inbox(bob))) >= 2 else [],
                        "the acknowledgement and the answer never reached Bob's mailbox")
    ack, answer = sorted(mails, key=lambda m: m["Auto-Submitted"] != "auto-replied")
    assert text_of(ack).startswith("Hi there, thanks for getting in touch. We have your request")
    assert text_of(answer).splitlines()[0] == "Bob, it arrives tomorrow."
    receipts = await eventually(lambda: receipts_of(deployment, 2), "no receipts")
    assert sorted((r.kind, r.status, r.channel) for r in receipts) == [
        ("acknowledgement", "sent", "email"), ("agent_reply", "sent", "email")]
    assert queued["reply_id"] in {r.reply_id for r in receipts}
    assert_clean_log(router)


async def test_an_api_caller_without_an_address_gets_no_acknowledgement_and_no_failed_delivery(
    deployment: Settings, router: Switchboard, mail_stack: MailStack, desk: AgentsDesk,  # noqa: F811
) -> None:
    # known only by a phone number, on a channel that answers by email: out of reach
    caller = f"+4930{uuid.uuid4().int % 10**8:08d}"
    status, accepted = router.post("/v1/messages", json.dumps(
        {"sender": caller, "text": "Where is my parcel?"}).encode(), token="demo-token")
    assert status == 202, accepted
    # a second caller, reachable, is acknowledged after it: the first one's turn has passed
    carol = f"carol-{uuid.uuid4().hex[:8]}@example.com"
    status, _ = router.post("/v1/messages", json.dumps({"sender": carol, "text": "Where is my parcel?"})
                            .encode(), token="demo-token")
    assert status == 202
    await until(lambda: bodies(mail_stack.inbox(carol)), "Carol's acknowledgement never came")

    routed = {r.message.sender.value: r for r in
              await eventually(lambda: routed_of(deployment, 2), "not routed")}
    decision = next(d for d in routed[caller].decisions if d.stage == "acknowledge")
    assert decision.outcome == "unreachable"
    assert decision.reasons == ("no acknowledgement: api replies go by email, which reaches email "
                                "identities, not this customer's phone one",)
    receipts = await eventually(lambda: receipts_of(deployment, 1), "no receipts")
    assert [(r.conversation_id, r.status) for r in receipts] == [(routed[carol].conversation_id, "sent")]
    status, metrics = router.get("/metrics")
    assert status == 200
    assert ('sb_acknowledge_unreachable_total{channel="api",identity="phone",kind="acknowledgement"} 1.0'
            in metrics)
    assert_clean_log(router)


async def receipts_of(deployment: Settings, at_least: int) -> list[DeliveryReceipt]:
    """The delivery receipts so far, once there are `at_least` of them."""
    found = [decode(r.value, DeliveryReceipt) for r in await read_all(deployment, deployment.topic(DELIVERY))]
    return found if len(found) >= at_least else []


async def routed_of(deployment: Settings, at_least: int) -> list[RoutedConversation]:
    """The routed conversations so far, once there are `at_least` of them."""
    records = await read_all(deployment, deployment.topic(ROUTED))
    found = [decode(r.value, RoutedConversation) for r in records]
    return found if len(found) >= at_least else []


async def eventually(read: Callable[[], Awaitable[list[T]]], what: str, timeout: float = 60) -> list[T]:
    """Read until something is there, failing with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while not (found := await read()):
        assert time.monotonic() < deadline, what
        await asyncio.sleep(POLL_SECONDS)
    return found


def assert_clean_log(router: Switchboard) -> None:
    """No error and no traceback while traffic flowed; unserved destinations told once, at start."""
    lines = [json.loads(line) for line in router.log_path.read_text().splitlines() if line.startswith("{")]
    bad = [line for line in lines
           if line["level"] in ("error", "critical") or "Traceback" in json.dumps(line)]
    assert not bad, f"errors in the log: {bad[:3]}"
    notices = [line for line in lines if line["msg"].startswith("destinations not set up here")]
    assert len(notices) == 1, notices
    assert set(notices[0]["destinations"]) == {"slack-support", "slack-social"}
    per_message = [line for line in lines if line["level"] == "warning" and "delivery_id" in line]
    assert not per_message, f"per-message warnings: {per_message[:3]}"
