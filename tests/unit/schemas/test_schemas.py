from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from schemas import (
    ConfigError,
    Identity,
    InboundMessage,
    ParseError,
    TransientError,
    decode,
    encode,
    parse_sender,
)
from schemas.codec import isoformat
from schemas.export import EXPORT_DIR, render
from schemas.ids import inbound_event_id
from schemas.topics import ALL


def test_committed_json_schema_export_is_current() -> None:
    for name, text in render().items():
        committed = (EXPORT_DIR / name).read_text()
        assert committed == text, f"{name} is stale: run `switchboard export-schemas`"
    assert sorted(p.name for p in EXPORT_DIR.glob("*.json")) == sorted(render())


def test_every_topic_is_versioned_and_names_its_key() -> None:
    names = [spec.name for spec in ALL]
    assert len(set(names)) == len(names)
    for spec in ALL:
        assert spec.name.startswith("sb.") and spec.name.endswith(f".v{spec.version}")
        assert spec.key
    assert ALL[0].named("t1-") == "t1-sb.inbound.v1"


@pytest.mark.parametrize(
    ("raw", "kind", "value"),
    [
        ("ada@example.com", "email", "ada@example.com"),
        (" Ada@Example.COM ", "email", "ada@example.com"),
        ("+14155550100", "phone", "+14155550100"),
        ("@SwitchBoard_HQ", "x", "@switchboard_hq"),
    ],
)
def test_sender_identities_are_normalised(raw: str, kind: str, value: str) -> None:
    assert parse_sender(raw) == Identity(kind=kind, value=value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "raw", ["", "ada", "ada@", "@", "4155550100", "+0123", "@way_too_long_handle_x", "a b@c.d"]
)
def test_unreadable_senders_are_refused_with_the_value(raw: str) -> None:
    with pytest.raises(ParseError, match="is not an email address"):
        parse_sender(raw)


def test_event_ids_are_deterministic_per_channel() -> None:
    assert inbound_event_id("email", "<a@b>") == inbound_event_id("email", "<a@b>")
    assert inbound_event_id("email", "<a@b>") != inbound_event_id("api", "<a@b>")
    assert inbound_event_id("email", "x").startswith("ev_")


def test_codec_round_trips_and_names_the_type_on_failure() -> None:
    message = InboundMessage(
        event_id="ev_1", channel="api", native_id="1", thread_key="t",
        sender=Identity(kind="email", value="a@b.co"),
        received_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), text="hé ✓",
    )
    assert decode(encode(message), InboundMessage) == message
    with pytest.raises(ParseError, match="not a valid InboundMessage"):
        decode(b'{"event_id": 1}', InboundMessage)
    with pytest.raises(ParseError, match="not a valid InboundMessage"):
        decode(b"\xff\xfe", InboundMessage)


def test_isoformat_writes_what_datetime_isoformat_writes() -> None:
    draw = random.Random(7)
    zones = (UTC, ZoneInfo("Europe/Berlin"), ZoneInfo("Asia/Kolkata"), timezone(timedelta(hours=-3)),
             timezone(timedelta(hours=5, minutes=30, seconds=7)), None)
    times = [datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
             datetime(999, 3, 4, 5, 6, 7, 80, tzinfo=UTC)]
    for _ in range(2_000):
        at = datetime(1900, 1, 1, tzinfo=UTC) + timedelta(
            seconds=draw.randrange(200 * 365 * 86_400), microseconds=draw.choice((0, 1, 120, 999_999)))
        times.append(at.astimezone(tz) if (tz := draw.choice(zones)) is not None else at.replace(tzinfo=None))
    assert [isoformat(at) for at in times] == [at.isoformat() for at in times]


def test_error_tree_carries_retriable_as_data() -> None:
    assert TransientError("slow", retry_after=2.0).retriable
    assert not ParseError("bad").retriable
    err = ConfigError("must be positive", where="policy.yaml:3 tiers.gold.sla")
    assert str(err) == "policy.yaml:3 tiers.gold.sla: must be positive"
