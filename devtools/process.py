"""A `switchboard` command as a child process: its own settings only, ready when /readyz says so.

Shared by the tests' process helper (tests/processes.py) and the simulated day
(bench/day/run.py), which starts its router on a faked clock.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

__all__ = ["ROOT", "child_env", "free_port", "readyz", "spawn", "stop"]

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(own: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment without any SB_* (a developer's shell must not leak in), plus `own`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("SB_")}, **own}


def spawn(command: str, env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`python -m router.cli COMMAND` from the repository, its output appended to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "router.cli", command], env=dict(env), cwd=ROOT,
                                stdout=out, stderr=out, stdin=subprocess.DEVNULL)


def readyz(port: int, token: str | None = None) -> int:
    """The status /readyz answers on `port`; 0 while nothing answers."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/readyz")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def stop(proc: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM, timeout: float = 60) -> int:
    """Signal the process and wait for it; one that ignores the signal is killed, and the wait raises."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        raise
