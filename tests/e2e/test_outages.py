"""Redis killed -9 under a steady stream: the worker pauses, says why, resumes by itself.

The worker gets its own Debian redis-server, with the AOF at `everysec` as deployed, so
the kill can lose the last second of writes. While Redis is away the worker must not
crash, hang or acknowledge a batch it has not produced: it runs the batch again with
backoff and /readyz answers 503 naming Redis. Started again on the same files, Redis
comes back and every message is routed; nothing is lost; SIGTERM still stops the worker.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from router.settings import Settings
from schemas import RoutedConversation, decode
from schemas.topics import INBOUND, ROUTED
from tests.clocks import real_clock_env
from tests.e2e.test_two_workers import routed_by
from tests.kafka_tools import publish, read_all, wait_drained
from tests.processes import Switchboard, free_port
from tests.traffic import busy_hour
from tests.waiting import POLL_SECONDS, until

pytestmark = pytest.mark.e2e
Launch = Callable[..., Switchboard]


class OwnRedis:
    """A redis-server of this test's own on loopback, started and killed at will."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.directory),
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--daemonize", "no",
             "--protected-mode", "yes"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=real_clock_env())
        deadline = time.monotonic() + timeout
        while subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True,
                             check=False).stdout.strip() != b"PONG":
            assert self.proc.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server never answered"
            time.sleep(POLL_SECONDS)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    redis = OwnRedis(tmp_path)
    redis.start()
    yield redis
    if redis.proc is not None and redis.proc.poll() is None:
        redis.kill()




def redis_down(worker: Switchboard) -> bool:
    status, body = worker.get("/readyz")
    return status == 503 and body is not None and body["checks"]["redis"]["ok"] is False


async def redis_killed_mid_stream(deployment: Settings, launch: Launch, own_redis: OwnRedis, *,
                                  customers: int, routed_first: int) -> tuple[Switchboard, set[str]]:
    """A worker on `own_redis` routes part of a stream, then Redis is killed -9 and the rest arrives.

    Returns the worker, once /readyz says Redis is away, and every event id of the stream.
    """
    traffic = busy_hour(deployment.topic_prefix.rstrip("-"), customers=customers, repeat_every=10)
    records = list(traffic.records())
    worker = launch("worker", SB_REDIS_URL=own_redis.url, SB_BATCH_SIZE="25")
    await publish(deployment, deployment.topic(INBOUND), records[: len(records) // 3])
    await until(lambda: routed_by(worker) >= routed_first, "the worker never routed")
    own_redis.kill()
    # input keeps arriving while Redis is away
    await publish(deployment, deployment.topic(INBOUND), records[len(records) // 3:])
    await until(lambda: redis_down(worker), "/readyz never said Redis is away")
    return worker, set(traffic.by_event())


async def routed_events(deployment: Settings) -> set[str]:
    """The event ids on the routed topic."""
    return {decode(r.value, RoutedConversation).event_id
            for r in await read_all(deployment, deployment.topic(ROUTED))}


async def test_a_redis_outage_pauses_the_worker_and_loses_nothing(
        deployment: Settings, launch: Launch, own_redis: OwnRedis) -> None:
    worker, expected = await redis_killed_mid_stream(deployment, launch, own_redis,
                                                     customers=300, routed_first=100)
    # the worker waits, alive, and says why
    _, ready = worker.get("/readyz")
    assert worker.proc is not None and worker.proc.poll() is None, worker.tail_log()
    assert ready["checks"]["stages"]["ok"] is False, ready

    own_redis.start()
    await wait_drained(deployment, timeout=180)
    await until(lambda: worker.get("/readyz")[0] == 200, "the worker never became ready again")
    assert await routed_events(deployment) == expected, "a message was lost"
    assert worker.proc.poll() is None, worker.tail_log()
    assert worker.stop(signal.SIGTERM, timeout=60) == 0


async def test_sigterm_during_a_redis_outage_stops_the_worker_without_committing_its_batch(
        deployment: Settings, launch: Launch, own_redis: OwnRedis) -> None:
    worker, expected = await redis_killed_mid_stream(deployment, launch, own_redis,
                                                     customers=120, routed_first=25)
    started = time.monotonic()
    # its batch cannot finish while Redis is away: it stops anyway, within its grace
    assert worker.stop(signal.SIGTERM, timeout=60) in (0, 75)
    assert time.monotonic() - started < 45

    own_redis.start()
    launch("worker", SB_REDIS_URL=own_redis.url, SB_BATCH_SIZE="25")
    await wait_drained(deployment, timeout=180)
    assert await routed_events(deployment) == expected, "a message was lost"


async def test_an_edge_keeps_serving_through_a_redis_outage_and_stops_on_sigterm(
        deployment: Settings, launch: Launch, own_redis: OwnRedis) -> None:
    edge = launch("run", SB_REDIS_URL=own_redis.url)
    own_redis.kill()
    await until(lambda: redis_down(edge), "/readyz never said Redis is away")
    # what needs Redis answers 503 with a reason that names no host; the edge stays up
    status, body = edge.post("/v1/customers/cus_ada/tier", json.dumps({"tier": "premium"}).encode(),
                             method="PUT")
    assert status == 503, body
    assert own_redis.url.rsplit(":", 1)[-1] not in json.dumps(body)
    assert edge.get("/healthz")[0] == 200
    started = time.monotonic()
    assert edge.stop(signal.SIGTERM, timeout=60) == 0, edge.tail_log()
    assert time.monotonic() - started < 45
