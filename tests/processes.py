"""Runs real `switchboard` processes for tests and waits on them by condition, never by sleep."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from devtools.process import ROOT, child_env, free_port, readyz, spawn
from devtools.process import stop as stop_process
from tests.waiting import POLL_SECONDS

__all__ = ["ROOT", "TEST_KEY", "Switchboard", "free_port"]

# processes refuse the built-in development key; tests sign with this one unless they say
TEST_KEY = "tests-reply-token-key-not-secret"


class Switchboard:
    """One `switchboard run|worker` process with its own settings and log file."""

    def __init__(self, command: str, env: dict[str, str], log_dir: Path) -> None:
        self.command = command
        self.port = free_port()
        # only the test's own settings: none of the caller's SB_* (a developer's shell, make's
        # demo exports) may change what the process under test does
        # the test's own state dir: Faust's files land there, not in the repository or .local
        self.env = child_env({"SB_REPLY_TOKEN_KEY": TEST_KEY, "SB_STATE_DIR": str(log_dir / "state"),
                              **env, "SB_HTTP_PORT": str(self.port), "SB_LOG_JSON": "true"})
        self.log_path = log_dir / f"{command}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> Switchboard:
        """Start the process and wait until /readyz says ready."""
        self.proc = spawn(self.command, self.env, self.log_path)
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"{self.command} exited: {self.tail_log()}"
            if readyz(self.port, "test-token") == 200:
                return self
            assert time.monotonic() < deadline, f"{self.command} never ready: {self.tail_log()}"
            time.sleep(POLL_SECONDS)

    def get(self, path: str) -> tuple[int, Any]:
        """GET a path; (0, None) when nothing answers yet."""
        request = urllib.request.Request(self.url + path,
                                         headers={"Authorization": "Bearer test-token"})
        try:
            with urllib.request.urlopen(request, timeout=5) as r:
                body = r.read()
                return r.status, json.loads(body) if path != "/metrics" else body.decode()
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")
        except OSError:
            return 0, None

    def post(self, path: str, body: bytes, token: str | None = "test-token",
             headers: dict[str, str] | None = None, method: str = "POST") -> tuple[int, Any]:
        """POST (or `method`) raw bytes; returns status and decoded JSON body."""
        request = urllib.request.Request(self.url + path, data=body, method=method,
                                         headers={"Content-Type": "application/json",
                                                  **(headers or {})})
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 60) -> int:
        """Signal the process and wait for it to exit; returns its exit code."""
        assert self.proc is not None
        # a process that ignored the signal fails the test, and never outlives it
        return stop_process(self.proc, sig, timeout)

    async def reply(self, conversation_id: str, text: str, author: str = "maria",
                    timeout: float = 60) -> tuple[int, Any]:
        """POST an agent's reply once the conversation is known (dispatch writes its card after routing)."""
        body = json.dumps({"text": text, "author": author}).encode()
        deadline = time.monotonic() + timeout
        while True:
            status, answer = await asyncio.to_thread(
                self.post, f"/v1/conversations/{conversation_id}/replies", body)
            if status != 404:
                return status, answer
            assert time.monotonic() < deadline, f"conversation {conversation_id} never became known"
            await asyncio.sleep(POLL_SECONDS)

    def tail_log(self, lines: int = 30) -> str:
        """The last lines of the process's log, for failure messages."""
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
