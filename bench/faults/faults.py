"""The faults, one scenario each, and how each is injected and ended.

A scenario injects its faults one after another at random moments under the load. A
kill hits a process once it is ready again, after a random wait; the supervisor starts
it again, and that start is the fault's end. The others last a set time: Kafka stopped
(SIGTERM) and started, Redis killed -9 and started on its files or on none, Dovecot's
tree stopped (SIGSTOP) and continued, the SMTP sink refusing, the agents' webhook down.
Before the next fault the suite waits, with a deadline, until the recovery signal shows
(something routed, mailed or delivered after the end).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from bench.faults.journal import Journal
from bench.faults.processes import Supervisor
from bench.faults.sinks import SmtpSink
from bench.faults.stack import OwnStack
from tests.receivers.webhook import WebhookReceiver

__all__ = ["SCENARIOS", "Durations", "Fault", "Rig", "Scenario", "recovered_at", "until"]

Signal = Literal["routed", "mail-routed", "mailed", "handed"]
POLL_SECONDS = 0.1
DISORDER_SECONDS = 10.0


@dataclass(frozen=True)
class Durations:
    """How long the timed faults last, and the longest random wait before a kill."""

    gap: tuple[float, float] = (2.0, 6.0)  # the random wait before each timed fault
    kafka: float = 15.0
    redis: float = 5.0
    imap: float = 15.0
    smtp: float = 15.0
    webhook: float = 120.0
    kill_gap: float = 3.0
    recover: float = 120.0  # the longest wait for the recovery signal before the next fault


@dataclass
class Rig:
    """Everything a fault acts on."""

    stack: OwnStack
    supervisor: Supervisor
    smtp: SmtpSink
    webhook: WebhookReceiver
    journal: Journal
    durations: Durations
    rng: random.Random
    clock_offset: float  # time.time() - time.monotonic(), for the webhook's monotonic stamps


@dataclass(frozen=True)
class Fault:
    """One injected fault: when it began and ended (wall clock), and what was done."""

    began: float
    ended: float
    note: str


Inject = Callable[[Rig, int], Awaitable[Fault]]


@dataclass(frozen=True)
class Scenario:
    """A kind of fault, how many by default and in --quick, and what shows recovery."""

    name: str
    title: str
    count: int
    quick: int
    signal: Signal
    inject: Inject
    # Redis lost without its data: doubles are reported, never a failure (decision 0003)
    may_double: bool = False


async def _random_moment(rig: Rig) -> float:
    """Wait a random time under the load (the fault's moment); the wall clock then."""
    await asyncio.sleep(rig.rng.uniform(*rig.durations.gap))
    return time.time()


def _kill(role: str) -> Inject:
    async def inject(rig: Rig, n: int) -> Fault:
        process = rig.supervisor[role]
        await rig.supervisor.wait_ready([process], timeout=90)
        await asyncio.sleep(rig.rng.uniform(0.2, rig.durations.kill_gap))  # the random moment
        starts = len(process.starts)
        began = time.time()
        await asyncio.to_thread(process.kill)
        await until(lambda: len(process.starts) > starts, 30)
        return Fault(began, process.starts[-1], f"kill -9 {role} #{n + 1}")
    return inject


async def _kafka(rig: Rig, n: int) -> Fault:
    began = await _random_moment(rig)
    await asyncio.to_thread(rig.stack.stop_kafka)
    await asyncio.sleep(rig.durations.kafka)  # the outage itself
    await asyncio.to_thread(rig.stack.up, ("kafka",))
    return Fault(began, time.time(), f"Kafka stopped #{n + 1}, down {time.time() - began:.0f}s")


def _redis(keep_data: bool) -> Inject:
    async def inject(rig: Rig, n: int) -> Fault:
        began = await _random_moment(rig)
        await asyncio.to_thread(rig.stack.kill_redis, keep_data=keep_data)
        await asyncio.sleep(rig.durations.redis)  # the outage itself
        await asyncio.to_thread(rig.stack.up, ("redis",))
        what = "with its data" if keep_data else "its files removed"
        return Fault(began, time.time(), f"Redis kill -9 #{n + 1}, {what}")
    return inject


async def _imap(rig: Rig, n: int) -> Fault:
    began = await _random_moment(rig)
    tree = await asyncio.to_thread(rig.stack.pause_imap)
    try:
        await asyncio.sleep(rig.durations.imap)  # the outage itself
    finally:
        await asyncio.to_thread(rig.stack.resume_imap)
    return Fault(began, time.time(), f"Dovecot paused #{n + 1} ({len(tree)} processes)")


async def _smtp(rig: Rig, n: int) -> Fault:
    command, reply = ("DATA", "451 4.3.0 try again later") if n % 2 == 0 else (
        "RCPT", "554 5.7.1 refused")
    began = await _random_moment(rig)
    rig.smtp.refuse(command, reply)
    try:
        await asyncio.sleep(rig.durations.smtp)  # the outage itself
    finally:
        rig.smtp.accept()
    return Fault(began, time.time(), f"SMTP answering {reply[:3]} at {command} #{n + 1}")


async def _webhook(rig: Rig, n: int) -> Fault:
    began = await _random_moment(rig)
    rig.webhook.go_down(503)
    try:
        await asyncio.sleep(rig.durations.webhook)  # the outage itself
    finally:
        rig.webhook.come_up()
    return Fault(began, time.time(), f"webhook answering 503 #{n + 1}")


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("kill-worker", "kill -9 of a worker", 20, 2, "routed", _kill("worker")),
    Scenario("kill-edge", "kill -9 of the edge (run)", 20, 2, "routed", _kill("edge")),
    Scenario("kill-sender", "kill -9 of the send worker", 20, 2, "mailed", _kill("sender")),
    Scenario("kafka", "Kafka stopped and started", 2, 2, "routed", _kafka),
    Scenario("redis", "Redis kill -9, restarted with its data", 3, 2, "routed", _redis(True)),
    Scenario("imap", "Dovecot paused (SIGSTOP/SIGCONT)", 2, 2, "mail-routed", _imap),
    Scenario("smtp", "SMTP sink refusing (451, 554)", 2, 2, "mailed", _smtp),
    Scenario("webhook", "agents' webhook down", 1, 1, "handed", _webhook),
    # last: the mailbox cursor goes with Redis' data, and the edge reads the mailbox anew
    Scenario("redis-wiped", "Redis kill -9, restarted without its data", 1, 1, "routed",
             _redis(False), may_double=True),
)


def recovered_at(rig: Rig, signal: Signal, after: float) -> float | None:
    """The first moment the signal shows something done after `after`, if it has yet."""
    if signal in ("routed", "mail-routed"):
        times = (t for t, channel in reversed(rig.journal.routed_at)
                 if signal == "routed" or channel == "email")
    elif signal == "mailed":
        times = (m.at for m in reversed(rig.smtp.mails) if m.to_customer)
    else:
        times = (d.at + rig.clock_offset for d in reversed(rig.webhook.deliveries)
                 if d.event == "conversation.routed")
    first = None
    for t in times:  # newest first; records of different partitions may be a little out of order
        if t < after - DISORDER_SECONDS:
            break
        if t > after and (first is None or t < first):
            first = t
    return first


async def until(check: Callable[[], bool], timeout: float) -> bool:
    """Whether `check()` held before `timeout` seconds passed, polling it."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(POLL_SECONDS)
    return True


async def wait_recovered(rig: Rig, signal: Signal, after: float) -> float | None:
    """Wait, at most `durations.recover`, until the signal shows recovery; its moment."""
    await until(lambda: recovered_at(rig, signal, after) is not None, rig.durations.recover)
    return recovered_at(rig, signal, after)
