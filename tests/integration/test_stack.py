"""The local stack, for real: processes started once, reported truthfully, stopped by PID.

Tests that stop anything use their own state dir and ports, never the shared stack.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import aioimaplib
import pytest
import redis.asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import SecretStr

from devtools import stack as local_stack
from router.settings import Settings, load
from schemas.errors import ConfigError, TransientError
from tests.clocks import real_clock_env
from tests.waiting import POLL_SECONDS

pytestmark = pytest.mark.integration

ALL = local_stack.SERVICES
# what the suite's `stack` fixture starts in the shared stack (tests/conftest.py)
SHARED = ("kafka", "redis", "imap")
USER, PASSWORD = "support@example.com", "support-secret"


def eventually(check: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait until `check()` holds, failing at the deadline."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"still not true after {timeout}s"
        time.sleep(POLL_SECONDS)


def by_name(statuses: list[local_stack.ServiceStatus]) -> dict[str, local_stack.ServiceStatus]:
    return {s.name: s for s in statuses}


def alive(pid: int) -> bool:
    try:
        return b"\0" in Path(f"/proc/{pid}/cmdline").read_bytes()  # a zombie's is empty
    except OSError:
        return False


@pytest.fixture
def isolated(stack: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """A second stack with its own state dir and ports; stopped and removed afterwards."""
    # its services run on the machine's clock, as the shared stack's do under make test-clocks
    for name in set(os.environ) - set(real_clock_env()):
        monkeypatch.delenv(name)
    # not under pytest's 0700 tmp: Dovecot's mail user must be able to reach its mailboxes
    state = Path(tempfile.mkdtemp(prefix="sb-stack-"))
    state.chmod(0o755)
    # nothing of Kafka's in the new state dir: it shares the jars the default stack runs
    settings = load(state_dir=state, kafka_libs=local_stack.kafka_libs(stack),
                    kafka_bootstrap="127.0.0.1:29092",
                    redis_url=SecretStr("redis://127.0.0.1:26379/0"),
                    imap_port=20143, lmtp_port=20024, smtp_port=20025)
    try:
        yield settings
    finally:
        local_stack.down(settings)
        shutil.rmtree(state)


def test_up_twice_leaves_running_services_alone(stack: Settings) -> None:
    before = by_name(local_stack.status(stack))
    again = by_name(local_stack.up(stack, SHARED))
    for name in SHARED:
        assert again[name].running, again[name]
        assert again[name].pid == before[name].pid


def test_status_names_live_processes_of_ours(stack: Settings) -> None:
    for s in (s for s in local_stack.status(stack) if s.name in SHARED):
        assert s.running and s.pid is not None, s
        assert s.detail == "answers"
        argv = Path(f"/proc/{s.pid}/cmdline").read_bytes()
        assert str(stack.state_dir.resolve()).encode() in argv


async def test_kafka_round_trip(stack: Settings) -> None:
    topic = f"stack-{uuid.uuid4().hex}"
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"ping", key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=stack.kafka_bootstrap,
                                group_id=topic, auto_offset_reset="earliest")
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), 30)
    finally:
        await consumer.stop()
    assert (record.key, record.value) == (b"k", b"ping")


async def test_redis_answers(stack: Settings) -> None:
    client = redis.asyncio.Redis.from_url(stack.redis_dsn)
    try:
        assert await asyncio.wait_for(client.ping(), 5) is True
    finally:
        await client.aclose()


async def test_mail_delivered_by_lmtp_is_pushed_by_idle(stack: Settings) -> None:
    imap = aioimaplib.IMAP4(host="127.0.0.1", port=stack.imap_port, timeout=10)
    await imap.wait_hello_from_server()
    assert (await imap.login(USER, PASSWORD)).result == "OK"
    assert (await imap.select("INBOX")).result == "OK"
    idle = await imap.idle_start(timeout=30)
    subject = f"stack test {uuid.uuid4().hex}"
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "ada@example.org", USER, subject
    message.set_content("My order never arrived.")

    def deliver() -> None:
        with smtplib.LMTP("127.0.0.1", stack.lmtp_port) as lmtp:
            assert lmtp.send_message(message) == {}

    await asyncio.to_thread(deliver)
    pushed = await imap.wait_server_push(timeout=10)
    assert any(line.endswith(b"EXISTS") for line in pushed), pushed
    imap.idle_done()
    await asyncio.wait_for(idle, 10)
    found = await imap.search(f'SUBJECT "{subject}"')
    assert found.result == "OK" and found.lines[0].split(), found.lines
    await imap.logout()


def test_isolated_stack_lifecycle(stack: Settings, isolated: Settings) -> None:
    started = by_name(local_stack.up(isolated, ALL))
    assert all(s.running for s in started.values()), started
    assert by_name(local_stack.status(isolated)) == started
    assert {s.pid for s in by_name(local_stack.up(isolated, ALL)).values()} == {
        s.pid for s in started.values()}

    stopped = by_name(local_stack.down(isolated))
    for name in ALL:
        assert not stopped[name].running and stopped[name].pid is None, stopped[name]
        assert stopped[name].detail == "not running"
        pid = started[name].pid
        assert pid is not None and not alive(pid)
    assert not list((isolated.state_dir / "run").glob("*.pid"))
    # the shared stack never noticed
    assert all(s.running for s in local_stack.status(stack) if s.name in SHARED)


def test_status_sees_a_service_that_died(isolated: Settings) -> None:
    (first,) = local_stack.up(isolated, ("redis",))
    assert first.pid is not None
    os.kill(first.pid, signal.SIGKILL)
    eventually(lambda: not by_name(local_stack.status(isolated))["redis"].running)
    assert by_name(local_stack.status(isolated))["redis"].pid is None

    (second,) = local_stack.up(isolated, ("redis",))
    assert second.running and second.pid not in (None, first.pid)


def test_down_never_signals_a_process_it_did_not_start(isolated: Settings) -> None:
    stranger = subprocess.Popen(["sleep", "300"])
    try:
        run = isolated.state_dir / "run"
        run.mkdir(parents=True, exist_ok=True)
        (run / "redis.pid").write_text(f"{stranger.pid}\n")
        assert not by_name(local_stack.status(isolated))["redis"].running
        local_stack.down(isolated)
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_a_taken_port_is_reported_not_stolen(isolated: Settings) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 26379))
        squatter.listen()
        with pytest.raises(ConfigError, match=r"127\.0\.0\.1:26379 is taken"):
            local_stack.up(isolated, ("redis",))
    assert not (isolated.state_dir / "run" / "redis.pid").exists()


def test_a_service_that_dies_starting_names_its_log(isolated: Settings) -> None:
    # storage formatted for another node: the broker refuses to start and exits
    data = isolated.state_dir / "kafka" / "data"
    data.mkdir(parents=True)
    (data / "meta.properties").write_text(
        "version=1\nnode.id=7\ncluster.id=AAAAAAAAAAAAAAAAAAAAAA\n"
        "directory.id=AAAAAAAAAAAAAAAAAAAAAQ\n")
    with pytest.raises(TransientError, match="kafka exited while starting") as failure:
        local_stack.up(isolated, ("kafka",), timeout=120)
    assert str(isolated.state_dir / "logs" / "kafka.log") in str(failure.value)
    assert not (isolated.state_dir / "run" / "kafka.pid").exists()


def test_settings_the_stack_cannot_serve_fail_at_once(isolated: Settings) -> None:
    with pytest.raises(ConfigError, match="unknown service"):
        local_stack.up(isolated, ("zookeeper",))
    remote = isolated.model_copy(update={"kafka_bootstrap": "kafka.example.com:9092"})
    with pytest.raises(ConfigError, match="SB_KAFKA_BOOTSTRAP"):
        local_stack.status(remote)
