"""The fault suite's own Kafka, Redis and Dovecot: its own state dir and ports, free to break.

Built like the `isolated` fixture of tests/integration/test_stack.py: a state dir under
/tmp (Dovecot's mail user must reach it), loopback ports nobody uses, Kafka's jars
symlinked from an install (`.local/kafka/libs` by default), and `devtools.stack.up/down`. The shared stack
is never touched: every signal here goes to a PID this stack's own PID files name.
The methods block; call them through `asyncio.to_thread` from the event loop.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr

from devtools import stack as local_stack
from router.settings import ROOT, Settings, load

__all__ = ["OwnStack", "free_port"]

KAFKA_LIBS = ROOT / ".local" / "kafka" / "libs"  # where deploy/local/install.sh puts the jars
SERVICES = ("kafka", "redis", "imap")
# the config each service is started with: its path in argv marks the process as this stack's
CONFIGS = {"kafka": "kafka/server.properties", "redis": "redis/redis.conf", "imap": "imap/dovecot.conf"}
POLL_SECONDS = 0.1


def free_port(pair: bool = False) -> int:
    """A loopback port nobody listens on (and, with `pair`, the one after it too)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not pair or _free(port + 1):
            return port
    raise RuntimeError("no free pair of loopback ports")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class OwnStack:
    """Kafka, Redis and Dovecot of this run alone (`create()` makes one); `close()` removes it."""

    def __init__(self, state: Path, settings: Settings) -> None:
        self.state = state
        self.settings = settings

    @classmethod
    def create(cls, kafka_libs: Path = KAFKA_LIBS) -> OwnStack:
        """A fresh state dir with the jars linked in, and settings naming free loopback ports."""
        if not (kafka_libs / ".installed").exists():
            raise RuntimeError(f"no Kafka jars in {kafka_libs}: run make setup, or pass --kafka-libs")
        state = Path(tempfile.mkdtemp(prefix="sb-faults-"))
        state.chmod(0o755)
        (state / "kafka").mkdir()
        (state / "kafka" / "libs").symlink_to(kafka_libs.resolve())
        return cls(state, load(
            state_dir=state, kafka_bootstrap=f"127.0.0.1:{free_port(pair=True)}",
            redis_url=SecretStr(f"redis://127.0.0.1:{free_port()}/0"),
            imap_port=free_port(), lmtp_port=free_port(), smtp_port=free_port()))

    def up(self, services: tuple[str, ...] = SERVICES, timeout: float = 120) -> None:
        """Start what is not running and wait until each answers."""
        local_stack.up(self.settings, services, timeout=timeout)

    def close(self) -> None:
        """Stop every service of this stack (a paused Dovecot is woken first) and remove it."""
        with contextlib.suppress(ProcessLookupError, OSError):
            self.resume_imap()
        try:
            local_stack.down(self.settings)
        finally:
            shutil.rmtree(self.state, ignore_errors=True)

    def pid(self, service: str) -> int:
        """The live PID of one of this stack's services: its PID file's, with our config in argv."""
        try:
            pid = int((self.state / "run" / f"{service}.pid").read_text().strip())
        except (OSError, ValueError) as e:
            raise RuntimeError(f"{service} of this stack has no PID file") from e
        if not _alive(pid) or os.fsencode(self.state / CONFIGS[service]) not in _argv(pid):
            raise RuntimeError(f"{service} of this stack (pid {pid}) is not running")
        return pid

    def stop_kafka(self, timeout: float = 60) -> None:
        """Stop Kafka gracefully (SIGTERM) and wait until it is gone."""
        self._signal_and_wait("kafka", signal.SIGTERM, timeout)

    def kill_redis(self, *, keep_data: bool, timeout: float = 20) -> None:
        """SIGKILL Redis; without `keep_data` its append-only files are removed too."""
        self._signal_and_wait("redis", signal.SIGKILL, timeout)
        if not keep_data:
            data = self.state / "redis" / "data"
            shutil.rmtree(data, ignore_errors=True)
            data.mkdir(parents=True)

    def imap_tree(self) -> list[int]:
        """Dovecot's master and every process under it."""
        master = self.pid("imap")
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                    children.setdefault(ppid, []).append(int(entry.name))
        tree, todo = [], [master]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(children.get(pid, []))
        return tree

    def pause_imap(self) -> list[int]:
        """SIGSTOP Dovecot's whole tree, master first so it forks nothing meanwhile."""
        tree = self.imap_tree()
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        return tree

    def resume_imap(self) -> None:
        """SIGCONT Dovecot's whole tree."""
        for pid in reversed(self.imap_tree()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def _signal_and_wait(self, service: str, sig: signal.Signals, timeout: float) -> None:
        pid = self.pid(service)
        os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{service} (pid {pid}) did not exit within {timeout:g}s")
            time.sleep(POLL_SECONDS)
        # devtools.stack started it in this process: its status() reaps the zombie
        local_stack.status(self.settings)


def _argv(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def _alive(pid: int) -> bool:
    """Running or stopped, not gone and not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
