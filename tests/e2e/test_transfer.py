"""An agent's transfer reaches the new team at once, with the story so far (issue #16's finding).

A customer writes; the helpdesk gets the conversation; its agent transfers it to the
escalations queue through the API with a note. The escalations team's tool (another
signed webhook) is handed the conversation there and then — the card, the history and the
note — without waiting for the customer to write again; a retried transfer call is one
handoff; the customer's next message follows the conversation to its new team.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.policies import example_policy
from tests.processes import Switchboard
from tests.receivers.webhook import WebhookReceiver
from tests.waiting import until

pytestmark = pytest.mark.e2e
Launch = Callable[..., Switchboard]
HELPDESK, PAGER = "transfer-helpdesk-secret", "transfer-pager-secret"


def bodies(receiver: WebhookReceiver, event: str) -> list[dict[str, Any]]:
    return [d.body for d in receiver.deliveries if d.event == event]


async def test_a_transfer_is_handed_to_the_new_team_with_the_case_file(launch: Launch,
                                                                      tmp_path: Path) -> None:
    async with WebhookReceiver(HELPDESK.encode()) as helpdesk, WebhookReceiver(PAGER.encode()) as pager:
        policy = example_policy(tmp_path, {
            "url: http://127.0.0.1:18090/switchboard": f"url: {helpdesk.url}",
            "url: http://127.0.0.1:18091/page": f"url: {pager.url}",
            "destinations: [helpdesk-webhook, slack-support]": "destinations: [helpdesk-webhook]",
            # the example's escalations queue hands follow-ups back to general: this team keeps them
            "    destinations: [pager-webhook]\n    escalation: standard\n    sticky: false":
                "    destinations: [pager-webhook]\n    escalation: standard",
        })
        router = launch("run", SB_POLICY_FILE=str(policy), SB_WEBHOOK_SECRET=HELPDESK, SB_PAGER_SECRET=PAGER)
        status, taken = router.post("/v1/messages", json.dumps(
            {"sender": "ada@example.com", "text": "My parcel never arrived, two weeks now.",
             "subject": "Parcel 1234", "thread_id": "parcel-1234"}).encode())
        assert status == 202, taken
        [first] = await until(lambda: bodies(helpdesk, "conversation.routed"), "the helpdesk never got it")
        conversation = first["conversation"]["conversation_id"]

        why = "lost twice: a supervisor, please"
        move = json.dumps({"queue": "escalations", "author": "maria", "note": why})
        path = f"/v1/conversations/{conversation}/transfer"
        status, moved = router.post(path, move.encode(), headers={"Idempotency-Key": "move-1"})
        assert status == 202, moved
        # the agent's tool retried the call: the same transfer, not a second one
        status, again = router.post(path, move.encode(), headers={"Idempotency-Key": "move-1"})
        assert (status, again["event_id"]) == (202, moved["event_id"])

        # the new team is handed it now, with who moved it, why, and the story so far
        [handed] = await until(lambda: bodies(pager, "conversation.transferred"), "the new team never heard")
        assert handed["conversation"]["queue"] == "escalations"
        assert handed["conversation"]["subject"] == "Parcel 1234"
        assert handed["conversation"]["recipient"] == first["conversation"]["recipient"]
        routed = handed["routed"]
        assert routed["message"] is None
        note = routed["transfer"]
        assert (note["from_queue"], note["by"], note["note"]) == ("general", "maria", why)
        assert note["source"].startswith("api")  # the integration whose token made the call
        assert routed["transfers"] == 1
        summaries = [h["summary"] for h in routed["history"]]
        assert summaries[0].startswith("transferred from general to escalations")
        assert "My parcel never arrived, two weeks now." in summaries
        assert routed["first_response_due"] == first["routed"]["first_response_due"]

        # the customer writes again: it follows the conversation to its new team
        status, _ = router.post("/v1/messages", json.dumps(
            {"sender": "ada@example.com", "text": "Any news?", "thread_id": "parcel-1234"}).encode())
        assert status == 202
        [follow_up] = await until(lambda: bodies(pager, "conversation.routed"), "the follow-up went astray")
        assert follow_up["conversation"]["conversation_id"] == conversation
        assert follow_up["routed"]["message"]["text"] == "Any news?"
        # one handoff for the retried transfer, and the old team is not handed the follow-up
        assert len(bodies(pager, "conversation.transferred")) == 1
        assert len(bodies(helpdesk, "conversation.routed")) == 1
