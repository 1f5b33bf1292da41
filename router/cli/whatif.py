"""`switchboard whatif`: recorded inbound messages judged under the policy in force and a new one.

Reads `sb.inbound.v1` from the offsets at now-since to the ends found at start, with a
consumer in no group (nothing committed), looks customers' tiers up with plain Redis
reads, and runs the pure `route.decide` twice per message. Nothing is produced and no
Redis key is written. Each message is judged as if it were new: no thread, sticky or
history state, no queue backlog, so only the policy differs between the two columns.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, UnknownTopicOrPartitionError
from aiokafka.structs import TopicPartition
from redis.exceptions import RedisClusterException, RedisError

from processors.brain import route, thread
from processors.intake import identify
from processors.intake.agent_mail import answered_conversation
from processors.intake.stage import identified_message
from processors.policy.model import Policy, format_duration, parse_duration
from processors.stores.bulk import read_many
from processors.stores.directory import Directory
from processors.stores.history import HistoryStore
from processors.stores.identities import IdentityStore
from processors.stores.tags import Tags
from router.kafka import client_options
from router.settings import Settings
from schemas.codec import decode
from schemas.errors import ParseError, SwitchboardError, TransientError
from schemas.identified import CustomerProfile
from schemas.inbound import InboundMessage
from schemas.probe import find_mark
from schemas.routed import RoutedConversation
from schemas.topics import INBOUND, TopicSpec

__all__ = [
    "AS_IF_NEW",
    "Compared",
    "Customers",
    "Judgement",
    "Report",
    "Spread",
    "Window",
    "as_json",
    "changed_reasons",
    "compare",
    "parse_since",
    "read_customers",
    "read_window",
    "render",
    "routable",
    "summarise",
    "whatif",
]

AS_IF_NEW = ("each message judged as if new: no thread, sticky or history state, "
             "no queue backlog; tiers from the customer directory")
_DEDUPE_NOTE = "not checked: whatif judges recorded messages once each"
_JUDGED_STAGES = ("classify", "route")


@dataclass(frozen=True, slots=True)
class Judgement:
    """What one policy made of one message: queue, priority, tier, urgency, due, and why."""

    queue: str
    priority: int
    tier: str
    urgency: str
    due_after: timedelta | None
    reasons: tuple[str, ...]

    @classmethod
    def of(cls, routed: RoutedConversation) -> Judgement:
        """The parts of a routed conversation that a policy decides."""
        due = routed.first_response_due
        reasons = tuple(r for d in routed.decisions if d.stage in _JUDGED_STAGES for r in d.reasons)
        return cls(routed.queue, routed.priority, routed.tier, routed.urgency,
                   None if due is None or routed.message is None else due - routed.message.received_at,
                   reasons)


@dataclass(frozen=True, slots=True)
class Customers:
    """What the directory knows: each sender's identity binding, each customer's profile."""

    lookups: Mapping[str, identify.Lookup]
    profiles: Mapping[str, CustomerProfile]


@dataclass(frozen=True, slots=True)
class Compared:
    """One message under the old and the new policy."""

    event_id: str
    channel: str
    received_at: datetime
    old: Judgement
    new: Judgement


@dataclass(frozen=True, slots=True)
class Spread:
    """Percentiles of first-response times (due minus received) in one queue."""

    count: int
    p50: timedelta
    p90: timedelta
    max: timedelta


@dataclass(frozen=True, slots=True)
class Window:
    """What was replayed: the topic, the time span, and the records left out and why."""

    topic: str
    since: datetime
    until: datetime
    records: int
    skipped: Mapping[str, int]
    old_policy: str
    new_policy: str


@dataclass(frozen=True, slots=True)
class Report:
    """Old against new: counts per queue, priority and tier/urgency, due spreads, changes."""

    window: Window
    messages: int
    queues: Mapping[str, tuple[int, int]]
    priorities: Mapping[int, tuple[int, int]]
    tier_urgency: Mapping[str, tuple[int, int]]
    due: Mapping[str, tuple[Spread | None, Spread | None]]
    changed: int
    examples: tuple[Compared, ...]


def parse_since(text: str) -> timedelta:
    """Read `--since`: a policy duration (`30m`, `24h`) or whole days (`7d`)."""
    raw = text.strip()
    if raw.endswith("d") and raw[:-1].isdigit() and int(raw[:-1]) > 0:
        return timedelta(days=int(raw[:-1]))
    try:
        return parse_duration(raw)
    except ValueError as e:
        raise SwitchboardError(f"--since {text!r}: {e} (or days, like 7d)") from e


def compare(messages: Sequence[InboundMessage], customers: Customers, *, old: Policy, new: Policy,
            rules: thread.ThreadRules, now: datetime) -> list[Compared]:
    """Judge every message under both policies with the pure `route.decide`."""
    out = []
    for message in messages:
        customer, identified = identify.decide(identify.Sighting.of(message),
                                               customers.lookups.get(str(message.sender)))
        profile = customers.profiles.get(customer) or CustomerProfile(customer_id=customer)
        facts = route.Facts(profile=profile)
        item = identified_message(message, customer, _DEDUPE_NOTE, identified, at=now)
        verdicts = [Judgement.of(route.decide(item, facts, p, rules, now).routed) for p in (old, new)]
        out.append(Compared(message.event_id, message.channel, message.received_at, *verdicts))
    return out


def _spread(values: Sequence[timedelta]) -> Spread | None:
    if not values:
        return None
    ranked = sorted(values)

    def nearest_rank(percent: int) -> timedelta:
        # the ceil(percent/100 * n)-th smallest, in integers so 90% of 10 is exactly the 9th
        return ranked[max(0, (percent * len(ranked) + 99) // 100 - 1)]

    return Spread(len(ranked), nearest_rank(50), nearest_rank(90), ranked[-1])


def _pairs(old: Counter[Any], new: Counter[Any]) -> dict[Any, tuple[int, int]]:
    return {k: (old[k], new[k]) for k in sorted(old.keys() | new.keys())}


def summarise(compared: Sequence[Compared], window: Window, examples: int = 5) -> Report:
    """Aggregate the comparisons into the report both renderings are made of."""
    old, new = [c.old for c in compared], [c.new for c in compared]
    queues = _pairs(Counter(v.queue for v in old), Counter(v.queue for v in new))

    def due(verdicts: list[Judgement], queue: str) -> Spread | None:
        return _spread([v.due_after for v in verdicts if v.queue == queue and v.due_after is not None])

    moved = [c for c in compared if c.old.queue != c.new.queue]
    return Report(
        window=window, messages=len(compared),
        # the busiest queues first
        queues=dict(sorted(queues.items(), key=lambda kv: (-sum(kv[1]), kv[0]))),
        priorities=_pairs(Counter(v.priority for v in old), Counter(v.priority for v in new)),
        tier_urgency=_pairs(Counter(f"{v.tier}/{v.urgency}" for v in old),
                            Counter(f"{v.tier}/{v.urgency}" for v in new)),
        due={q: (due(old, q), due(new, q)) for q in queues},
        changed=len(moved), examples=tuple(moved[:examples]))


def changed_reasons(c: Compared) -> tuple[list[str], list[str]]:
    """The reasons only the old, and only the new, policy gave for a message."""
    return ([r for r in c.old.reasons if r not in c.new.reasons],
            [r for r in c.new.reasons if r not in c.old.reasons])


def _seconds(s: Spread | None) -> dict[str, float | int] | None:
    if s is None:
        return None
    return {"count": s.count, "p50_seconds": s.p50.total_seconds(), "p90_seconds": s.p90.total_seconds(),
            "max_seconds": s.max.total_seconds()}


def as_json(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data, for `--json`."""
    w = report.window

    def table(rows: Mapping[Any, tuple[int, int]]) -> dict[str, dict[str, int]]:
        return {str(k): {"old": o, "new": n} for k, (o, n) in rows.items()}

    return {
        "topic": w.topic, "since": w.since.isoformat(), "until": w.until.isoformat(),
        "records": w.records, "skipped": dict(w.skipped), "messages": report.messages,
        "policies": {"old": w.old_policy, "new": w.new_policy}, "note": AS_IF_NEW,
        "queues": table(report.queues), "priorities": table(report.priorities),
        "tier_urgency": table(report.tier_urgency),
        "first_response": {q: {"old": _seconds(o), "new": _seconds(n)} for q, (o, n) in report.due.items()},
        "queue_changed": report.changed,
        "examples": [{"event_id": c.event_id, "channel": c.channel, "received_at": c.received_at.isoformat(),
                      "old_queue": c.old.queue, "new_queue": c.new.queue,
                      "old_reasons": changed_reasons(c)[0], "new_reasons": changed_reasons(c)[1]}
                     for c in report.examples],
    }


def _duration(value: timedelta | None) -> str:
    # whole minutes: seconds of a due time are noise in a table
    return "-" if value is None else format_duration(timedelta(minutes=value.total_seconds() // 60))


def _counts(title: str, rows: Mapping[Any, tuple[int, int]]) -> list[str]:
    width = max([len(title), *(len(str(k)) for k in rows)])
    lines = [f"{title:<{width}}  {'old':>6}  {'new':>6}  {'change':>6}"]
    lines += [f"{k!s:<{width}}  {o:>6}  {n:>6}  {n - o:>+6}" for k, (o, n) in rows.items()]
    return lines


def render(report: Report) -> str:
    """The report as tables for people."""
    w = report.window
    skipped = ", ".join(f"{n} {why}" for why, n in w.skipped.items() if n) or "none"
    lines = [
        f"whatif: {report.messages} messages from {w.topic}, "
        f"{w.since:%Y-%m-%d %H:%M} to {w.until:%Y-%m-%d %H:%M} UTC ({w.records} records; skipped: {skipped})",
        f"old: {w.old_policy}", f"new: {w.new_policy}", f"note: {AS_IF_NEW}", "",
        *_counts("queue", report.queues), "", *_counts("priority", report.priorities), "",
        *_counts("tier/urgency", report.tier_urgency), "",
    ]
    width = max([len("first response"), *(len(q) for q in report.due)])
    lines.append(f"{'first response':<{width}}  {'old p50':>8} {'p90':>8} {'max':>8}   "
                 f"{'new p50':>8} {'p90':>8} {'max':>8}")
    for queue, (old, new) in report.due.items():
        cells = [_duration(getattr(s, f) if s else None) for s in (old, new) for f in ("p50", "p90", "max")]
        lines.append(f"{queue:<{width}}  {cells[0]:>8} {cells[1]:>8} {cells[2]:>8}   "
                     f"{cells[3]:>8} {cells[4]:>8} {cells[5]:>8}")
    lines += ["", f"queue changed: {report.changed} of {report.messages} messages"]
    for c in report.examples:
        was, now = changed_reasons(c)
        lines.append(f"  {c.event_id} ({c.channel}, {c.received_at:%Y-%m-%d %H:%M}): "
                     f"{c.old.queue} -> {c.new.queue}")
        lines += [f"    was: {r}" for r in was[:3]] + [f"    now: {r}" for r in now[:3]]
    return "\n".join(lines)


def routable(values: Iterable[bytes | None], rules: thread.ThreadRules,
                 our_domains: Sequence[str]) -> tuple[list[InboundMessage], Counter[str]]:
    """The messages the router would route, each event once; the rest counted by why."""
    skipped: Counter[str] = Counter()
    seen: set[str] = set()
    messages = []
    for value in values:
        try:
            message = decode(value or b"", InboundMessage)
        except ParseError:
            skipped["undecodable"] += 1
            continue
        if message.event_id in seen:
            skipped["duplicate"] += 1
        elif "bounce" in message.tags:
            skipped["bounce"] += 1
        elif answered_conversation(message, rules.token_key, our_domains) is not None:
            skipped["agent answer"] += 1
        elif find_mark(message.text, message.channel, rules.token_key, message.received_at) is not None:
            skipped["probe"] += 1  # judged fresh as of its arrival, as intake judged it
        else:
            messages.append(message)
        seen.add(message.event_id)
    return messages, skipped


async def _partitions(settings: Settings, topic: str) -> list[int]:
    # the admin client asks for one topic; a consumer in no group learns of none by itself
    admin = AIOKafkaAdminClient(**client_options(settings))
    try:
        await admin.start()
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"] == UnknownTopicOrPartitionError.errno:
        raise SwitchboardError(f"topic {topic} does not exist: nothing was recorded")
    if described["error_code"]:
        raise TransientError(f"cannot describe {topic}: Kafka error {described['error_code']}")
    return sorted(p["partition"] for p in described["partitions"])


async def read_window(settings: Settings, since: datetime, limit: int | None,
                      timeout: float = 30.0, spec: TopicSpec = INBOUND) -> tuple[str, list[bytes | None]]:
    """Record values on a topic (inbound unless told) from `since` to the ends found now; commits nothing."""
    topic = settings.topic(spec)
    consumer = AIOKafkaConsumer(**client_options(settings), group_id=None, enable_auto_commit=False)
    values: list[bytes | None] = []
    try:
        async with asyncio.timeout(timeout):
            tps = [TopicPartition(topic, p) for p in await _partitions(settings, topic)]
            await consumer.start()
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            starts = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in tps})
            for tp in tps:
                found = starts.get(tp)
                consumer.seek(tp, found.offset if found is not None else ends[tp])
            todo = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
        while todo and (limit is None or len(values) < limit):
            # a long window may take a while; `timeout` bounds each step, not the whole read
            async with asyncio.timeout(timeout):
                batch = await consumer.getmany(*todo, timeout_ms=500)
                for tp, records in batch.items():
                    values += [r.value for r in records if r.offset < ends[tp]]
                    if await consumer.position(tp) >= ends[tp]:
                        todo.discard(tp)
    except (KafkaError, TimeoutError, OSError) as e:
        raise TransientError(f"cannot read {topic} from Kafka at {settings.kafka_bootstrap}: {e!r}") from e
    finally:
        await consumer.stop()
    return topic, values if limit is None else values[:limit]


async def read_customers(settings: Settings, messages: Sequence[InboundMessage],
                         timeout: float = 30.0) -> Customers:
    """Each sender's identity binding and each known customer's profile: read commands only."""
    ns = f"{settings.topic_prefix}sb"  # the namespace router.app gives the stores
    ids = IdentityStore(ns, HistoryStore(ns, tags=Tags(settings.kafka_partitions)))
    senders = sorted({str(m.sender) for m in messages})
    redis = settings.new_redis()
    try:
        async with asyncio.timeout(timeout):
            raw = await read_many(redis, [ids.identity_key(s) for s in senders])  # an MGET per hash tag
            lookups = dict(zip(senders, ids.parse_lookup(raw), strict=True))
            customers = sorted({b.customer_id for b in lookups.values() if b is not None})
            # HMGET and SMEMBERS, laid out as Directory.parse_profiles reads them; never a write
            pipe = redis.pipeline(transaction=False)
            for c in customers:
                pipe.hmget(ids.profile_key(c), "tier", "name")
                pipe.smembers(ids.identities_key(c))
            flat = await pipe.execute() if customers else []
            answer = list(zip(flat[::2], flat[1::2], strict=True))
    except (RedisError, RedisClusterException, TimeoutError, OSError) as e:
        raise TransientError(f"cannot read customers from Redis: {e!r}") from e
    finally:
        await redis.aclose()
    profiles = Directory(ids).parse_profiles(customers, answer)
    return Customers(lookups, {p.customer_id: p for p in profiles})


async def whatif(settings: Settings, old: Policy, new: Policy, since: timedelta,
                 limit: int | None) -> Report:
    """Replay the window under both policies and summarise; no side effects anywhere."""
    until = datetime.now(UTC)
    topic, values = await read_window(settings, until - since, limit)
    messages, skipped = routable(values, settings.thread_rules, settings.our_domains)
    customers = await read_customers(settings, messages)
    compared = compare(messages, customers, old=old, new=new, rules=settings.thread_rules, now=until)
    window = Window(topic, until - since, until, len(values), dict(skipped), old.source, new.source)
    return summarise(compared, window)
