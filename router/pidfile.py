"""PID files that name exactly one process: its id and its start time, so a reused id is never ours.

`make run` starts the router and the desk with `--pid-file`; `make stop` (`switchboard
stop FILE...`) signals the process a file names only while that same process is alive
(same id, same start time in /proc), never by a name pattern that would match another
checkout's processes.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Recorded", "read", "record", "start_time", "stop"]

POLL_SECONDS = 0.1


def start_time(pid: int) -> int | None:
    """When the process started, in clock ticks since boot (/proc/PID/stat field 22); None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name is in parentheses and may itself hold spaces or parentheses
    fields = stat.rpartition(")")[2].split()
    state, started = fields[0], fields[19]
    return None if state == "Z" else int(started)


@dataclass(frozen=True, slots=True)
class Recorded:
    """The process a PID file names."""

    pid: int
    started: int

    def alive(self) -> bool:
        """The very process that wrote the file is still running."""
        return start_time(self.pid) == self.started


def record(path: Path) -> None:
    """Write this process's PID file; it is removed when the process exits normally."""
    pid = os.getpid()
    started = start_time(pid)
    assert started is not None, "a running process has a /proc entry"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{pid} {started}\n")

    def remove() -> None:
        if read(path) == Recorded(pid, started):
            path.unlink(missing_ok=True)

    atexit.register(remove)


def read(path: Path) -> Recorded | None:
    """The process a PID file names, or None when there is no readable file."""
    try:
        pid, started = path.read_text().split()
        return Recorded(int(pid), int(started))
    except (OSError, ValueError):
        return None


def stop(path: Path, *, timeout: float = 40.0) -> str:
    """Stop the process `path` names (SIGTERM, SIGKILL at the deadline); says what happened."""
    recorded = read(path)
    if recorded is None:
        return f"{path.name}: no PID file"
    if not recorded.alive():
        path.unlink(missing_ok=True)
        return f"{path.name}: pid {recorded.pid} is no longer running"
    with contextlib.suppress(ProcessLookupError):
        os.kill(recorded.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while recorded.alive():
        if time.monotonic() >= deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(recorded.pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
        time.sleep(POLL_SECONDS)
    path.unlink(missing_ok=True)
    return f"{path.name}: stopped pid {recorded.pid}"
