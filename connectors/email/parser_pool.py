"""Mail is parsed off the event loop, in a few worker processes, each mail under a CPU-time limit.

    pool = ParserPool(workers=1, cpu_seconds=10.0)   # no I/O
    pool.start()                                     # spawns the worker processes
    result = await pool.parse(raw, account=..., max_bytes=..., received_at=...)
    await pool.stop()

`parse` returns the InboundMessage or the ParseError (it never raises one), so the caller
dead-letters it like any other refusal. A worker is a `spawn`ed process (it inherits
neither the router's threads nor its sockets) that parses one mail at a time. Before
each mail it limits its own CPU time twice: a profiling timer (ITIMER_PROF) interrupts
Python code after `cpu_seconds`, and the kernel's RLIMIT_CPU kills the process a second
or two later if it is stuck in a C call the timer cannot interrupt. Either way the mail
becomes ParseError("parsing took longer than N s") and the worker is replaced, so the
next mail flows. CPU time, not wall time, so a busy machine does not refuse good mail;
a wall-clock deadline in the parent (several times the limit) only covers a worker that
neither answers nor runs. A worker that dies any other way (OOM killer, a crash) turns
its mail into a ParseError too: bad input never stops the line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import multiprocessing
import resource
import signal
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

from prometheus_client import Counter

from connectors.email.parse import parse_email
from schemas.errors import ParseError, TransientError
from schemas.inbound import InboundMessage

__all__ = ["ParseFunction", "ParserPool"]

log = logging.getLogger(__name__)

# the pure parser a worker runs: raw bytes and keyword options in, an InboundMessage out
ParseFunction = Callable[..., InboundMessage]

REPLACED = Counter("sb_email_parser_replaced_total",
                   "Parser worker processes replaced, by why", ["why"])

# the kernel's limit is whole seconds: it fires this long after the timer should have
_KILL_AFTER_SECONDS = 2
_CONTEXT = multiprocessing.get_context("spawn")


# a BaseException, so that no "except Exception" in the parser can swallow it
class _OverTime(BaseException):
    """Raised in a worker by SIGPROF when the mail's CPU time is spent."""


def _over_time(signum: int, frame: FrameType | None) -> None:
    raise _OverTime


def _arm(cpu_seconds: float) -> None:
    """Limit the CPU time of the next parse: the timer, then the kernel's hard stop."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    stop = math.ceil(usage.ru_utime + usage.ru_stime + cpu_seconds) + _KILL_AFTER_SECONDS
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        stop = min(stop, hard)
    # where the limit cannot be set, the timer and the parent's deadline still apply
    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_CPU, (stop, hard))
    signal.setitimer(signal.ITIMER_PROF, cpu_seconds)


def _disarm() -> None:
    signal.setitimer(signal.ITIMER_PROF, 0)


def _parse_one(parse: ParseFunction, raw: bytes, options: dict[str, Any],
               cpu_seconds: float) -> tuple[str, Any]:
    """One mail: ("ok", message), ("refused", reason) or ("overtime", None)."""
    try:
        _arm(cpu_seconds)
        try:
            message = parse(raw, **options)
        finally:
            _disarm()
    except _OverTime:
        return "overtime", None
    except ParseError as e:
        return "refused", e.reason
    return "ok", message


def _serve(conn: Connection, parse: ParseFunction, cpu_seconds: float) -> None:
    """A worker's life: parse each mail the parent sends until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers end
    signal.signal(signal.SIGPROF, _over_time)
    while True:
        try:
            raw, options = conn.recv()
        except EOFError:
            return
        outcome = _parse_one(parse, raw, options, cpu_seconds)
        conn.send(outcome)
        if outcome[0] == "overtime":
            return  # half-done work may have left anything behind: the parent makes a new one


@dataclass(eq=False)  # each worker is itself: kept in a set by identity
class _Worker:
    """One worker process and the parent's end of its pipe."""

    process: BaseProcess
    conn: Connection
    _waiting: asyncio.Future[None] | None = None

    async def answer(self) -> Any:
        """The worker's answer to the mail it was sent; EOFError if it died or was ended."""
        loop = asyncio.get_running_loop()
        self._waiting = loop.create_future()
        fd = self.conn.fileno()
        loop.add_reader(fd, self._wake)  # wait for the pipe without blocking the loop
        try:
            await self._waiting
        finally:
            loop.remove_reader(fd)
            self._waiting = None
        if not self.conn.poll():
            raise EOFError("the worker was ended")
        return self.conn.recv()

    def _wake(self) -> None:
        if self._waiting is not None and not self._waiting.done():
            self._waiting.set_result(None)

    async def end(self) -> None:
        """Kill the process and reap it; a task waiting for its answer gets EOFError."""
        self.process.kill()
        self._wake()  # before the pipe closes: a closed descriptor would never wake it
        await asyncio.to_thread(self.process.join, 5.0)
        self.conn.close()


class ParserPool:
    """A few worker processes that parse mail, made once per connector at start()."""

    def __init__(self, *, workers: int, cpu_seconds: float,
                 parse: ParseFunction = parse_email) -> None:
        self.workers = workers
        self.cpu_seconds = cpu_seconds
        # a worker that neither answers nor runs (stopped, swapped out) is given up on after
        self.wall_seconds = 4 * cpu_seconds + 10.0
        self._parse = parse
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._all: set[_Worker] = set()
        self._started = False

    def start(self) -> None:
        """Spawn the worker processes (they import the parser while the caller goes on)."""
        if self._started:
            return
        self._idle = asyncio.Queue()
        for _ in range(self.workers):
            self._idle.put_nowait(self._spawn())
        self._started = True

    async def stop(self) -> None:
        """End every worker, busy or idle; safe to call twice."""
        self._started = False
        workers, self._all = list(self._all), set()
        await asyncio.gather(*(w.end() for w in workers))

    def pids(self) -> list[int | None]:
        """The process ids of the current workers (for diagnostics and tests)."""
        return [w.process.pid for w in self._all]

    async def parse(self, raw: bytes, **options: Any) -> InboundMessage | ParseError:
        """Parse one mail in a worker: the message, or the ParseError that refused it."""
        if not self._started:
            raise RuntimeError("the parser pool is not started")
        worker = await self._idle.get()
        try:
            status, value = await self._exchange(worker, raw, options)
        except BaseException:  # cancelled mid-mail: that worker's state is unknown
            await self._replace(worker, "cancelled")
            raise
        if status in ("ok", "refused"):
            self._idle.put_nowait(worker)
            return value if isinstance(value, InboundMessage) else ParseError(str(value))
        await self._replace(worker, status)
        if not self._started:  # stopped under this mail: it is read again after a restart
            raise TransientError("the email parser pool was stopped")
        return ParseError(str(value))

    async def _exchange(self, worker: _Worker, raw: bytes,
                        options: dict[str, Any]) -> tuple[str, Any]:
        """Send one mail, wait for the answer; ("overtime" | "died", reason) when none comes."""
        over = f"parsing took longer than {self.cpu_seconds:g} s"
        try:
            async with asyncio.timeout(self.wall_seconds):
                # a 25 MB mail fills the pipe many times over: not on the event loop
                await asyncio.to_thread(worker.conn.send, (raw, options))
                status, value = await worker.answer()
        except TimeoutError:
            return "overtime", over
        except (EOFError, OSError):
            await asyncio.to_thread(worker.process.join, 5.0)
            code = worker.process.exitcode
            if code == -signal.SIGXCPU:  # the kernel's CPU limit
                return "overtime", over
            return "died", f"the parser process died (exit code {code}) on this mail"
        if status == "overtime":
            return "overtime", over
        return status, value

    async def _replace(self, worker: _Worker, why: str) -> None:
        """End a worker and put a fresh one in its place (unless the pool is stopping)."""
        REPLACED.labels(why).inc()
        log.warning("email: parser worker %s replaced (%s)", worker.process.pid, why)
        self._all.discard(worker)
        await worker.end()
        if self._started:
            self._idle.put_nowait(self._spawn())

    def _spawn(self) -> _Worker:
        ours, theirs = _CONTEXT.Pipe(duplex=True)
        process = _CONTEXT.Process(target=_serve, args=(theirs, self._parse, self.cpu_seconds),
                                   name="email-parser", daemon=True)
        process.start()
        theirs.close()  # the child holds its own copy: EOF reaches us when it dies
        worker = _Worker(process, ours)
        self._all.add(worker)
        return worker
