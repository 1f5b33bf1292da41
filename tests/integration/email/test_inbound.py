"""EmailInbound against the real Dovecot: IDLE push, polling, cursors, UIDVALIDITY, bad mail."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from connectors.email.errors import ImapError
from connectors.email.imap import DEADLETTER_BYTES
from connectors.email.inbound import EmailCursor, EmailInbound, cursor_key
from connectors.email.settings import EmailSettings, ImapAccount
from schemas.deadletter import DeadLetter
from schemas.errors import AuthError, ConfigError
from schemas.inbound import EmailExtras, InboundMessage
from tests.integration.email.conftest import (
    PASSWORD,
    USER,
    Certificate,
    Collector,
    Mailbox,
    MemoryCursors,
    deliver_lmtp,
    eventually,
    eventually_true,
    free_port,
    make_mail,
)

pytestmark = pytest.mark.integration

Start = Callable[..., Awaitable[EmailInbound]]
Collect = Callable[..., Collector]
Account = Callable[..., ImapAccount]


def source_for(acc: ImapAccount) -> EmailInbound:
    """A source of one account, not started."""
    return EmailInbound(EmailSettings(accounts=(acc,), token_key=SecretStr("k")), MemoryCursors())


def subjects(deliveries: list) -> list[str | None]:  # type: ignore[type-arg]
    return [d.item.subject if isinstance(d.item, InboundMessage) else "<dead>" for d in deliveries]


async def test_idle_pushes_new_mail_within_a_second(
        folder: Mailbox, account: Account, inbounds: Start, collectors: Collect) -> None:
    # polling every 10 minutes: only IDLE can bring these mails in time
    acc = account(folder.name, poll_seconds=600.0)
    source = await inbounds(acc, cursors=MemoryCursors())
    got = collectors(source)
    delays = []
    for i in range(5):
        await eventually(lambda: source.states()[acc.name] == "idle", what="reader idling")
        await folder.append(make_mail(f"push {i}"))
        appended = time.monotonic()
        await got.wait_for(i + 1, timeout=10.0)
        delays.append(time.monotonic() - appended)
    assert subjects(got.got) == [f"push {i}" for i in range(5)]
    assert max(delays) < 5.0, delays
    print(f"\nIDLE delay after APPEND: median {statistics.median(delays) * 1000:.0f} ms, "
          f"max {max(delays) * 1000:.0f} ms over {len(delays)} mails")


async def test_delivered_message_is_parsed_and_points_back_to_the_mailbox(
        folder: Mailbox, account: Account, inbounds: Start, collectors: Collect) -> None:
    await folder.append(make_mail("Where is my order?", message_id="<order-42@example.org>"))
    acc = account(folder.name)
    cursors = MemoryCursors()
    source = await inbounds(acc, cursors=cursors)
    [delivery] = await collectors(source).wait_for(1)
    message = delivery.item
    assert isinstance(message, InboundMessage)
    assert message.channel == "email" and message.native_id == "order-42@example.org"
    assert message.sender.value == "ada@example.org"
    assert isinstance(message.extras, EmailExtras) and message.extras.account == USER
    validity = await folder.uidvalidity()
    user = USER.replace("@", "%40")
    assert message.raw_ref == (f"imap://{user}@127.0.0.1:{acc.port}/{folder.name}"
                               f";UIDVALIDITY={validity}/;UID=1")
    assert delivery.cursor == EmailCursor(acc.name, cursor_key(acc), validity, 1)
    # read with PEEK and committed: still unseen, because mark_seen is off
    await eventually(lambda: bool(cursors.saves), what="commit")
    assert "\\Seen" not in (await folder.flags())[1]


async def test_polls_when_idle_is_off(
        folder: Mailbox, account: Account, inbounds: Start, collectors: Collect) -> None:
    acc = account(folder.name, idle=False, poll_seconds=0.2)
    source = await inbounds(acc, cursors=MemoryCursors())
    got = collectors(source)
    await eventually(lambda: source.states()[acc.name] == "polling", what="reader polling")
    await folder.append(make_mail("polled"))
    await got.wait_for(1, timeout=5.0)
    assert subjects(got.got) == ["polled"]
    assert source.states()[acc.name] in ("polling", "fetching")


async def test_accounts_are_merged_into_one_stream(
        folder: Mailbox, imap_port: int, account: Account, inbounds: Start,
        collectors: Collect) -> None:
    other = Mailbox(imap_port, f"{folder.name}-b")
    await other.create()
    try:
        first, second = account(folder.name), account(other.name, idle=False, poll_seconds=0.2)
        source = await inbounds(first, second, cursors=MemoryCursors())
        got = collectors(source)
        await folder.append(make_mail("to a"))
        await other.append(make_mail("to b"))
        await got.wait_for(2)
        assert sorted(subjects(got.got)) == ["to a", "to b"]  # type: ignore[type-var]
        assert {d.cursor.account for d in got.got} == {first.name, second.name}
    finally:
        await other.delete()


async def test_mail_delivered_over_lmtp_reaches_an_idling_inbox(
        stack: object, account: Account, inbounds: Start, collectors: Collect) -> None:
    """INBOX is shared with other tests: start from its current end and look for our mail."""
    inbox = Mailbox(account("INBOX").port, "INBOX")
    validity = await inbox.uidvalidity()
    last = max((await inbox.flags()).keys(), default=0)
    acc = account("INBOX")
    cursors = MemoryCursors()
    cursors.values[cursor_key(acc)] = f"{validity}:{last}"
    source = await inbounds(acc, cursors=cursors)
    got = collectors(source)
    await eventually(lambda: source.states()[acc.name] == "idle", what="reader idling")
    mid = f"lmtp-{uuid.uuid4().hex}@example.org"
    lmtp_port = stack.lmtp_port  # type: ignore[attr-defined]
    await asyncio.to_thread(deliver_lmtp, lmtp_port, make_mail("via LMTP", message_id=f"<{mid}>"))
    await eventually(lambda: any(isinstance(d.item, InboundMessage) and d.item.native_id == mid
                                 for d in got.got), timeout=10.0, what="the LMTP mail")
    assert all(d.cursor.uid > last for d in got.got)


async def test_restart_resumes_after_the_last_commit(
        folder: Mailbox, account: Account, inbounds: Start, collectors: Collect) -> None:
    await folder.append(*(make_mail(f"m{i}") for i in range(10)))
    acc = account(folder.name, fetch_batch=3)
    cursors = MemoryCursors()
    first = await inbounds(acc, cursors=cursors)
    reading = collectors(first, commit=False)
    got = await reading.wait_for(4)
    for delivery in got[:3]:  # the 4th was handed out but never reached Kafka
        await first.commit(delivery.cursor)
    await first.stop()
    await eventually(reading.task.done, what="messages() ends after stop()")
    assert reading.error is None
    validity = await folder.uidvalidity()
    assert cursors.values[cursor_key(acc)] == f"{validity}:3"

    second = await inbounds(acc, cursors=cursors)
    rest = collectors(second)
    await rest.wait_for(7)
    await folder.append(make_mail("after restart"))
    await rest.wait_for(8)
    # in UID order, so a repeat would have shown up before the new mail
    assert subjects(rest.got) == [f"m{i}" for i in range(3, 10)] + ["after restart"]
    assert cursors.values[cursor_key(acc)] == f"{validity}:11"


async def test_uidvalidity_change_between_runs_reads_the_new_mailbox(
        folder: Mailbox, account: Account, inbounds: Start, collectors: Collect) -> None:
    await folder.append(*(make_mail(f"old {i}") for i in range(3)))
    acc = account(folder.name)
    cursors = MemoryCursors()
    first = await inbounds(acc, cursors=cursors)
    await collectors(first).wait_for(3)
    await first.stop()
    old = await folder.uidvalidity()
    await folder.delete()
    await folder.create()
    new = await folder.uidvalidity()
    assert new != old
    # UIDs 1 and 2 again, below the saved UID 3: only the validity tells them apart
    await folder.append(make_mail("new 0"), make_mail("new 1"))
    second = await inbounds(acc, cursors=cursors)
    got = collectors(second)
    await got.wait_for(2)
    assert subjects(got.got) == ["new 0", "new 1"]
    assert [(d.cursor.uidvalidity, d.cursor.uid) for d in got.got] == [(new, 1), (new, 2)]
    assert cursors.values[cursor_key(acc)] == f"{new}:2"


async def test_uidvalidity_change_while_running_is_followed(
        folder: Mailbox, account: Account, inbounds: Start, collectors: Collect) -> None:
    await folder.append(*(make_mail(f"old {i}") for i in range(3)))
    acc = account(folder.name)
    source = await inbounds(acc, cursors=MemoryCursors())
    got = collectors(source)
    await got.wait_for(3)
    await eventually(lambda: source.states()[acc.name] == "idle", what="reader idling")
    await folder.delete()
    await folder.create()
    await folder.append(make_mail("new 0"))
    await got.wait_for(4, timeout=30.0)
    assert subjects(got.got) == ["old 0", "old 1", "old 2", "new 0"]
    assert got.got[3].cursor.uidvalidity == await folder.uidvalidity()
    assert got.got[3].cursor.uid == 1


async def test_backlog_is_fetched_in_bounded_batches(
        folder: Mailbox, account: Account, inbounds: Start, collectors: Collect) -> None:
    await folder.append(*(make_mail(f"backlog {i:03d}") for i in range(300)))
    acc = account(folder.name, fetch_batch=50)
    started = time.monotonic()
    source = await inbounds(acc, cursors=MemoryCursors())
    got = collectors(source)
    await got.wait_for(1)
    await folder.append(make_mail("late"))  # arrives while the backlog is being read
    await got.wait_for(301, timeout=60.0)
    took = time.monotonic() - started
    assert subjects(got.got) == [f"backlog {i:03d}" for i in range(300)] + ["late"]
    assert [d.cursor.uid for d in got.got] == list(range(1, 302))
    labels = {"account": acc.name}
    batches = REGISTRY.get_sample_value("sb_email_fetch_batch_count", labels)
    within = REGISTRY.get_sample_value("sb_email_fetch_batch_bucket", {**labels, "le": "50.0"})
    fetched = REGISTRY.get_sample_value("sb_email_fetch_batch_sum", labels)
    assert fetched == 301 and batches is not None and batches >= 7 and within == batches
    print(f"\n301 mails in {batches:.0f} fetches of <= 50 in {took:.2f}s")


async def test_unparseable_mail_is_dead_lettered_and_the_next_flows(
        folder: Mailbox, account: Account, inbounds: Start, collectors: Collect) -> None:
    garbage = b"this is not a mail at all\r\nno header anywhere\r\n"
    await folder.append(garbage, make_mail("fine"))
    acc = account(folder.name)
    cursors = MemoryCursors()
    source = await inbounds(acc, cursors=cursors)
    dead, fine = await collectors(source).wait_for(2)
    assert isinstance(dead.item, DeadLetter)
    assert dead.item.stage == "email" and dead.item.channel == "email"
    assert dead.item.original == garbage and "RFC 822" in dead.item.reason
    assert dead.cursor.uid == 1
    assert isinstance(fine.item, InboundMessage) and fine.item.subject == "fine"
    validity = await folder.uidvalidity()
    await eventually(lambda: cursors.values.get(cursor_key(acc)) == f"{validity}:2", what="commit")


async def test_oversized_mail_is_dead_lettered_truncated_without_fetching_it_whole(
        folder: Mailbox, account: Account, inbounds: Start, collectors: Collect) -> None:
    big = make_mail("huge", body="x" * 1_500_000)
    await folder.append(big, make_mail("small"))
    acc = account(folder.name, max_message_bytes=1024 * 1024)
    source = await inbounds(acc, cursors=MemoryCursors())
    dead, small = await collectors(source).wait_for(2)
    assert isinstance(dead.item, DeadLetter)
    assert dead.item.original == big[:DEADLETTER_BYTES]
    assert f"limit is {1024 * 1024}" in dead.item.reason
    assert f"truncated to the first {DEADLETTER_BYTES}" in dead.item.reason
    assert isinstance(small.item, InboundMessage) and small.item.subject == "small"


async def test_mark_seen_and_move_happen_only_after_commit(
        folder: Mailbox, imap_port: int, account: Account, inbounds: Start,
        collectors: Collect) -> None:
    done = Mailbox(imap_port, f"{folder.name}-done")
    await done.create()
    try:
        await folder.append(make_mail("handle me"), make_mail("and me"))
        acc = account(folder.name, mark_seen=True, move_to=done.name)
        source = await inbounds(acc, cursors=MemoryCursors())
        reading = collectors(source, commit=False)
        first, second = await reading.wait_for(2)
        assert all("\\Seen" not in f for f in (await folder.flags()).values())
        await source.commit(first.cursor)

        async def moved(count: int) -> bool:
            return len(await done.flags()) == count

        await eventually_true(lambda: moved(1), timeout=10.0, what="first mail moved")
        left, there = await folder.flags(), await done.flags()
        assert list(left) == [2] and "\\Seen" not in left[2]
        assert [("\\Seen" in f) for f in there.values()] == [True]
        await source.commit(second.cursor)
        await eventually_true(lambda: moved(2), timeout=10.0, what="second mail moved")
        assert await folder.flags() == {}
    finally:
        await done.delete()


async def test_wrong_password_is_an_auth_error_naming_the_account(account: Account) -> None:
    acc = account("INBOX", password=SecretStr("not-the-password"))
    source = source_for(acc)
    with pytest.raises(AuthError) as refused:
        await source.start()
    assert acc.name in str(refused.value) and "not-the-password" not in str(refused.value)
    assert PASSWORD not in str(refused.value)
    await source.stop()


async def test_missing_mailbox_is_a_config_error(account: Account) -> None:
    source = source_for(account(f"sb-missing-{uuid.uuid4().hex[:8]}"))
    with pytest.raises(ConfigError, match="does not exist"):
        await source.start()
    await source.stop()


async def test_unreachable_server_is_transient_at_start(account: Account) -> None:
    source = source_for(account("INBOX", port=free_port(), timeout=2.0))
    with pytest.raises(ImapError, match="connect"):
        await source.start()
    await source.stop()


async def test_implicit_tls_with_a_private_ca(
        folder: Mailbox, account: Account, inbounds: Start, collectors: Collect,
        tls_front: int, certificate: Certificate) -> None:
    acc = account(folder.name, tls="implicit", port=tls_front, tls_ca_file=certificate.cert)
    source = await inbounds(acc, cursors=MemoryCursors())
    got = collectors(source)
    await eventually(lambda: source.states()[acc.name] == "idle", what="reader idling")
    await folder.append(make_mail("over TLS"))
    await got.wait_for(1)
    assert subjects(got.got) == ["over TLS"]


async def test_an_untrusted_certificate_is_refused(account: Account, tls_front: int) -> None:
    source = source_for(account("INBOX", tls="implicit", port=tls_front))
    with pytest.raises(ImapError, match="CERTIFICATE_VERIFY_FAILED"):
        await source.start()
    await source.stop()


async def test_starttls_upgrades_before_login(
        folder: Mailbox, account: Account, inbounds: Start, collectors: Collect,
        starttls_front: int, certificate: Certificate) -> None:
    acc = account(folder.name, tls="starttls", port=starttls_front, tls_ca_file=certificate.cert)
    source = await inbounds(acc, cursors=MemoryCursors())
    got = collectors(source)
    await folder.append(make_mail("after STARTTLS"))
    await got.wait_for(1)
    assert subjects(got.got) == ["after STARTTLS"]


async def test_starttls_missing_is_a_config_error(account: Account) -> None:
    source = source_for(account("INBOX", tls="starttls"))  # the plain Dovecot offers none
    with pytest.raises(ConfigError, match="STARTTLS"):
        await source.start()
    await source.stop()
