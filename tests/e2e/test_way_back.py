"""Issue #5 end to end: mail in → webhook → reply via the API → SMTP in the customer's thread
→ the customer answers (same conversation, same team) → resolve → follow-up after the delay
→ the customer confirms → closed. Real Dovecot, Kafka, Redis, SMTP and HTTP throughout.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from router.settings import Settings
from tests.e2e.test_email import email_env
from tests.integration.email.conftest import Mailbox, make_mail
from tests.policies import example_policy
from tests.processes import Switchboard
from tests.receivers.smtp import Inbox
from tests.receivers.webhook import WebhookReceiver
from tests.waiting import until

pytestmark = pytest.mark.e2e
Launch = Callable[..., Switchboard]
SECRET = "way-back-hook-secret"


def policy_file(tmp_path: Path, hook_url: str) -> Path:
    """The example policy, delivering general mail to our receiver, following up after 1s."""
    return example_policy(tmp_path, {
        "url: http://127.0.0.1:18090/switchboard": f"url: {hook_url}",
        "destinations: [helpdesk-webhook, slack-support]": "destinations: [helpdesk-webhook]",
        "delay: 24h": "delay: 1s",
        "    calendar: eu-support\n    destinations: [helpdesk-webhook]":
            "    calendar: 24x7\n    destinations: [helpdesk-webhook]",
    })




def bodies(receiver: WebhookReceiver, event: str) -> list[dict[str, Any]]:
    return [d.body for d in receiver.deliveries if d.event == event]


def plain(message: Any) -> str:
    return str(message.get_body(("plain",)).get_content())


async def test_mail_to_webhook_to_api_reply_to_thread_to_follow_up_and_close(
        stack: Settings, launch: Launch, mailbox: Mailbox,
        smtp: tuple[Inbox, int], tmp_path: Path) -> None:
    inbox, smtp_port = smtp
    async with WebhookReceiver(SECRET.encode()) as receiver:
        router = launch("run", **email_env(stack, mailbox, smtp_port),
                        SB_POLICY_FILE=str(policy_file(tmp_path, receiver.url)),
                        SB_WEBHOOK_SECRET=SECRET, SB_SLA_TICK_SECONDS="0.2")
        await mailbox.append(make_mail("My parcel never arrived", message_id="<first@example.org>",
                                       body="It has been two weeks."))

        # the team's tool gets the conversation, signed, with what it needs to act
        [routed] = await until(lambda: bodies(receiver, "conversation.routed"), "never delivered")
        conversation = routed["conversation"]["conversation_id"]
        assert routed["conversation"]["queue"] == "general"
        assert routed["routed"]["message"]["text"].strip() == "It has been two weeks."
        assert routed["routed"]["first_response_due"]

        # the agent answers through the API; it reaches the customer in their thread
        status, queued = router.post(f"/v1/conversations/{conversation}/replies", json.dumps(
            {"text": "Sorry! A new parcel left today.", "author": "maria"}).encode(),
            headers={"Idempotency-Key": "answer-1"})
        assert status == 202, queued
        sent = await until(lambda: [m for m in inbox.messages if "new parcel" in plain(m)],
                           "the reply never reached SMTP")
        assert sent[0]["In-Reply-To"] == "<first@example.org>"
        assert sent[0]["Subject"] == "Re: My parcel never arrived"
        receipts = await until(lambda: bodies(receiver, "reply.receipt"), "no receipt for the agent")
        assert receipts[0]["receipt"]["status"] == "sent"
        assert receipts[0]["receipt"]["reply_id"] == queued["reply_id"]

        # the customer answers the reply: same conversation, same team, same tool
        answer = make_mail("RE: your parcel", body="It still has not come.")
        answer = answer.replace(b"Subject:", b"In-Reply-To: " + sent[0]["Message-ID"].encode()
                                + b"\r\nSubject:", 1)
        await mailbox.append(answer)
        both = await until(lambda: (r := bodies(receiver, "conversation.routed"))[1:] and r,
                           "the answer never reached the team")
        assert both[1]["conversation"]["conversation_id"] == conversation
        assert both[1]["routed"]["queue"] == "general"
        assert [h["summary"] for h in both[1]["routed"]["history"]][-1:] != []

        # resolve; after the delay the customer is asked whether it is really solved
        status, _ = router.post(f"/v1/conversations/{conversation}/resolve",
                                json.dumps({"author": "maria"}).encode())
        assert status == 202
        follow_up = await until(lambda: [m for m in inbox.messages if "Is everything working" in plain(m)],
                                "no follow-up after resolve")
        assert follow_up[0]["Auto-Submitted"] == "auto-replied"

        # the customer confirms: the conversation closes, the outcome is in its history
        confirm = make_mail("RE: follow up", body="Yes, all good now.")
        confirm = confirm.replace(b"Subject:", b"In-Reply-To: " + follow_up[0]["Message-ID"].encode()
                                  + b"\r\nSubject:", 1)
        await mailbox.append(confirm)

        def closed() -> dict[str, Any] | None:
            code, view = router.get(f"/v1/conversations/{conversation}")
            return view if code == 200 and view["card"]["status"] == "closed" else None

        view = await until(closed, "the confirmed conversation never closed")
        outcomes = [line.get("outcome") for line in view["history"] if line.get("outcome")]
        assert outcomes, view["history"]
        # nothing reached the customer twice
        ids = [m["Message-ID"] for m in inbox.messages]
        assert len(ids) == len(set(ids))
