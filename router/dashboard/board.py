"""The dashboard's state, folded from topic events: pure, no I/O, no clock of its own.

The feed (feed.py) applies every event of `sb.routed.v1`, `sb.conversation.v1`,
`sb.sla.v1`, `sb.delivery.v1`, `sb.handoff.v1` and `sb.deadletter.v1` from a look-back
window, in any order across topics; each event is applied once (its id is remembered),
so a replayed record counts once. What is "today" is decided when a snapshot is read
(view.py), in the policy's timezone, from the clock the caller gives.

A response is *owed* from a customer message that has no reply after it; an agent's
reply, waiting on the customer, resolve and close end it. A response target is *met*
when the reply comes before the SLA watcher announced a breach of it, *missed* at the
breach, so every target counts once, the day it was decided.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from schemas.conversation import ConversationEvent
from schemas.deadletter import DeadLetter
from schemas.handoff import HandoffReceipt
from schemas.ids import automatic_reply_id
from schemas.inbound import InboundMessage
from schemas.outbound import DeliveryReceipt
from schemas.probe import ProbeEvent
from schemas.routed import RoutedConversation
from schemas.sla import SlaEvent

__all__ = ["UNKNOWN", "Board", "Conversation", "DeadLetterLine", "Segment", "Timing"]

UNKNOWN = "unknown"
Segment = tuple[str, str]  # (tier, channel)
LATEST_DEAD_LETTERS = 20
_REASON_CHARS = 300


@dataclass(slots=True)
class Conversation:
    """What the board knows of one conversation."""

    tier: str
    channel: str
    queue: str
    opened_at: datetime
    owed_since: datetime | None = None
    replied: bool = False
    breached: bool = False
    touched: datetime | None = None
    # our account the customer wrote to (a mailbox, an X account), as `channel:account`
    account: str | None = None

    @property
    def segment(self) -> Segment:
        """The tier and channel it is counted under."""
        return self.tier, self.channel


@dataclass(frozen=True, slots=True)
class Timing:
    """A measured duration, when it ended (and that local day) and what it is counted under."""

    at: datetime
    day: date
    seconds: float
    key: str
    # who, under the key: the agent of an account's first reply
    by: str = ""


@dataclass(frozen=True, slots=True)
class DeadLetterLine:
    """One dead letter as the dashboard shows it: no original bytes."""

    at: datetime
    stage: str
    channel: str | None
    reason: str


@dataclass(slots=True)
class Board:
    """Every count the dashboard shows, by local day; `zone` decides the day of an event."""

    zone: ZoneInfo
    conversations: dict[str, Conversation] = field(default_factory=dict)
    # (day, tier, channel) → count, for each kind of count
    counts: dict[str, Counter[tuple[date, str, str]]] = field(default_factory=dict)
    ack_latency: list[tuple[Segment, Timing]] = field(default_factory=list)
    first_replies: list[Timing] = field(default_factory=list)
    # the same first replies by the account they were written to
    account_replies: list[Timing] = field(default_factory=list)
    # (queue, when) of every agent reply, for the queues' drain rate
    answers: list[tuple[str, datetime]] = field(default_factory=list)
    # minute (unix seconds // 60) → channel → messages routed
    minutes: dict[int, Counter[str]] = field(default_factory=dict)
    last_message: dict[str, datetime] = field(default_factory=dict)
    channel_errors: Counter[tuple[date, str]] = field(default_factory=Counter)
    tools: dict[str, Counter[tuple[date, str]]] = field(default_factory=dict)
    dead_letters: Counter[tuple[date, str]] = field(default_factory=Counter)
    latest_dead: deque[DeadLetterLine] = field(default_factory=lambda: deque(maxlen=LATEST_DEAD_LETTERS))
    # channel → its latest probe verdict, and the time of its latest passed probe
    probes: dict[str, ProbeEvent] = field(default_factory=dict)
    probe_seconds: dict[str, float] = field(default_factory=dict)
    _acks: dict[str, tuple[Segment, datetime]] = field(default_factory=dict)
    # every applied event's key and when it happened, so a replay counts once
    _seen: dict[str, datetime] = field(default_factory=dict)

    def day(self, at: datetime) -> date:
        """The local day of a moment in the board's timezone."""
        return at.astimezone(self.zone).date()

    def count(self, kind: str, at: datetime, segment: Segment, n: int = 1) -> None:
        """Add to a count of `kind` on the day of `at`."""
        self.counts.setdefault(kind, Counter())[(self.day(at), *segment)] += n

    def _once(self, key: str, at: datetime) -> bool:
        if key in self._seen:
            return False
        self._seen[key] = at
        return True

    def routed(self, r: RoutedConversation) -> None:
        """A customer's message, routed: it opens or continues a conversation and owes a response."""
        message = r.message
        # a transfer's handoff is no message: its `transferred` event moves the conversation
        if message is None or not self._once("r:" + r.event_id, r.routed_at):
            return
        received = message.received_at
        conv = self.conversations.get(r.conversation_id)
        if conv is None:
            conv = Conversation(r.tier, message.channel, r.queue, received, account=_account(message))
            self.conversations[r.conversation_id] = conv
        conv.tier, conv.queue, conv.touched = r.tier, r.queue, received
        if conv.owed_since is None:
            conv.owed_since = received
        self.count("routed", received, conv.segment)
        minute = int(received.timestamp()) // 60
        self.minutes.setdefault(minute, Counter())[message.channel] += 1
        last = self.last_message.get(message.channel)
        if last is None or received > last:
            self.last_message[message.channel] = received
        self._acks[automatic_reply_id("acknowledgement", r.event_id)] = (conv.segment, received)

    def lifecycle(self, e: ConversationEvent) -> None:
        """A conversation event: replies end what is owed and decide the target; others pause or stop."""
        conv = self.conversations.get(e.conversation_id)
        if conv is None or not self._once("c:" + e.event_id, e.at):
            return
        conv.touched = e.at
        if e.kind in ("agent_reply", "called_back"):  # a call that reached them answers as a reply does
            self._reply(conv, e)
        elif e.kind in ("waiting_on_customer", "resolved", "closed"):
            conv.owed_since = None
            conv.breached = False
        elif e.kind == "transferred" and e.queue:
            conv.queue = e.queue

    def _reply(self, conv: Conversation, e: ConversationEvent) -> None:
        if conv.owed_since is not None and not conv.breached:
            self.count("met", e.at, conv.segment)
        self.count("replied", e.at, conv.segment)
        if not conv.replied:
            took = max(0.0, (e.at - conv.opened_at).total_seconds())
            self.first_replies.append(Timing(e.at, self.day(e.at), took, e.author or UNKNOWN))
            if conv.account is not None:
                self.account_replies.append(Timing(e.at, self.day(e.at), took, conv.account,
                                                   e.author or UNKNOWN))
        self.answers.append((conv.queue, e.at))
        conv.owed_since, conv.replied, conv.breached = None, True, False

    def sla(self, s: SlaEvent) -> None:
        """A warning or breach from the SLA watcher, counted under its conversation's segment."""
        if s.kind not in ("warn", "breach") or not self._once("s:" + s.event_id, s.at):
            return
        conv = self.conversations.get(s.conversation_id)
        segment = conv.segment if conv is not None else (UNKNOWN, UNKNOWN)
        self.count("warnings" if s.kind == "warn" else "breaches", s.at, segment)
        if s.kind == "breach":
            # a breach decides the target: missed, whatever the reply does later
            self.count("missed", s.at, segment)
            if conv is not None:
                conv.breached = True

    def delivery(self, d: DeliveryReceipt) -> None:
        """A send's outcome: acknowledgement latency when it is one, failures per channel."""
        if not self._once(f"d:{d.reply_id}:{d.status}", d.at):
            return
        if d.status in ("failed", "uncertain"):
            self.channel_errors[(self.day(d.at), d.channel)] += 1
        if d.status == "held":
            self.count("held", d.at, self._segment_of(d.conversation_id, d.channel))
        ack = self._acks.pop(d.reply_id, None) if d.status == "sent" else None
        if ack is not None:
            segment, received = ack
            took = max(0.0, (d.at - received).total_seconds())
            self.ack_latency.append((segment, Timing(d.at, self.day(d.at), took, d.channel)))

    def handoff(self, h: HandoffReceipt) -> None:
        """A delivery to an agents' tool: delivered or failed, by destination."""
        if self._once(f"h:{h.delivery_id}:{h.destination}:{h.status}", h.at):
            self.tools.setdefault(h.destination, Counter())[(self.day(h.at), h.status)] += 1

    def dead_letter(self, d: DeadLetter) -> None:
        """A refused input: counted by stage, its reason kept among the latest."""
        # one record can be set aside for several reasons (a handoff per destination)
        where = f"{d.source_topic}/{d.source_partition}/{d.source_offset}/{d.stage}/{d.reason[:200]}"
        if d.source_topic is not None and not self._once("x:" + where, d.at):
            return
        self.dead_letters[(self.day(d.at), d.stage)] += 1
        if d.channel:
            self.channel_errors[(self.day(d.at), d.channel)] += 1
        self.latest_dead.append(DeadLetterLine(d.at, d.stage, d.channel, d.reason[:_REASON_CHARS]))

    def probe(self, e: ProbeEvent) -> None:
        """A probe's verdict (whichever edge probed): the channel's probe state until the next one."""
        if e.kind == "routed":  # the prober's verdict follows; that is what counts
            return
        latest = self.probes.get(e.channel)
        if latest is not None and latest.at > e.at:
            return
        self.probes[e.channel] = e
        if e.kind in ("passed", "slow") and e.seconds is not None:
            self.probe_seconds[e.channel] = e.seconds

    def _segment_of(self, conversation_id: str, channel: str) -> Segment:
        conv = self.conversations.get(conversation_id)
        return conv.segment if conv is not None else (UNKNOWN, channel)

    def forget(self, now: datetime, keep: timedelta = timedelta(days=2)) -> None:
        """Drop what no view needs: counts and timings older than `keep`, quiet conversations.

        Minutes and answers are kept an hour (they feed the last hour only); a conversation
        still owed a response stays, however old.
        """
        horizon, first_day = now - keep, self.day(now - keep)
        minute = int((now - timedelta(hours=1)).timestamp()) // 60
        for old in [m for m in self.minutes if m < minute]:
            del self.minutes[old]
        self.answers = [(q, t) for q, t in self.answers if t >= now - timedelta(hours=1)]
        for counter in self.counts.values():
            for old_key in [k for k in counter if k[0] < first_day]:
                del counter[old_key]
        for daily in (self.channel_errors, self.dead_letters, *self.tools.values()):
            for old_day in [k for k in daily if k[0] < first_day]:
                del daily[old_day]
        self.ack_latency = [(s, t) for s, t in self.ack_latency if t.at >= horizon]
        self.first_replies = [t for t in self.first_replies if t.at >= horizon]
        self.account_replies = [t for t in self.account_replies if t.at >= horizon]
        self._seen = {k: at for k, at in self._seen.items() if at >= horizon}
        # acknowledgements never sent (no template, a continued conversation) are not awaited forever
        self._acks = {k: v for k, v in self._acks.items() if v[1] >= horizon}
        self.conversations = {c: v for c, v in self.conversations.items()
                              if v.owed_since is not None or (v.touched or v.opened_at) >= horizon}
        # a channel nobody probed for that long has no probe state to show
        self.probes = {c: e for c, e in self.probes.items() if e.at >= horizon}


def _account(message: InboundMessage) -> str | None:
    """`channel:account` when the channel names our account it arrived on (mailbox, X account)."""
    # read by name: every channel's extras that know an account call it `account`
    account = getattr(message.extras, "account", "")
    return f"{message.channel}:{account}" if isinstance(account, str) and account else None
