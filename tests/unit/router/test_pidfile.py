"""`make stop` by PID file: exactly the process that wrote the file, never a stranger with its id."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from router.pidfile import Recorded, read, record, start_time, stop
from tests.paths import ROOT as REPO

RECORDER = """
import sys, time
from pathlib import Path
from router.pidfile import record
record(Path(sys.argv[1]))
print("ready", flush=True)
time.sleep(600)
"""


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """A process that is not ours to stop; it must survive every test."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield proc
    assert proc.poll() is None, "a process nobody recorded was stopped"
    proc.kill()
    proc.wait()


def start_recorder(path: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", RECORDER, str(path)], stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    return proc


def test_stop_ends_the_recorded_process_and_removes_its_file(tmp_path: Path,
                                                              stranger: subprocess.Popen[bytes]) -> None:
    path = tmp_path / "run" / "router.pid"
    proc = start_recorder(path)
    assert read(path) == Recorded(proc.pid, start_time(proc.pid) or -1)
    assert stop(path, timeout=10) == f"router.pid: stopped pid {proc.pid}"
    assert proc.wait(timeout=10) == -15  # SIGTERM
    assert not path.exists()


def test_a_reused_pid_is_not_signalled(tmp_path: Path, stranger: subprocess.Popen[bytes]) -> None:
    # the file names the stranger's id, but a start time that is not the stranger's
    path = tmp_path / "desk.pid"
    started = start_time(stranger.pid)
    assert started is not None
    path.write_text(f"{stranger.pid} {started - 1}\n")
    assert stop(path) == f"desk.pid: pid {stranger.pid} is no longer running"
    assert not path.exists()


def test_no_file_and_a_garbled_file_stop_nothing(tmp_path: Path, stranger: subprocess.Popen[bytes]) -> None:
    assert stop(tmp_path / "none.pid") == "none.pid: no PID file"
    garbled = tmp_path / "garbled.pid"
    garbled.write_text(f"{stranger.pid}\n")
    assert stop(garbled) == "garbled.pid: no PID file"


def test_a_clean_exit_removes_its_own_file(tmp_path: Path) -> None:
    path = tmp_path / "worker.pid"
    subprocess.run([sys.executable, "-c", f"from pathlib import Path; from router.pidfile import record; "
                    f"record(Path({str(path)!r}))"], check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert not path.exists()


def test_record_names_this_process(tmp_path: Path) -> None:
    path = tmp_path / "me.pid"
    record(path)
    assert read(path) == Recorded(os.getpid(), start_time(os.getpid()) or -1)
    assert read(path) is not None and read(path).alive()  # type: ignore[union-attr]


def test_make_stop_uses_pid_files_never_a_name_pattern() -> None:
    makefile = (REPO / "Makefile").read_text()
    stop_rule = makefile.split("\nstop:")[1].split("\n\n")[0]
    assert "pkill" not in makefile and "killall" not in makefile
    assert "switchboard stop $(PID_FILES)" in stop_rule and "stack down" in stop_rule
