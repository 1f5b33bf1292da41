"""Block Kit for agents: a routed conversation, a follow-up, a reply receipt, a notice.

Pure: a handoff in, a `SlackMessage` (blocks and the plain `text` Slack shows in
notifications and where blocks cannot be drawn) out. Everything that came from outside
(customer text, names, reasons) is escaped for mrkdwn (&, <, >), so no customer can
write `<!channel>` or a disguised link into a team's channel, and cut to Slack's limits
(section text 3000, header 150, 10 fields, 50 blocks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connectors.base import Handoff
from schemas.conversation import ConversationCard
from schemas.identity import Identity
from schemas.outbound import DeliveryReceipt, GuardFlag
from schemas.routed import HistoryEntry, RoutedConversation

__all__ = [
    "CALLBACK_HINT",
    "HISTORY_LINES",
    "MESSAGE_CHARS",
    "THREAD_HINT",
    "SlackMessage",
    "escape",
    "fit",
    "follow_up_message",
    "notice_message",
    "receipt_message",
    "render",
    "routed_message",
    "slack_date",
]

Block = dict[str, Any]

SECTION_CHARS = 3000
HEADER_CHARS = 150
FIELD_CHARS = 2000
MAX_FIELDS = 10
# the customer's words: most of a section, leaving room for the subject line
MESSAGE_CHARS = 2800
FALLBACK_CHARS = 300
HISTORY_LINES = 5
# the thread convention (connectors/slack/events.py), told where agents first see a conversation
THREAD_HINT = ("Reply in this thread to answer the customer; start with `note:` for an internal note, "
               "`transfer: <queue> <why>` to hand it to another team")
# a customer the policy has called back: the call is the answer, marked here once made
CALLBACK_HINT = ("Call the customer back, then write `called:` and what came of it in this thread; "
                 "`note:` for an internal note, `transfer: <queue> <why>` to hand it to another team, "
                 "anything else is sent to them")
_ELLIPSIS = "…"
_KINDS = {"agent_reply": "Reply", "acknowledgement": "Auto-acknowledgement",
          "status_update": "Status update", "follow_up": "Follow-up"}


@dataclass(frozen=True, slots=True)
class SlackMessage:
    """What chat.postMessage gets: the notification text and the blocks."""

    text: str
    blocks: tuple[Block, ...]


def escape(text: str) -> str:
    """Text made literal for Slack mrkdwn: the three characters Slack asks to escape."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fit(text: str, limit: int, note: str = "") -> str:
    """`text` escaped, cut so the escaped result (with `note` after a cut) fits `limit`."""
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped
    tail = _ELLIPSIS + note
    keep = max(0, limit - len(tail))
    cut = text[:keep]
    # escaping lengthens the text; shorten the raw cut until the escaped one fits
    while len(escape(cut)) > keep:
        cut = cut[:keep - (len(escape(cut)) - len(cut))]
    return escape(cut.rstrip()) + tail


def slack_date(when: datetime | None) -> str:
    """A time every reader sees in their own zone, with UTC text where Slack cannot draw it."""
    if when is None:
        return "none"
    utc = when.astimezone(UTC)
    fallback = utc.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(utc.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def render(handoff: Handoff) -> SlackMessage:
    """The message for one handoff: a new thread's first post, or a post in its thread."""
    if handoff.routed is not None:
        if handoff.thread:
            return follow_up_message(handoff.routed, handoff.card)
        return routed_message(handoff.routed, handoff.card)
    if handoff.receipt is not None:
        return receipt_message(handoff.receipt)
    return notice_message(handoff.text or handoff.event, handoff.card)


def routed_message(routed: RoutedConversation, card: ConversationCard) -> SlackMessage:
    """A conversation's first post: who, how urgent, where, the words, history, why, how to answer."""
    who = _who(routed, card)
    header = f"{who} · {routed.tier} · {routed.urgency} urgency · P{routed.priority}"
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(header, HEADER_CHARS),
                                    "emoji": False}},
        {"type": "section", "fields": [_mrkdwn(f"*{name}*\n{value}") for name, value in
                                       _facts(routed, card)][:MAX_FIELDS]},
        _section(_words(routed, card)),
    ]
    if routed.history:
        blocks.append(_section(_history(routed.history)))
    if routed.reasons:
        blocks.append(_context(_reasons(routed.reasons)))
    blocks.append(_context(CALLBACK_HINT if routed.callback is not None else THREAD_HINT))
    text = (f"{fit(who, 100)} ({fit(routed.tier, 40)}, {fit(routed.urgency, 40)}, P{routed.priority}) "
            f"on {fit(_channel(routed, card), 40)} in {fit(routed.queue, 100)}: "
            f"{fit(routed.said, FALLBACK_CHARS)}")
    return SlackMessage(text=text, blocks=tuple(blocks))


def follow_up_message(routed: RoutedConversation, card: ConversationCard) -> SlackMessage:
    """The customer wrote again (or the conversation was moved): in its thread, and why it ranks so."""
    who = fit(_who(routed, card), 100)
    what = "wrote again" if routed.transfer is None else f"moved to {fit(routed.queue, 100)}"
    lead = (f"*{who} {what}* · {fit(routed.urgency, 40)} urgency · P{routed.priority}"
            f" · first response due {slack_date(routed.first_response_due)}")
    blocks: list[Block] = [_section(lead), _section(_words(routed, card))]
    if routed.reasons:
        blocks.append(_context(_reasons(routed.reasons)))
    return SlackMessage(text=f"{who} {what}: {fit(routed.said, FALLBACK_CHARS)}", blocks=tuple(blocks))


def receipt_message(receipt: DeliveryReceipt) -> SlackMessage:
    """What became of a reply: sent (with any guard warnings), failed, held, or uncertain."""
    what = _KINDS.get(receipt.kind or "agent_reply", "Reply")
    reason = fit(receipt.reason or "no reason given", 1000)
    channel = fit(receipt.channel, 40)
    if receipt.status == "sent":
        lead = f":white_check_mark: {what} sent to the customer on {channel}."
    elif receipt.status == "held":
        lead = (f":no_entry: {what} *held by the reply guard*: not sent. "
                "Rewrite it and reply again in this thread.")
    elif receipt.status == "failed":
        lead = f":x: {what} *not sent*: {reason}"
    else:
        lead = (f":grey_question: {what} *may or may not have reached the customer*: {reason}. "
                "It will not be sent again by itself; check before answering again.")
    body = lead + "".join(f"\n{_flag(f)}" for f in receipt.flags)
    context = f"reply `{escape(receipt.reply_id)}` · conversation `{escape(receipt.conversation_id)}`"
    return SlackMessage(text=_cut(lead, SECTION_CHARS),
                        blocks=(_section(body), _context(context)))


def notice_message(text: str, card: ConversationCard) -> SlackMessage:
    """A notice about the conversation (an SLA warning, a status change), in its thread."""
    lead = f":information_source: {fit(text, SECTION_CHARS - 30)}"
    context = f"conversation `{escape(card.conversation_id)}` · status {escape(card.status)}"
    return SlackMessage(text=lead, blocks=(_section(lead), _context(context)))


def _who(routed: RoutedConversation, card: ConversationCard) -> str:
    return routed.customer_name or _sender(routed, card).value


def _sender(routed: RoutedConversation, card: ConversationCard) -> Identity:
    """Who wrote, or for a transfer (no message) who the conversation answers."""
    return routed.message.sender if routed.message is not None else card.recipient


def _channel(routed: RoutedConversation, card: ConversationCard) -> str:
    return routed.message.channel if routed.message is not None else card.channel


def _facts(routed: RoutedConversation, card: ConversationCard) -> list[tuple[str, str]]:
    facts = [
        ("From", fit(str(_sender(routed, card)), 200)),
        ("Channel", fit(_channel(routed, card), 200)),
        ("Queue", fit(routed.queue, 200)),
        ("First response due", slack_date(routed.first_response_due)),
        ("Conversation", f"`{escape(card.conversation_id)}`"),
    ]
    if routed.callback is not None:
        # the policy answers this customer by calling back: the task, first thing after who it is
        number = escape(routed.callback.number or "no number (withheld)")
        facts.insert(1, ("Call back", f"{number} by {slack_date(routed.callback.due)}"))
    if routed.sentiment is not None:
        facts.append(("Sentiment", f"{routed.sentiment:+.2f}"))
    if routed.agent:
        facts.append(("Agent", fit(routed.agent, 200)))
    if routed.transfers:
        facts.append(("Transfers", str(routed.transfers)))
    return facts


def _words(routed: RoutedConversation, card: ConversationCard) -> str:
    message = routed.message
    if message is None:  # a transfer: who moved it and their note lead, under the conversation's subject
        subject = f"*{fit(card.subject, 200)}*\n" if card.subject else ""
        return f"{subject}:arrow_right: {fit(routed.said, MESSAGE_CHARS)}"
    subject = f"*{fit(message.subject, 200)}*\n" if message.subject else ""
    text = message.text.strip()
    words = fit(text, MESSAGE_CHARS, f" _(cut: {len(text):,} characters in all)_") if text else "_(no text)_"
    files = ""
    if message.attachments:
        names = ", ".join(a.name or a.content_type for a in message.attachments)
        files = f"\n:paperclip: {len(message.attachments)} attached: {fit(names, 150)}"
    return subject + words + files


def _history(history: Sequence[HistoryEntry]) -> str:
    shown = history[-HISTORY_LINES:]
    lines = [f"*History* (last {len(shown)} of {len(history)})"]
    for h in shown:
        outcome = f" [{fit(h.outcome, 40)}]" if h.outcome else ""
        lines.append(f"• {h.at.astimezone(UTC):%Y-%m-%d %H:%M} {fit(h.channel, 20)} {h.direction}: "
                     f"{fit(h.summary, 300)}{outcome}")
    return "\n".join(lines)


def _reasons(reasons: Sequence[str]) -> str:
    return "Why: " + fit(" · ".join(reasons), SECTION_CHARS - 5)


def _flag(flag: GuardFlag) -> str:
    words = ", ".join(f"“{w}”" for w in flag.matched)
    mark = ":warning:" if flag.action == "warn" else ":no_entry:"
    return f"{mark} *{fit(flag.rule, 100)}* matched {fit(words, 300)}: {fit(flag.reason, 300)}"


def _cut(text: str, limit: int) -> str:
    """The last guard on size, for text already escaped: never ends inside an entity."""
    if len(text) <= limit:
        return text
    cut = text[:limit - 1]
    amp = cut.rfind("&", max(0, len(cut) - 4))
    if amp >= 0 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + _ELLIPSIS


def _mrkdwn(text: str) -> Block:
    return {"type": "mrkdwn", "text": _cut(text, FIELD_CHARS)}


def _section(text: str) -> Block:
    # every caller has escaped what came from outside already
    return {"type": "section", "text": {"type": "mrkdwn", "text": _cut(text, SECTION_CHARS)}}


def _context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _cut(text, SECTION_CHARS)}]}
