"""What the pipeline bench watches beside the output: each worker's share, consumer lag, memory.

- `Workers` scrapes each worker's own `/metrics` (`sb_messages_out_total` of a stage) before
  and after a phase: messages per second per worker, so a second worker that adds nothing
  shows as such.
- `Lag` samples each stage group's lag (end offset minus committed offset, summed over the
  partitions) every half second while a phase runs: the peak and where it ended.
- `rss_mib` reads a process's resident memory from /proc, for the backlog drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

__all__ = ["Lag", "Workers", "cpu_seconds", "free_port", "rss_mib"]

LAG_EVERY_SECONDS = 0.5


def free_port() -> int:
    """A loopback port nothing listens on now, for a worker's HTTP server."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB (0 when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) / 1024 if found else 0.0


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used, user and system, in seconds (0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _passed(port: int, stage: str) -> float:
    """A worker's count of messages `stage` passed on, from its /metrics."""
    return _scraped(port, stage)[0]


def _ready(port: int) -> None:
    """Raise OSError unless the worker on `port` says it is ready (/readyz)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5):
        pass  # a 503 raises HTTPError, an OSError


def _scraped(port: int, stage: str) -> tuple[float, float]:
    """A worker's count of messages `stage` passed on and the CPU seconds it has used so far."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    pattern = re.compile(rf'^sb_messages_out_total\{{[^}}]*stage="{stage}"[^}}]*\}} ([0-9.e+]+)$',
                         re.MULTILINE)
    cpu = re.search(r"^process_cpu_seconds_total ([0-9.e+]+)$", text, re.MULTILINE)
    return sum(float(v) for v in pattern.findall(text)), float(cpu.group(1)) if cpu else 0.0


@dataclass
class Workers:
    """The HTTP ports of a run's workers, to read each one's share of a phase."""

    ports: Sequence[int]
    stage: str = "brain"
    _before: list[tuple[float, float]] = field(default_factory=list)
    _at: float = 0.0
    # CPU microseconds each worker spent a message passed on in the last phase: the chain's
    # cost, steadier than msg/s on a machine others share
    cpu_us: list[float] = field(default_factory=list)

    async def ready(self, timeout: float = 90.0) -> None:
        """Wait until every worker is ready: each has joined its stages' groups.

        With several workers, the last to join sets off the rebalance that a phase measured
        before it would count as latency.
        """
        deadline = time.monotonic() + timeout
        for port in self.ports:
            while True:
                try:
                    await asyncio.to_thread(_ready, port)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"worker on port {port} never answered") from None
                    await asyncio.sleep(0.5)

    async def start(self) -> None:
        """Note each worker's count at the start of a phase."""
        self._before = [await asyncio.to_thread(_scraped, p, self.stage) for p in self.ports]
        self._at = time.monotonic()

    async def rates(self, seconds: float | None = None) -> list[int]:
        """Messages per second each worker passed on since `start`."""
        after = [await asyncio.to_thread(_scraped, p, self.stage) for p in self.ports]
        span = seconds if seconds is not None else time.monotonic() - self._at
        pairs = list(zip(after, self._before, strict=True))
        self.cpu_us = [round((a[1] - b[1]) / max(1.0, a[0] - b[0]) * 1e6, 1) for a, b in pairs]
        return [round((a[0] - b[0]) / span) for a, b in pairs]


class Lag:
    """Samples the lag of stage groups on their input topics while a phase runs."""

    def __init__(self, bootstrap: str, groups: dict[str, str], partitions: int) -> None:
        # groups: stage group → the topic it reads (its first input)
        self._bootstrap = bootstrap
        self._partitions = partitions
        self._groups = groups
        self.peak: dict[str, int] = dict.fromkeys(groups, 0)
        self.last: dict[str, int] = dict.fromkeys(groups, 0)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Begin sampling in the background."""
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap)
        await self._admin.start()
        self._ends = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, enable_auto_commit=False)
        await self._ends.start()
        self._task = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            for group, topic in self._groups.items():
                with contextlib.suppress(Exception):  # a group still joining has nothing to say yet
                    self.last[group] = lag = await self.lag(group, topic)
                    self.peak[group] = max(self.peak[group], lag)
            await asyncio.sleep(LAG_EVERY_SECONDS)

    async def lag(self, group: str, topic: str) -> int:
        """Records of `topic` the group has not committed yet."""
        tps = [TopicPartition(topic, p) for p in range(self._partitions)]
        ends = await self._ends.end_offsets(tps)
        committed = await self._admin.list_consumer_group_offsets(group, partitions=tps)
        return sum(max(0, ends[tp] - (committed[tp].offset if tp in committed and committed[tp].offset >= 0
                                      else 0)) for tp in tps)

    async def stop(self) -> None:
        """Stop sampling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._ends.stop()
        await self._admin.close()
