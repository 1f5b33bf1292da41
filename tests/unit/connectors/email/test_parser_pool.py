"""ParserPool: mail parsed in worker processes, each mail under a CPU-time limit; the reader's use of it."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from connectors.base import Arrival
from connectors.email.imap import Fetched
from connectors.email.inbound import EmailCursor, _Reader, _Stopped, cursor_key
from connectors.email.parse import MAX_DEPTH, parse_email
from connectors.email.parser_pool import ParserPool
from connectors.email.settings import ImapAccount
from schemas.deadletter import DeadLetter
from schemas.errors import ParseError, TransientError
from schemas.inbound import InboundMessage
from tests.paths import FIXTURES
from tests.waiting import POLL_SECONDS

EMAIL = FIXTURES / "email"
WHEN = datetime(2024, 3, 15, 12, 0, tzinfo=UTC)
SMALL = b"From: ada@example.org\nSubject: next\nMessage-ID: <next@example.org>\n\nStill here.\n"


def _deep_and_long(lines: int) -> bytes:
    """The deepest nest the guard allows, over many short lines: every line costs MAX_DEPTH checks."""
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (level, level)
        for level in range(MAX_DEPTH)
    )
    return (b"From: slow@example.com\nMIME-Version: 1.0\n" + opening
            + b"Content-Type: text/plain\n\n" + b"x\n" * lines)


# run in the worker process, so they must be importable module-level functions


def burn_cpu_in_c(raw: bytes, **options: Any) -> InboundMessage:
    """Spin in one long C call that no Python signal handler can interrupt."""
    hashlib.pbkdf2_hmac("sha256", raw, b"salt", 10**9)
    return parse_email(raw, **options)


def announce_and_spin(raw: bytes, marker: str, **options: Any) -> InboundMessage:
    """Say the mail has arrived, then work on it for as long as the CPU limit allows."""
    Path(marker).touch()
    while True:
        pass


def die(raw: bytes, **options: Any) -> InboundMessage:
    """Exit the worker as a crash would, for mails that ask for it."""
    if raw.startswith(b"From: crash"):
        os._exit(3)
    return parse_email(raw, **options)


@pytest.fixture
async def pool() -> AsyncIterator[ParserPool]:
    pool = ParserPool(workers=1, cpu_seconds=0.05)
    pool.start()
    yield pool
    await pool.stop()


async def test_a_mail_parses_in_a_worker_as_it_does_inline(pool: ParserPool) -> None:
    raw = (EMAIL / "outlook_reply.eml").read_bytes()
    options = {"account": "support@acme.test", "received_at": WHEN}
    assert await pool.parse(raw, **options) == parse_email(raw, **options)


async def test_a_refusal_comes_back_as_a_parse_error_and_keeps_the_worker(pool: ParserPool) -> None:
    before = pool.pids()
    refused = await pool.parse(b"%PDF-1.7\n", received_at=WHEN)
    assert isinstance(refused, ParseError) and "does not start with a header" in refused.reason
    assert pool.pids() == before


async def test_a_mail_over_the_cpu_limit_is_refused_and_the_next_flows(pool: ParserPool) -> None:
    before = pool.pids()
    # seconds of parsing (20 boundary checks on each of 500,000 lines) against a 0.05 s limit
    slow = await pool.parse(_deep_and_long(500_000), received_at=WHEN)
    assert isinstance(slow, ParseError)
    assert slow.reason == "parsing took longer than 0.05 s"
    assert pool.pids() != before  # the worker was replaced
    following = await pool.parse(SMALL, received_at=WHEN)
    assert isinstance(following, InboundMessage) and following.text == "Still here."


async def test_a_worker_stuck_in_c_code_is_stopped_by_the_kernel_limit() -> None:
    pool = ParserPool(workers=1, cpu_seconds=0.05, parse=burn_cpu_in_c)
    pool.start()
    try:
        stuck = await pool.parse(SMALL, received_at=WHEN)
        assert isinstance(stuck, ParseError)
        assert stuck.reason == "parsing took longer than 0.05 s"
        assert len(pool.pids()) == 1
    finally:
        await pool.stop()


async def test_a_worker_that_dies_costs_only_its_mail() -> None:
    pool = ParserPool(workers=1, cpu_seconds=5.0, parse=die)
    pool.start()
    try:
        crashed = await pool.parse(b"From: crash@example.com\n\nboom\n", received_at=WHEN)
        assert isinstance(crashed, ParseError)
        assert crashed.reason == "the parser process died (exit code 3) on this mail"
        following = await pool.parse(SMALL, received_at=WHEN)
        assert isinstance(following, InboundMessage) and following.text == "Still here."
    finally:
        await pool.stop()


async def test_stop_ends_every_worker_and_a_stopped_pool_refuses_work() -> None:
    pool = ParserPool(workers=2, cpu_seconds=5.0)
    pool.start()
    workers = list(pool._all)
    assert len(workers) == 2
    await pool.stop()
    await pool.stop()
    assert all(not w.process.is_alive() for w in workers)
    with pytest.raises(RuntimeError, match="not started"):
        await pool.parse(SMALL)


async def test_a_mail_cut_off_by_stop_is_not_dead_lettered(tmp_path: Path) -> None:
    pool = ParserPool(workers=1, cpu_seconds=60.0, parse=announce_and_spin)
    pool.start()
    marker = tmp_path / "parsing"
    busy = asyncio.create_task(pool.parse(SMALL, marker=str(marker)))
    deadline = time.monotonic() + 30.0
    while not marker.exists():
        assert time.monotonic() < deadline, "the worker never started on the mail"
        await asyncio.sleep(POLL_SECONDS)
    await pool.stop()
    # the mail was not refused: it stays uncommitted and is read again after a restart
    with pytest.raises(TransientError, match="stopped"):
        await busy


class _NoCursors:
    async def load(self, key: str) -> str | None:
        return None

    async def save(self, key: str, value: str) -> None:
        raise AssertionError("handing out commits nothing")


async def test_the_reader_dead_letters_a_slow_mail_with_its_cursor_and_hands_out_the_next(
        pool: ParserPool) -> None:
    account = ImapAccount(name="main", host="imap.example.org", username="support@acme.test",
                          password=SecretStr("secret"))
    queue: asyncio.Queue[Arrival | _Stopped] = asyncio.Queue()
    reader = _Reader(account, _NoCursors(), queue, pool)
    slow = _deep_and_long(500_000)
    await reader._hand_out(7, Fetched(uid=41, size=len(slow)), slow, True)
    await reader._hand_out(7, Fetched(uid=42, size=len(SMALL), arrived=WHEN), SMALL, True)
    first, second = queue.get_nowait(), queue.get_nowait()
    assert isinstance(first, Arrival) and isinstance(second, Arrival)
    assert isinstance(first.item, DeadLetter)
    assert first.item.reason == "parsing took longer than 0.05 s"
    assert first.item.original == slow[: len(first.item.original)]
    assert first.cursor == EmailCursor("main", cursor_key(account), 7, 41)
    assert isinstance(second.item, InboundMessage) and second.item.text == "Still here."
    assert second.item.received_at == WHEN
    assert second.item.raw_ref == ("imap://support%40acme.test@imap.example.org:993/INBOX"
                                   ";UIDVALIDITY=7/;UID=42")
    assert second.cursor == EmailCursor("main", cursor_key(account), 7, 42)
