"""Block Kit for agents: every outside string escaped, every block within Slack's limits."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from msgspec.structs import replace
from pydantic import SecretStr, ValidationError

from connectors.base import Handoff
from connectors.slack.blocks import (
    CALLBACK_HINT,
    MESSAGE_CHARS,
    THREAD_HINT,
    SlackMessage,
    escape,
    fit,
    render,
    slack_date,
)
from connectors.slack.settings import SlackSettings
from schemas import Decision, HistoryEntry, Identity, InboundMessage, RoutedConversation
from schemas.conversation import ConversationCard
from schemas.inbound import Attachment
from schemas.outbound import DeliveryReceipt, GuardFlag
from schemas.routed import CallbackTask, TransferNote

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ADA = Identity(kind="email", value="ada@example.com")


def inbound(text: str = "My order <1234> & the refund?", **changes: Any) -> InboundMessage:
    fields: dict[str, Any] = {
        "event_id": "ev_1", "channel": "email", "native_id": "m-1@example.com", "thread_key": "m-1",
        "sender": ADA, "received_at": T0, "text": text, "subject": "Refund <urgent>",
    }
    return InboundMessage(**(fields | changes))


def routed(message: InboundMessage | None = None, **changes: Any) -> RoutedConversation:
    fields: dict[str, Any] = {
        "event_id": "ev_1", "conversation_id": "con_abc", "customer_id": "cus_ada", "queue": "billing",
        "priority": 2, "tier": "premium", "urgency": "high", "first_response_due": T0 + timedelta(hours=1),
        "routed_at": T0, "message": message or inbound(),
        "decisions": (Decision(stage="classify", outcome="high",
                               reasons=("urgency=high: keyword 'refund'", "sentiment -0.71 < -0.5")),
                      Decision(stage="route", outcome="billing", reasons=("queue=billing: rule <money>",))),
        "customer_name": "Ada & Co", "sentiment": -0.71,
    }
    return RoutedConversation(**(fields | changes))


def card(**changes: Any) -> ConversationCard:
    fields: dict[str, Any] = {
        "conversation_id": "con_abc", "customer_id": "cus_ada", "channel": "email", "recipient": ADA,
        "queue": "billing", "tier": "premium", "urgency": "high", "priority": 2, "status": "open",
        "opened_at": T0, "updated_at": T0,
    }
    return ConversationCard(**(fields | changes))


def handoff(event: str = "conversation.routed", thread: str = "", **items: Any) -> Handoff:
    return Handoff(delivery_id="dlv_1", destination="slack-support", event=event, card=card(),
                   thread=thread, **items)


def texts(message: SlackMessage) -> list[str]:
    """Every piece of text in the blocks, in order."""
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                out.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list | tuple):
            for value in node:
                walk(value)
    walk(list(message.blocks))
    return out


def within_limits(message: SlackMessage) -> None:
    assert len(message.blocks) <= 50
    for block in message.blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        if block["type"] == "section":
            assert len(block.get("text", {}).get("text", "")) <= 3000
            assert len(block.get("fields", [])) <= 10
            assert all(len(f["text"]) <= 2000 for f in block.get("fields", []))
    json.dumps(list(message.blocks))  # the SDK sends them as JSON


@pytest.mark.parametrize(("raw", "escaped"), [
    ("a & b", "a &amp; b"),
    ("<!channel> look", "&lt;!channel&gt; look"),
    ("<https://evil.example|your bank>", "&lt;https://evil.example|your bank&gt;"),
    ("&amp; stays literal", "&amp;amp; stays literal"),
    ("*bold* _it_ plain", "*bold* _it_ plain"),
])
def test_escape(raw: str, escaped: str) -> None:
    assert escape(raw) == escaped


def test_fit_cuts_the_raw_text_so_the_escaped_text_fits() -> None:
    cut = fit("&" * 100, 50, " (cut)")
    assert len(cut) <= 50 and cut.endswith("… (cut)")
    # never half an entity
    assert cut.removesuffix("… (cut)").replace("&amp;", "") == ""
    assert fit("short", 50, " (cut)") == "short"


def test_slack_date_has_a_fallback_and_none_is_plain() -> None:
    assert slack_date(T0) == ("<!date^1772366400^{date_short_pretty} {time}|2026-03-01 12:00 UTC>")
    assert slack_date(None) == "none"


def test_routed_conversation_blocks() -> None:
    message = render(handoff(routed=routed(history=tuple(
        HistoryEntry(at=T0 - timedelta(days=n), channel="email", conversation_id=f"con_{n}",
                     direction="in", summary=f"asked <{n}>", outcome="solved" if n == 1 else None)
        for n in range(8, 0, -1)))))
    within_limits(message)
    kinds = [b["type"] for b in message.blocks]
    assert kinds == ["header", "section", "section", "section", "context", "context"]
    header = message.blocks[0]["text"]
    assert header == {"type": "plain_text", "text": "Ada & Co · premium · high urgency · P2", "emoji": False}
    fields = [f["text"] for f in message.blocks[1]["fields"]]
    assert "*Channel*\nemail" in fields and "*Queue*\nbilling" in fields
    assert "*Conversation*\n`con_abc`" in fields and "*Sentiment*\n-0.71" in fields
    assert ("*First response due*\n<!date^1772370000^{date_short_pretty} {time}|2026-03-01 13:00 UTC>"
            in fields)
    words = message.blocks[2]["text"]["text"]
    assert words == "*Refund &lt;urgent&gt;*\nMy order &lt;1234&gt; &amp; the refund?"
    history = message.blocks[3]["text"]["text"].splitlines()
    assert history[0] == "*History* (last 5 of 8)"
    assert history[1] == "• 2026-02-24 12:00 email in: asked &lt;5&gt;"
    assert history[-1] == "• 2026-02-28 12:00 email in: asked &lt;1&gt; [solved]"
    why = message.blocks[4]["elements"][0]["text"]
    assert why == ("Why: urgency=high: keyword 'refund' · sentiment -0.71 &lt; -0.5 · "
                   "queue=billing: rule &lt;money&gt;")
    hint = message.blocks[5]["elements"][0]["text"]
    assert hint == THREAD_HINT
    assert hint == ("Reply in this thread to answer the customer; start with `note:` for an internal note, "
                    "`transfer: <queue> <why>` to hand it to another team")
    assert message.text.startswith(
        "Ada &amp; Co (premium, high, P2) on email in billing: My order &lt;1234&gt;")


def test_no_raw_markup_from_outside_survives_anywhere() -> None:
    hostile = "<!channel> <@U123> <https://evil.example|bank> & more"
    message = render(handoff(routed=routed(inbound(hostile, subject="<!here>"), customer_name="<!everyone>",
                                           queue="q<1>", first_response_due=None)))
    for text in [*texts(message)[1:], message.text]:  # [0] is the plain_text header
        assert "<!" not in text and "<@" not in text and "<http" not in text, text


def test_a_long_message_is_cut_and_says_so() -> None:
    message = render(handoff(routed=routed(inbound("x" * 10_000 + " <end>"))))
    within_limits(message)
    words = message.blocks[2]["text"]["text"]
    assert words.endswith("… _(cut: 10,006 characters in all)_")
    assert len(words) <= MESSAGE_CHARS + 200
    assert len(message.text) < 600


def test_no_text_attachments_and_optional_facts() -> None:
    message = render(handoff(routed=routed(
        inbound("   ", subject=None, attachments=(Attachment(name="photo <1>.jpg", content_type="image/jpeg",
                                                             size=10),
                                                  Attachment(name=None, content_type="application/pdf",
                                                             size=20))),
        customer_name=None, sentiment=None, agent="maria", transfers=2, first_response_due=None,
        decisions=())))
    within_limits(message)
    assert message.blocks[0]["text"]["text"] == "ada@example.com · premium · high urgency · P2"
    # no reasons: the hint is the only context
    assert [b["type"] for b in message.blocks] == ["header", "section", "section", "context"]
    assert message.blocks[3]["elements"][0]["text"] == THREAD_HINT
    fields = [f["text"] for f in message.blocks[1]["fields"]]
    assert {"*Agent*\nmaria", "*Transfers*\n2", "*First response due*\nnone"} <= set(fields)
    assert not any(f.startswith("*Sentiment*") for f in fields)
    assert message.blocks[2]["text"]["text"] == (
        "_(no text)_\n:paperclip: 2 attached: photo &lt;1&gt;.jpg, application/pdf")


def test_a_call_back_task_is_the_second_fact() -> None:
    phone = inbound("Call me <now>", channel="phone", sender=Identity(kind="phone", value="+4915123456789"))
    task = CallbackTask(number="+4915123456789", due=T0 + timedelta(hours=2))
    message = render(handoff(routed=routed(phone, reply_mode="callback", callback=task)))
    within_limits(message)
    assert message.blocks[-1]["elements"][0]["text"] == CALLBACK_HINT
    assert CALLBACK_HINT.startswith("Call the customer back, then write `called:`")
    fields = [f["text"] for f in message.blocks[1]["fields"]]
    assert fields[1] == ("*Call back*\n+4915123456789 by "
                         "<!date^1772373600^{date_short_pretty} {time}|2026-03-01 14:00 UTC>")
    withheld = render(handoff(routed=routed(phone, reply_mode="callback",
                                            callback=CallbackTask(number=None, due=None))))
    assert withheld.blocks[1]["fields"][1]["text"] == "*Call back*\nno number (withheld) by none"
    assert not any("Call back" in t for t in texts(render(handoff(routed=routed()))))


def test_a_follow_up_in_the_thread_is_compact() -> None:
    message = render(handoff(thread="1700000000.000100", routed=routed(inbound("Any news? <3"))))
    within_limits(message)
    assert [b["type"] for b in message.blocks] == ["section", "section", "context"]
    assert THREAD_HINT not in texts(message)  # told once, on the thread's first post
    assert message.blocks[0]["text"]["text"].startswith("*Ada &amp; Co wrote again* · high urgency · P2")
    assert message.blocks[1]["text"]["text"] == "*Refund &lt;urgent&gt;*\nAny news? &lt;3"
    assert message.text == "Ada &amp; Co wrote again: Any news? &lt;3"


def transferred() -> RoutedConversation:
    """A transfer's handoff: no message, a note from the agent who moved it."""
    note = TransferNote(from_queue="general", at=T0, by="maria <m>", note="refund, not <delivery>")
    return replace(routed(), message=None, transfer=note, customer_name=None, sentiment=None)


def test_a_transfer_is_a_new_thread_for_the_new_team_led_by_the_note() -> None:
    message = render(Handoff(delivery_id="dlv_2", destination="slack-billing",
                             event="conversation.transferred", card=card(subject="Refund <urgent>"),
                             routed=transferred()))
    within_limits(message)
    assert [b["type"] for b in message.blocks][:3] == ["header", "section", "section"]
    # who and where come from the conversation's card: the customer, not the agent who moved it
    assert message.blocks[0]["text"]["text"] == "ada@example.com · premium · high urgency · P2"
    fields = [f["text"] for f in message.blocks[1]["fields"]]
    assert "*From*\nemail:ada@example.com" in fields and "*Channel*\nemail" in fields
    assert message.blocks[2]["text"]["text"] == (
        "*Refund &lt;urgent&gt;*\n:arrow_right: Transferred from general by maria &lt;m&gt;: "
        "refund, not &lt;delivery&gt;")
    assert THREAD_HINT in texts(message)
    assert message.text == ("ada@example.com (premium, high, P2) on email in billing: "
                            "Transferred from general by maria &lt;m&gt;: refund, not &lt;delivery&gt;")


def test_a_transfer_into_a_thread_the_team_already_has_says_it_moved() -> None:
    message = render(Handoff(delivery_id="dlv_2", destination="slack-billing",
                             event="conversation.transferred", card=card(), thread="1700000000.000100",
                             routed=transferred()))
    assert message.blocks[0]["text"]["text"].startswith("*ada@example.com moved to billing* · high urgency")
    assert message.text.startswith("ada@example.com moved to billing: Transferred from general by maria")


def receipt(status: str, **changes: Any) -> DeliveryReceipt:
    fields: dict[str, Any] = {"reply_id": "rep_1", "conversation_id": "con_abc", "channel": "email",
                              "status": status, "at": T0, "kind": "agent_reply"}
    return DeliveryReceipt(**(fields | changes))


CALM = GuardFlag(rule="telling-feelings", action="hold", matched=("calm down", "relax"),
                 reason="never tell a customer how to feel")
POLICY = GuardFlag(rule="policy-quoting", action="warn", matched=("company policy",),
                   reason="explain the reason, <not> the rule")


@pytest.mark.parametrize(("made", "lead", "more"), [
    (receipt("sent"), ":white_check_mark: Reply sent to the customer on email.", []),
    (receipt("sent", flags=(POLICY,)), ":white_check_mark: Reply sent",
     [":warning: *policy-quoting* matched “company policy”: explain the reason, &lt;not&gt; the rule"]),
    (receipt("failed", reason="550 no such user <ada@example.com>"),
     ":x: Reply *not sent*: 550 no such user &lt;ada@example.com&gt;", []),
    (receipt("held", flags=(CALM,)), ":no_entry: Reply *held by the reply guard*: not sent.",
     [":no_entry: *telling-feelings* matched “calm down”, “relax”: never tell a customer how to feel"]),
    (receipt("uncertain", reason="a send was interrupted", kind="acknowledgement"),
     ":grey_question: Auto-acknowledgement *may or may not have reached the customer*: "
     "a send was interrupted.", []),
])
def test_receipts(made: DeliveryReceipt, lead: str, more: list[str]) -> None:
    message = render(handoff("reply.receipt", thread="1700000000.000100", receipt=made))
    within_limits(message)
    body = message.blocks[0]["text"]["text"].splitlines()
    assert body[0].startswith(lead)
    assert body[1:] == more
    assert message.blocks[1]["elements"][0]["text"] == "reply `rep_1` · conversation `con_abc`"
    assert message.text.startswith(lead)


def test_a_notice() -> None:
    message = render(handoff("conversation.event", thread="1700000000.000100",
                             text="SLA warning: first response due in 10 min <soon>"))
    assert message.blocks[0]["text"]["text"] == (
        ":information_source: SLA warning: first response due in 10 min &lt;soon&gt;")
    assert message.blocks[1]["elements"][0]["text"] == "conversation `con_abc` · status open"
    assert render(handoff("conversation.event")).text == ":information_source: conversation.event"
    closed = Handoff(delivery_id="d", destination="s", event="conversation.event",
                     card=replace(card(), status="closed"), text="closed")
    assert render(closed).blocks[1]["elements"][0]["text"].endswith("status closed")


def test_settings_mask_secrets_and_refuse_empty_ones() -> None:
    settings = SlackSettings(bot_token=SecretStr("xoxb-real-secret"), signing_secret=SecretStr("s3cret"),
                             base_url="http://127.0.0.1:1/api")
    assert "xoxb-real-secret" not in repr(settings) and "s3cret" not in str(settings.model_dump())
    assert settings.base_url == "http://127.0.0.1:1/api/"
    assert settings.timeout_seconds == 10.0
    with pytest.raises(ValidationError, match="must not be empty"):
        SlackSettings(bot_token=SecretStr(" "), signing_secret=SecretStr("s"))
    with pytest.raises(ValidationError, match="http"):
        SlackSettings(bot_token=SecretStr("x"), signing_secret=SecretStr("s"), base_url="ftp://x")
    with pytest.raises(ValidationError) as e:
        SlackSettings(bot_token=SecretStr("xoxb-leak"), signing_secret=SecretStr("s"), timeout_seconds=0)
    assert "xoxb-leak" not in str(e.value)
