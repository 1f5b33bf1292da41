"""Probe markers: only a fresh, well-signed marker for the message's own channel is a probe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from schemas.probe import MAX_AGE, find_mark, make_marker

KEY = b"reply-token-key-of-this-deployment"
NOW = datetime(2026, 12, 4, 6, 0, tzinfo=UTC)
PROBE_ID = "prb_0123456789abcdef0123"


def test_a_fresh_signed_marker_on_its_channel_is_a_probe() -> None:
    text = f"Switchboard probe {make_marker(PROBE_ID, 'email', NOW, KEY)}"
    mark = find_mark(text, "email", KEY, NOW + timedelta(seconds=3))
    assert mark is not None
    assert (mark.probe_id, mark.channel, mark.sent_at) == (PROBE_ID, "email", NOW)


@pytest.mark.parametrize(("case", "text", "channel", "at"), [
    ("another key", make_marker(PROBE_ID, "api", NOW, b"a key someone guessed"), "api", NOW),
    ("another channel", make_marker(PROBE_ID, "email", NOW, KEY), "api", NOW),
    ("too old", make_marker(PROBE_ID, "api", NOW, KEY), "api", NOW + MAX_AGE + timedelta(seconds=1)),
    ("from the future", make_marker(PROBE_ID, "api", NOW + timedelta(hours=1), KEY), "api", NOW),
    ("signature edited", make_marker(PROBE_ID, "api", NOW, KEY)[:-3] + "00]", "api", NOW),
    ("id edited", make_marker(PROBE_ID, "api", NOW, KEY).replace("prb_0", "prb_1"), "api", NOW),
    ("past year 9999", f"[sb-probe:{PROBE_ID}.api.999999999999999.{'0' * 20}]", "api", NOW),
    ("no marker", "my order never arrived", "api", NOW),
], ids=lambda v: v if isinstance(v, str) and " " in v else "")
def test_anything_else_is_a_customer_message(case: str, text: str, channel: str, at: datetime) -> None:
    assert find_mark(text, channel, KEY, at) is None, case


def test_a_good_marker_after_a_forged_one_still_counts() -> None:
    forged = make_marker("prb_ffffffffffffffffffff", "api", NOW, b"guess")
    text = f"{forged} {make_marker(PROBE_ID, 'api', NOW, KEY)}"
    mark = find_mark(text, "api", KEY, NOW)
    assert mark is not None and mark.probe_id == PROBE_ID
