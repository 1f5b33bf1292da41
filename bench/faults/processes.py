"""The real `switchboard run|worker` processes, and the harness playing their supervisor.

Each role keeps its HTTP port across restarts (the load generator posts to the edge's).
The supervisor restarts a process as soon as it is gone, like systemd's Restart=always;
an exit the harness did not cause is recorded as a crash, with the tail of its log.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.faults.stack import free_port
from router.settings import ROOT

__all__ = ["Crash", "Process", "Supervisor"]

POLL_SECONDS = 0.05
RESTART_SECONDS = 0.2  # what a supervisor waits before starting a dead process again


@dataclass(frozen=True)
class Crash:
    """An exit nobody asked for."""

    role: str
    at: float
    returncode: int
    log_tail: str


@dataclass
class Process:
    """One switchboard process of a role (edge, worker, sender), started again after each death."""

    role: str
    command: str  # run | worker
    env: dict[str, str]
    log_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: list[float] = field(default_factory=list)
    killing: bool = False

    @property
    def url(self) -> str:
        """Where its HTTP server listens."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """Its log, appended to across restarts."""
        return self.log_dir / f"{self.role}.log"

    def start(self) -> None:
        """Start it (again)."""
        env = {**os.environ, **self.env, "SB_HTTP_PORT": str(self.port), "SB_LOG_JSON": "true",
               "PYTHONPATH": str(ROOT)}
        with self.log_path.open("ab") as log:
            log.write(f"--- start {time.strftime('%H:%M:%S')} ---\n".encode())
            log.flush()
            self.proc = subprocess.Popen([sys.executable, "-m", "router.cli", self.command], env=env,
                                         cwd=ROOT, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        self.starts.append(time.time())

    def alive(self) -> bool:
        """Whether its current process runs."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: signal.Signals = signal.SIGKILL, timeout: float = 30) -> None:
        """Signal it, marked as the harness's doing, and wait until it is gone."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.killing = True
        self.proc.send_signal(sig)
        self.proc.wait(timeout=timeout)

    async def ready(self, session: aiohttp.ClientSession) -> bool:
        """Whether /readyz answers 200 now."""
        try:
            async with session.get(self.url + "/readyz", timeout=aiohttp.ClientTimeout(total=3)) as r:
                return r.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    def tail(self, lines: int = 25) -> str:
        """The last lines of its log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Supervisor:
    """Keeps every process running: a dead one is started again at once; crashes are kept."""

    def __init__(self, processes: list[Process]) -> None:
        self.processes = {p.role: p for p in processes}
        self.crashes: list[Crash] = []
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def __getitem__(self, role: str) -> Process:
        return self.processes[role]

    async def start(self, timeout: float = 180) -> None:
        """Start every process and wait until each says it is ready."""
        for p in self.processes.values():
            p.start()
        if await self.wait_ready(list(self.processes.values()), timeout) is None:
            tails = "\n".join(f"--- {p.role}:\n{p.tail()}" for p in self.processes.values())
            raise RuntimeError(f"the processes were not ready within {timeout:g}s\n{tails}")
        self._task = asyncio.create_task(self._watch())

    async def wait_ready(self, processes: list[Process], timeout: float) -> float | None:
        """Wait until each process answers /readyz 200; seconds it took, None at the deadline."""
        began = time.monotonic()
        async with aiohttp.ClientSession() as session:
            for p in processes:
                while not await p.ready(session):
                    if time.monotonic() - began > timeout:
                        return None
                    await asyncio.sleep(POLL_SECONDS * 4)
        return time.monotonic() - began

    async def _watch(self) -> None:
        while not self._stopping:
            for p in self.processes.values():
                if p.proc is not None and p.proc.poll() is not None:
                    if not p.killing:
                        self.crashes.append(Crash(p.role, time.time(), p.proc.returncode, p.tail()))
                    p.killing = False
                    await asyncio.sleep(RESTART_SECONDS)
                    p.start()
            await asyncio.sleep(POLL_SECONDS)

    async def stop(self, timeout: float = 60) -> dict[str, int | None]:
        """Stop supervising, then SIGTERM every process; their exit codes (None: had to kill)."""
        self._stopping = True
        if self._task is not None:
            await self._task
        codes: dict[str, int | None] = {}
        for p in self.processes.values():
            if p.proc is None or p.proc.poll() is not None:
                codes[p.role] = p.proc.returncode if p.proc else None
                continue
            p.proc.send_signal(signal.SIGTERM)
            try:
                codes[p.role] = await asyncio.to_thread(p.proc.wait, timeout)
            except subprocess.TimeoutExpired:
                p.proc.kill()
                await asyncio.to_thread(p.proc.wait, 10)
                codes[p.role] = None
        return codes
