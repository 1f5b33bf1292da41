"""Synthetic probes: a marked message through every probed channel's real path, timed to routed.

Each configured channel whose spec offers a `probe` (connectors/spec.py) gets one: the
edge (`switchboard run`) sends one every `probe_interval_seconds` per channel, and
`switchboard probe` sends one round on demand. The marker (schemas/probe.py) makes intake
take the message off the customer path; the brain reports its route on `sb.probe.v1`,
where the prober waits for it. The prober's verdict goes on the same topic and into
`sb_probe_seconds` / `sb_probe_failures_total`: `passed`, `slow` (routed after
`probe_slow_seconds`), `silent` (not routed within `probe_timeout_seconds`) or `failed`
(the channel would not even take it). Slow, silent and failed are logged as warnings:
the events a dashboard shows red and an alert fires on. A routed probe's traces are
then removed from the channel (`Probe.remove`: the mail in our mailbox, the public post).

With several edges, each channel is probed by one of them: the holder of the channel's
lease in Redis (`<ns>:probe:lease:<channel>`), taken and renewed each round, so another
edge takes over when the holder stops (it gives the lease up) or within two rounds when
it dies. An edge that cannot reach Redis probes anyway: a probe twice is better than none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from mode import Service
from prometheus_client import Counter, Histogram
from redis.asyncio import Redis
from redis.exceptions import RedisClusterException, RedisError

from connectors.base import Probe, ProbeTarget
from connectors.registry import CHANNELS
from router.kafka import client_options, new_producer
from router.settings import Settings
from schemas.codec import decode, encode
from schemas.errors import ParseError, SwitchboardError, TransientError
from schemas.probe import ProbeEvent, make_marker
from schemas.topics import PROBE

__all__ = ["PROBE_FAILURES", "PROBE_SECONDS", "Lease", "ProbeService", "Results", "configured", "interval_of",
           "probe_once"]

log = logging.getLogger(__name__)
PROBE_SECONDS = Histogram("sb_probe_seconds", "A synthetic probe's time from sent to routed", ["channel"],
                          buckets=(0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300))
PROBE_FAILURES = Counter("sb_probe_failures_total", "Synthetic probes slow, silent or not taken",
                         ["channel", "kind"])
Publish = Callable[[ProbeEvent], Awaitable[None]]
Clock = Callable[[], datetime]
# take the lease when it is free or already ours, for PX milliseconds
_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
# give the lease up only if it is still ours
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _now() -> datetime:
    return datetime.now(UTC)


def target_of(settings: Settings, api_url: str | None = None) -> ProbeTarget:
    """Where pushed channels' probes enter: this deployment's own HTTP API."""
    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::", "") else settings.http_host
    token = settings.api_tokens[0] if settings.api_tokens else None
    return ProbeTarget(api_url=api_url or f"http://{host}:{settings.http_port}", api_token=token)


def configured(settings: Settings, target: ProbeTarget) -> dict[str, Probe]:
    """The probe of every configured channel that offers one, by channel name."""
    found: dict[str, Probe] = {}
    for name, spec in CHANNELS.items():
        section = settings.section(spec.section, spec.settings)
        if section is None or spec.probe is None:
            continue
        probe = spec.probe(section, target)
        if probe is not None:
            found[name] = probe
        else:  # said once, at start: a channel nobody can probe is not a failing one
            log.info("channel not probed: its settings give the probe no way in", extra={"channel": name})
    return found


class Results:
    """Reads `sb.probe.v1` from its end and hands each `routed` report to the probe awaiting it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._waiting: dict[str, asyncio.Future[ProbeEvent]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, producer: AIOKafkaProducer, timeout: float = 30.0) -> None:
        """Take every partition at its current end, so no report after this moment is missed."""
        topic = self._settings.topic(PROBE)
        consumer = AIOKafkaConsumer(**client_options(self._settings), group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="latest")
        try:
            partitions = await asyncio.wait_for(producer.partitions_for(topic), timeout)
            assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
            await asyncio.wait_for(consumer.start(), timeout)
            consumer.assign(assigned)
            await consumer.seek_to_end(*assigned)
            for tp in assigned:  # pin the end now: a lazy seek could land after a fast report
                await asyncio.wait_for(consumer.position(tp), timeout)
        except (KafkaError, TimeoutError, OSError) as e:
            await consumer.stop()
            raise TransientError(f"cannot read {topic}: {e!r}") from e
        self._consumer = consumer
        self._task = asyncio.ensure_future(self._read())

    async def stop(self) -> None:
        """Stop reading; safe to call twice."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    def expect(self, probe_id: str) -> asyncio.Future[ProbeEvent]:
        """A future that holds the probe's `routed` report once it is read."""
        future: asyncio.Future[ProbeEvent] = asyncio.get_running_loop().create_future()
        self._waiting[probe_id] = future
        return future

    def forget(self, probe_id: str) -> None:
        """Stop waiting for a probe (judged already)."""
        self._waiting.pop(probe_id, None)

    async def _read(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=500)
            except KafkaError as e:
                log.warning("probe results unreadable; trying again", extra={"error": repr(e)})
                await asyncio.sleep(1.0)
                continue
            for record in (r for records in batches.values() for r in records):
                try:
                    self.take(decode(record.value, ProbeEvent))
                except ParseError:
                    continue  # not ours to judge: the topic's other readers see it too

    def take(self, event: ProbeEvent) -> None:
        """Hand a `routed` report to the probe waiting for it; anything else is someone else's."""
        future = self._waiting.get(event.probe_id)
        if event.kind == "routed" and future is not None and not future.done():
            future.set_result(event)


async def probe_once(settings: Settings, channel: str, probe: Probe, results: Results, publish: Publish,
                     *, clock: Clock = _now) -> ProbeEvent:
    """Send one probe on `channel`, wait for its route, judge it, publish and count the verdict."""
    probe_id = f"prb_{secrets.token_hex(10)}"
    sent_at = clock()
    marker = make_marker(probe_id, channel, sent_at, settings.reply_token_key.get_secret_value().encode())
    waiter = results.expect(probe_id)
    verdict: dict[str, Any]
    try:
        await probe.send(probe_id, f"Switchboard probe {marker}")
        routed = await asyncio.wait_for(asyncio.shield(waiter), settings.probe_timeout_seconds)
    except SwitchboardError as e:
        verdict = {"kind": "failed", "reason": f"the {channel} channel did not take the probe: {e.reason}"}
    except TimeoutError:
        verdict = {"kind": "silent", "reason": f"not routed within {settings.probe_timeout_seconds:g}s"}
    except Exception as e:  # noqa: BLE001 - a connector's surprise is this probe's failure, not the edge's
        verdict = {"kind": "failed", "reason": f"the {channel} probe raised {type(e).__name__}: {e}"}
    else:
        seconds = routed.seconds or 0.0
        await _remove(channel, probe, probe_id)
        slow = seconds > settings.probe_slow_seconds
        verdict = {"kind": "slow" if slow else "passed", "seconds": seconds, "queue": routed.queue,
                   "reason": (f"routed in {seconds:.2f}s, past {settings.probe_slow_seconds:g}s" if slow
                              else f"routed in {seconds:.2f}s to queue {routed.queue}")}
        PROBE_SECONDS.labels(channel).observe(seconds)
    finally:
        results.forget(probe_id)
    event = ProbeEvent(event_id=f"{probe_id}.verdict", probe_id=probe_id, channel=channel, sent_at=sent_at,
                       at=clock(), **verdict)
    context = {"probe_id": probe_id, "channel": channel, "kind": event.kind, "reason": event.reason}
    if event.kind == "passed":
        log.info("probe passed", extra=context)
    else:
        PROBE_FAILURES.labels(channel, event.kind).inc()
        log.warning(f"probe {event.kind}", extra=context)
    await publish(event)
    return event


async def _remove(channel: str, probe: Probe, probe_id: str) -> None:
    """Take a routed probe's traces away; a failure is logged, the verdict stands."""
    try:
        await probe.remove(probe_id)
    except Exception as e:  # noqa: BLE001 - cleaning up never turns a passed probe into a failure
        log.warning("probe left behind", extra={"probe_id": probe_id, "channel": channel,
                                                "reason": getattr(e, "reason", repr(e))})


def interval_of(settings: Settings, probe: Probe) -> float:
    """Seconds between two probes of a channel: the router's interval, or longer if the channel asks."""
    return max(settings.probe_interval_seconds, probe.min_interval_seconds or 0.0)


class Lease:
    """Which edge probes a channel: the holder of its key in Redis, renewed each round."""

    def __init__(self, redis: Redis | None, namespace: str, holder: str | None = None) -> None:
        self._redis = redis
        self._namespace = namespace
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"

    async def take(self, channel: str, seconds: float) -> bool:
        """Whether this edge probes `channel` for the next `seconds`; True when Redis cannot say."""
        if self._redis is None:
            return True
        key = f"{self._namespace}:probe:lease:{channel}"
        try:
            taken = await asyncio.wait_for(
                self._redis.eval(_LEASE, 1, key, self.holder, str(max(1, int(seconds * 1000)))), 5)
        except (RedisError, RedisClusterException, TimeoutError, OSError) as e:
            log.warning("probe lease unreadable; probing anyway",
                        extra={"channel": channel, "error": repr(e)})
            return True
        return bool(taken)

    async def release(self, channels: Sequence[str]) -> None:
        """Give up the leases this edge holds, so another takes over at its next round."""
        if self._redis is None:
            return
        for channel in channels:
            with contextlib.suppress(RedisError, RedisClusterException, TimeoutError, OSError):
                await asyncio.wait_for(self._redis.eval(
                    _RELEASE, 1, f"{self._namespace}:probe:lease:{channel}", self.holder), 2)


class ProbeService(Service):
    """The edge's scheduled probes: one loop per probed channel, `probe_interval_seconds` apart."""

    def __init__(self, settings: Settings, probes: Mapping[str, Probe], redis: Redis | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.probes = dict(probes)
        self.lease = Lease(redis, f"{settings.topic_prefix}sb")
        for channel in self.probes:  # at 0 from the start: an alert's increase() sees the first failure
            for kind in ("slow", "silent", "failed"):
                PROBE_FAILURES.labels(channel, kind)
        self._results = Results(settings)
        self._producer: AIOKafkaProducer | None = None

    async def on_start(self) -> None:
        """Start the producer; results and the loops start in the background, never failing the start."""
        self._producer = new_producer(self.settings)
        await self._producer.start()
        self.add_future(self._begin())

    async def _begin(self) -> None:
        """Read results (as long as it takes Kafka to answer), then one loop per channel."""
        assert self._producer is not None
        delay = 1.0
        while not self.should_stop:
            try:
                await self._results.start(self._producer)
                break
            except TransientError as e:
                log.warning("probes wait for their results topic", extra={"reason": e.reason})
                await self.sleep(delay)
                delay = min(delay * 2, 30.0)
        log.info("probing channels", extra={"channels": sorted(self.probes),
                                            "every_seconds": self.settings.probe_interval_seconds})
        for channel, probe in self.probes.items():
            self.add_future(self._every(channel, probe))

    async def on_stop(self) -> None:
        """Give up the leases, stop reading and producing."""
        await self.lease.release(sorted(self.probes))
        await self._results.stop()
        if self._producer is not None:
            await self._producer.stop()

    async def _every(self, channel: str, probe: Probe) -> None:
        every = interval_of(self.settings, probe)
        leading: bool | None = None
        while not self.should_stop:
            # held past the next round, however long this one takes (the probe's wait, its send and
            # removal, the verdict's publish): a loaded holder must not lose it to a slow round
            lead = await self.lease.take(channel, 2 * (every + self.settings.probe_timeout_seconds) + 30)
            if lead != leading:
                leading = lead
                log.info("probing this channel" if lead else "another edge probes this channel",
                         extra={"channel": channel, "every_seconds": every})
            if lead:
                try:
                    await probe_once(self.settings, channel, probe, self._results, self._publish)
                except SwitchboardError as e:  # the verdict could not be published: the next round tries
                    log.warning("probe verdict not published", extra={"channel": channel, "reason": e.reason})
            await self.sleep(every)

    async def _publish(self, event: ProbeEvent) -> None:
        await publish_with(self._producer, self.settings, event)


async def publish_with(producer: AIOKafkaProducer | None, settings: Settings, event: ProbeEvent) -> None:
    """Put a verdict on `sb.probe.v1`, keyed by channel."""
    if producer is None:
        raise TransientError("the producer is not started")
    try:
        await asyncio.wait_for(producer.send_and_wait(settings.topic(PROBE), encode(event),
                                                      key=event.channel.encode()), 10)
    except (KafkaError, TimeoutError) as e:
        raise TransientError(f"Kafka did not take the probe verdict: {e!r}") from e


async def run_round(settings: Settings, probes: Mapping[str, Probe],
                    channels: Sequence[str] = ()) -> list[ProbeEvent]:
    """One probe per channel (all, or those named), side by side; for `switchboard probe`."""
    chosen = {n: p for n, p in probes.items() if not channels or n in channels}
    results = Results(settings)
    producer = new_producer(settings)
    await producer.start()
    try:
        await results.start(producer)

        async def publish(event: ProbeEvent) -> None:
            await publish_with(producer, settings, event)

        return list(await asyncio.gather(*(probe_once(settings, name, probe, results, publish)
                                           for name, probe in chosen.items())))
    finally:
        await results.stop()
        await producer.stop()
